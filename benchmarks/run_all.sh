#!/usr/bin/env bash
# Re-runs every benchmark that docs/results.md cites, in the order of that page, writing
# benchmarks/results/ (then `python benchmarks/summarize.py` prints the fitting tables).
#
#   bash benchmarks/run_all.sh [IMAGES]
#
# IMAGES is a folder of test images (the page's figures used 10 images, long side 1024, not shipped
# with the repository). Without it only the benchmarks on scikit-image's astronaut run. With it,
# the whole run takes many hours on 2 cores (the RD benchmark alone about 2.5 h, the SR one longer).
# The LIIF benchmarks fetch the official weights on first use (see `imagegs liif weights`).
# Models and other scratch files go to out/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
R=benchmarks/results
OUT=out
IMAGES=${1:-}
if [[ -n "$IMAGES" && ! -d "$IMAGES" ]]; then
    echo "run_all.sh: error: IMAGES '$IMAGES' is not a folder" >&2
    exit 2
fi
mkdir -p "$OUT"
run() { echo "+ $*" >&2; "$@"; }

# Fitting
run /usr/bin/time -v python -m imagegs fit astronaut -o $OUT/a.gsm --quiet
run python benchmarks/schedule_curve.py --schedules fast,official --json $R/schedule_astronaut.json --plot $R/schedule_astronaut.png
run imagegs bench speed --height 512 --width 512 --gaussians 10000 --backend cpu --steps 30 --json $R/speed_512_cpu.json
run imagegs bench speed --height 512 --width 512 --gaussians 10000 --backend reference --steps 3 --json $R/speed_512_reference.json
run imagegs bench speed --height 2048 --width 2048 --gaussians 10000 --backend cpu --steps 8 --json $R/speed_2048_cpu.json
run python benchmarks/fit_2048.py --json $R/fit_2048.json

# Compressed files: astronaut (default fit, and level-of-detail training every 2nd and 4th step)
run python -m imagegs fit astronaut -o $OUT/astro.gsm --quiet
for n in 2 4; do
    run python -c "import imagegs, skimage; imagegs.save_model(imagegs.fit(skimage.data.astronaut(), lod_training=True, lod_every=$n), '$OUT/astro_lod$n.gsm')"
done
run python benchmarks/igs_coding.py --json $R/igs_coding.json \
    --model $OUT/astro.gsm --image astronaut --model $OUT/astro_lod2.gsm --image astronaut \
    --model $OUT/astro_lod4.gsm --image astronaut
run python benchmarks/bits_sweep.py --image astronaut --bpp 0.3 --json $OUT/bits_sweep.json

# LIIF (astronaut)
run python benchmarks/liif_speed.py
run python benchmarks/liif_check_official.py

if [[ -z "$IMAGES" ]]; then
    echo "run_all.sh: no IMAGES folder given: skipped the benchmarks on a folder of images" >&2
    exit 0
fi

# Fitting the folder's images
run python benchmarks/fit_images.py --images "$IMAGES" --json $R/fit_images.json

# The default fits of the folder's images and of their 1/2, 1/3, 1/4 downscales, cached in
# /tmp/dech/fits (~40 fits). decode_speed.py and antialias.py read the folder fixed in fitcache.py.
run python benchmarks/fitcache.py --images "$IMAGES" --factors 1 2 3 4
models=()
for f in "$IMAGES"/*; do
    stem=$(basename "${f%.*}")
    models+=(--model "/tmp/dech/fits/${stem}_x1_n10000.gsm" --image "$f")
done
run python benchmarks/igs_coding.py --json $R/igs_coding_images.json "${models[@]}"
run python benchmarks/decode_speed.py --runs 9 --json $R/decode_speed.json
run python benchmarks/antialias.py --json $R/antialias.json

# Rate-distortion and super-resolution benchmarks (both resumable)
run python -m imagegs bench rd --images "$IMAGES" --codecs all --out $R/rd
run python -m imagegs bench sr --images "$IMAGES" --crop 384 --threads 2 --methods liif,bicubic,lanczos
run python -m imagegs bench sr --images "$IMAGES" --crop 384 --threads 2 --methods gaussians
run python -m imagegs bench sr --images "$IMAGES" --crop 384 --cached-only

# Batch throughput: 1 and 2 workers against a shell loop, scheduler overhead (resumable)
run python benchmarks/batch_speed.py --images "$IMAGES" --count 4 --max-side 256 --bpp 0.3 --json $R/batch_speed.json

# Semantics-aware compression (resumable): the strength sweep (256-px downscales of the scikit-image
# photographs), then the benchmark on those and two photos of the folder, downscaled to 512 px
run python benchmarks/semantic_strength.py
run python -m imagegs bench semantic --images astronaut skimage:chelsea skimage:coffee \
    "$IMAGES"/photo-ladybird.png "$IMAGES"/photo-dragonfly.png --out $R/semantic
