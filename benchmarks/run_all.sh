#!/usr/bin/env bash
# Re-runs every benchmark behind the README's figures (about 90 minutes on 2 cores).
# The 10-image run needs ../shared/data/images (not shipped with the package).
set -euo pipefail
cd "$(dirname "$0")/.."
R=benchmarks/results
python benchmarks/schedule_curve.py --schedules fast,official --json $R/schedule_astronaut.json --plot $R/schedule_astronaut.png
imagegs bench speed --height 512 --width 512 --gaussians 10000 --backend cpu --steps 30 --json $R/speed_512_cpu.json
imagegs bench speed --height 512 --width 512 --gaussians 10000 --backend reference --steps 3 --json $R/speed_512_reference.json
imagegs bench speed --height 2048 --width 2048 --gaussians 10000 --backend cpu --steps 8 --json $R/speed_2048_cpu.json
python benchmarks/fit_2048.py --json $R/fit_2048.json
python benchmarks/fit_images.py --images ../shared/data/images --json $R/fit_images.json
# Decoding (issue 3): the fits of the 10 images (and of their 1/2, 1/3, 1/4 downscales) are cached
# in /tmp/dech/fits (~40 fits: about 45 minutes more on an idle machine).
python benchmarks/fitcache.py --factors 1 2 3 4
python benchmarks/decode_speed.py --json $R/decode_speed.json
python benchmarks/antialias.py --json $R/antialias.json
