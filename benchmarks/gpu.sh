#!/usr/bin/env bash
# Every GPU measurement of the project in one run, within eight minutes on one GPU, printing one
# table at the end (issue 6). Uses only data it makes or that travels with the repository:
#   - SAMPLES, a folder of ImageNet JPEGs named <wnid>_<anything>.JPEG, when given;
#   - else ../shared/data/imagenet-samples (1000 ImageNet JPEGs, one per class) when present;
#   - else 1000 photograph-like synthetic JPEGs in 100 classes made here with PIL;
# prepared once into shards with `alexnet prepare`, then read over and over. ../shared does not
# travel to a lent GPU machine (and its 107 MB would not fit the 64 MiB that does):
# `bash benchmarks/gpu_pack.sh` copies 500 of them into .gpu-samples/ and simplejpeg's wheel into
# .whl/ (both git-ignored); carry both and run `SAMPLES=.gpu-samples bash benchmarks/gpu.sh "$OUT"`.
#
#   bash benchmarks/gpu.sh [RESULTS_DIR]        (default: $OUT if set, else benchmarks/gpu-results)
#
# Then it runs tests/test_cuda.py (the CUDA paths against the plain ones), in about two minutes.
#
# Environment: GPU_TESTS (1: run the CUDA tests at the end; 0: skip), PYTHON (python3),
# BATCH (128, the paper's), MODEL_STEPS (20), TRAIN_STEPS (400, after a warm-up that drains what
# the loader made while the network compiled), WORKERS (cores; the end-to-end run leaves one core
# to the training process), SAMPLES (a folder of JPEGs to use instead), TRAIN_SETTING (compile),
# DECODE ("workers device": end to end with the loader's workers decoding, then with nvJPEG on the
# GPU when torchvision is there), PROFILE ("bf16 compile": the settings whose step is profiled,
# kernel by kernel). A dry run without a GPU:
#   DEVICE=cpu BENCH_ARGS="--model-option input_size=67 ..." MODEL_STEPS=1 TRAIN_STEPS=2 BATCH=8
#
# Dependencies missing on the GPU machine travel as wheels in .whl/ (installed here into a folder
# on PYTHONPATH): simplejpeg, which the loader's workers decode with (Pillow otherwise, half as
# fast); gpu_pack.sh fetches it for the GPU machine's Python (3.12 there).
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${1:-${OUT:-benchmarks/gpu-results}}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/alexnet-gpu.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$RESULTS"
BATCH=${BATCH:-128}
DEVICE=${DEVICE:-cuda}
read -r -a EXTRA <<< "${BENCH_ARGS:-}"
PYTHON=${PYTHON:-python3}
WORKERS=${WORKERS:-$($PYTHON -c 'import os; print(len(os.sched_getaffinity(0)))')}
started=$(date +%s)
say() { echo "[gpu.sh $(( $(date +%s) - started ))s] $*" >&2; }

if compgen -G ".whl/*.whl" > /dev/null; then
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" .whl/*.whl
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
[ "$DEVICE" != cuda ] || $PYTHON -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu.sh: no CUDA device")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$RESULTS/gpu.txt" 2>/dev/null || true

# 1. Source images as an image folder: train/<class>/<file> (and a val split, which prepare wants).
if [ -z "${SAMPLES:-}" ]; then
    for candidate in ../shared/data/imagenet-samples shared/data/imagenet-samples; do
        [ -d "$candidate" ] && SAMPLES=$candidate && break
    done
fi
if [ -n "${SAMPLES:-}" ] && [ -d "$SAMPLES" ]; then
    say "source: $SAMPLES"
    $PYTHON - "$SAMPLES" "$WORK/source" <<'EOF'
