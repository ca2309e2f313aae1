"""``imagegs bench speed`` on a tiny state: the JSON record has every field."""

import json

import pytest

from imagegs.bench import speed
from imagegs.cli import main


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_speed_json(tmp_path, capsys, backend):
    path = tmp_path / "out" / "speed.json"
    rc = main(["bench", "speed", "--height", "24", "--width", "20", "--gaussians", "30", "--backend", backend,
                     "--steps", "2", "--repeats", "2", "--channels", "4", "--json", str(path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "step" in out and "forward" in out and str(path) in out
    record = json.loads(path.read_text())
    assert record["settings"] == dict(height=24, width=20, gaussians=30, backend=backend, steps=2,
                                      top_k=10, channels=4, repeats=2, image="astronaut", seed=0,
                                      warmup=2, dtype="float32")
    machine = record["machine"]
    for key in ("cpu", "cores", "torch_threads", "numba_threads", "torch", "numba"):
        assert machine[key]
    for name in ("step", "forward"):
        samples = record[f"samples_ms_{name}"]
        assert len(samples) == 4 and all(t > 0 for t in samples)
        assert record[f"p10_ms_{name}"] <= record[f"median_ms_{name}"] <= record[f"p90_ms_{name}"]
        assert record[f"first_call_ms_{name}"] > 0
    assert record["compile_ms_estimate"] >= 0 and record["timestamp"]
    assert [p.name for p in path.parent.iterdir()] == ["speed.json"]  # atomic: no temp file left


def test_step_updates_parameters():
    """The timed step really optimises: the loss of the rendered state goes down."""
    target = speed.target_image(16, 16, 3, "random")
    step, forward = speed.fit_state(target, 40, top_k=10, backend="cpu")
    before = (forward() - target).abs().mean()
    for _ in range(20):
        step()
    assert (forward() - target).abs().mean() < before


def test_rejects_bad_options(capsys):
    assert main(["bench", "speed", "--height", "4", "--width", "4", "--gaussians", "100"]) == 2
    assert "--gaussians 100 is more than the 4x4 image" in capsys.readouterr().err
    assert main(["bench", "speed", "--top-k", "65"]) == 2
    assert "argument --top-k: must be an integer from 0 (whole tile) to 64" in capsys.readouterr().err
