"""A 2048x2048 fit with 10k Gaussians (default settings): wall time and peak memory.

    python benchmarks/fit_2048.py --json benchmarks/results/fit_2048.json

The image is scikit-image's astronaut upscaled to 2048x2048 with Lanczos (reproducible without
extra data). The fit runs in a child process (the CLI) measured by its peak resident set size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from skimage import data

from imagegs.io import atomic_write


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--size", type=int, default=2048)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "astronaut_big.png"
        Image.fromarray(data.astronaut()).resize((args.size, args.size), Image.LANCZOS).save(src)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "imagegs", "fit", str(src), "-o", str(Path(tmp) / "m.gsm"), "--quiet"],
                              capture_output=True, text=True)
        secs = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(proc.stdout, proc.stderr)
    if proc.returncode:
        raise SystemExit(f"fit failed with status {proc.returncode}")
    summary = {line.split()[0]: " ".join(line.split()[1:]) for line in proc.stdout.splitlines() if line.strip()}
    result = dict(size=args.size, wall_seconds=round(secs, 1), peak_rss_mb=round(peak_mb), summary=summary)
    print(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.json, lambda p: Path(p).write_text(json.dumps(result, indent=1)))


if __name__ == "__main__":
    main()