import sys
from pathlib import Path
samples, out = Path(sys.argv[1]), Path(sys.argv[2])
files = sorted(p for p in samples.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
for i, f in enumerate(files):
    wnid = f.name.split("_")[0]  # n01440764_tench.JPEG: class n01440764
    for split in ("train", "val") if i % 10 == 0 else ("train",):
        (out / split / wnid).mkdir(parents=True, exist_ok=True)
        (out / split / wnid / f.name).symlink_to(f.resolve())
EOF
else
    say "source: 1000 synthetic JPEGs (no imagenet-samples folder found)"
    # Photograph-like: a smooth colour field, a few flat shapes, sensor noise. Prepared at 256,
    # they take about the bytes (21 kB) and decoding time of the imagenet-samples (pure noise
    # would be a third slower to decode, flat colour much faster).
    $PYTHON - "$WORK/source" <<'EOF'
import sys
from pathlib import Path
import numpy as np
from PIL import Image, ImageDraw
out = Path(sys.argv[1])
for i in range(1000):
    rng = np.random.default_rng(i)
    split = "val" if i % 10 == 0 else "train"
    folder = out / split / f"n{i % 100:08d}"
    folder.mkdir(parents=True, exist_ok=True)
    field = rng.integers(0, 256, (6 + rng.integers(0, 10), 8 + rng.integers(0, 12), 3), dtype=np.uint8)
    image = Image.fromarray(field).resize((500, 375), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(3, 12)):
        x, y = rng.integers(0, 450), rng.integers(0, 330)
        box = [x, y, x + rng.integers(10, 200), y + rng.integers(10, 150)]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=tuple(map(int, rng.integers(0, 256, 3))))
    pixels = np.clip(np.asarray(image) + rng.normal(0, 16, (375, 500, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / f"img{i}.JPEG", quality=90)
EOF
fi

# 2. Shards, as training reads them.
say "alexnet prepare"
timeout 120 $PYTHON -m alexnet prepare "$WORK/source" "$WORK/prepared" --workers "$WORKERS" > /dev/null

# 3. The input pipeline alone on this machine's cores (the end-to-end ceiling).
say "alexnet bench data"
timeout 90 $PYTHON -m alexnet bench data --data "$WORK/prepared" --workers "$WORKERS" --images 16384 \
    --json > "$RESULTS/data.json" || { say "bench data failed or ran out of time"; rm -f "$RESULTS/data.json"; }

# 4. The network per setting (fp32/bf16/fp16, channels-last, compile, LRN) against plain PyTorch.
say "alexnet bench model"
read -r -a PROFILED <<< "${PROFILE:-$([ "$DEVICE" = cuda ] && echo "bf16 compile" || echo fast-fp32)}"
timeout 240 $PYTHON -m alexnet bench model --device "$DEVICE" --batch-size "$BATCH" --optimizer-step \
    --steps "${MODEL_STEPS:-20}" --profile "${PROFILED[@]}" --json "${EXTRA[@]}" > "$RESULTS/model.json" \
    || { say "bench model failed or ran out of time"; rm -f "$RESULTS/model.json"; }

# 5. End to end (loader + step) against the pytorch/examples way, our loader decoding in its workers
#    and then on the GPU (nvJPEG), one network compiled once for both.
say "alexnet bench train"
TRAIN_WORKERS=$(( WORKERS > 2 ? WORKERS - 1 : WORKERS ))
read -r -a DECODERS <<< "${DECODE:-workers device}"
bench_train() {
    timeout 180 $PYTHON -m alexnet bench train --device "$DEVICE" --data "$WORK/prepared" --batch-size "$BATCH" \
        --steps "${TRAIN_STEPS:-400}" --workers "$TRAIN_WORKERS" --setting "$1" \
        --decode "${DECODERS[@]}" --json "${EXTRA[@]}" > "$RESULTS/train.json"
}
bench_train "${TRAIN_SETTING:-compile}" || { say "that failed; again with the bf16 setting (no compile)"; bench_train bf16; } \
    || { say "bench train failed"; rm -f "$RESULTS/train.json"; }

say "measurements done"
$PYTHON benchmarks/gpu_table.py "$RESULTS" || true

# 6. The CUDA paths against the plain ones (tests/test_cuda.py), after the measurements so that a
#    short device lease gets the numbers first.
if [ "$DEVICE" = cuda ] && [ "${GPU_TESTS:-1}" = 1 ]; then
    say "tests/test_cuda.py"
    timeout 180 $PYTHON -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py > "$RESULTS/cuda-tests.txt" 2>&1 \
        || say "some CUDA tests failed or ran out of time: $RESULTS/cuda-tests.txt"
    tail -n 25 "$RESULTS/cuda-tests.txt"
fi
say "done"
