#!/usr/bin/env bash
# Every GPU measurement of the project in one run on one GPU, within one time budget, printing one
# table at the end (issues 6 and 24). A lent GPU machine is lent once, for minutes: the script
# never stops on a failure, writes each measured row the moment it exists, and ends on its own
# before BUDGET seconds, printing what it has.
#
#   bash benchmarks/gpu.sh [RESULTS_DIR]        (default: $OUT if set, else benchmarks/gpu-results)
#
# RESULTS_DIR gets at most five files: rows.jsonl (every measurement, one JSON line each, appended
# as it comes), log.txt (all output), host.txt (nvidia-smi, cores, memory, /dev/shm), cuda-tests.txt
# and table.txt (benchmarks/gpu_table.py over rows.jsonl; it also reads several folders at once).
#
# Stages, in this order (STAGES picks some; each gets a share of the budget by its weight, and
# what one leaves unused goes to the next):
#   prepare  shards from the source images (`alexnet prepare`); added when a later stage needs them
#   data     the input pipeline alone against the usual per-image way (`alexnet bench data`)
#   model    the step per setting against plain PyTorch, rounds alternating (`alexnet bench model`)
#   train    end to end at BATCH with loader workers WORKER_COUNTS, both decoders, against the
#            pytorch/examples way (`alexnet bench train`)
#   big      the same at BIG_BATCH with the first worker count
#   tests    tests/test_cuda.py (the CUDA paths against the plain ones), last
# Source images: SAMPLES (a folder of <wnid>_*.JPEG), else ../shared/data/imagenet-samples, else
# SYNTHETIC (1000) photograph-like JPEGs made here. ../shared does not travel to a lent machine:
# benchmarks/gpu_pack.sh packs samples and wheels to carry (docs/speed.md has the exact call).
#
# Environment (defaults): BUDGET (420 s), RESERVE (15 s kept for the table), DEVICE (cuda),
# PYTHON (python3), STAGES ("data model train big tests"), WEIGHTS ("prepare=2 data=3 model=10
# train=11 big=6 tests=8"), BATCH (128), BIG_BATCH (512), WORKER_COUNTS ("cores-1 8 4"),
# MEASURE_SECONDS (3: each timing's length), WARMUP_SECONDS (5: plain runs first to raise the clocks),
# SETTINGS ("plain fast-fp32 bf16 compile channels-last fp16"), PROFILE ("bf16 compile"),
# TRAIN_SETTING (compile; bf16 again if it fails), DECODE ("workers device"), NET_ARGS (to model,
# train, big: the network, e.g. "--model-option input_size=67"), DATA_ARGS, MODEL_ARGS, TRAIN_ARGS
# (each stage's own options, last), WHEELS (.whl: wheels installed one by one; one that fails is
# reported and the run goes on), SHM_MIN (3 GiB of /dev/shm the loaders need, else a remount is
# tried and the shortfall reported). A dry run without a GPU: tests/test_gpu_script.py.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${1:-${OUT:-benchmarks/gpu-results}}
mkdir -p "$RESULTS" || exit 2
exec > >(tee -a "$RESULTS/log.txt") 2>&1
TEE=$!
started=$(date +%s)
BUDGET=${BUDGET:-420} RESERVE=${RESERVE:-15} DEVICE=${DEVICE:-cuda} PYTHON=${PYTHON:-python3}
BATCH=${BATCH:-128} BIG_BATCH=${BIG_BATCH:-512} SECONDS_EACH=${MEASURE_SECONDS:-3}
ROWS=$RESULTS/rows.jsonl
WORK=$(mktemp -d "${TMPDIR:-/tmp}/alexnet-gpu.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
say() { echo "[gpu.sh $(( $(date +%s) - started ))s] $*"; }
args() { read -r -a "$1" <<< "${2:-}"; }
args STAGE_LIST "${STAGES:-data model train big tests}"
args WEIGHT_LIST "${WEIGHTS:-prepare=2 data=3 model=10 train=11 big=6 tests=8}"
CORES=$($PYTHON -c 'import os; print(len(os.sched_getaffinity(0)))')
args COUNTS "${WORKER_COUNTS:-$(( CORES > 2 ? CORES - 1 : CORES )) 8 4}"
args NET "${NET_ARGS:-}"

# Optional wheels, one at a time: one that does not install is reported, never fatal.
for wheel in "${WHEELS:-.whl}"/*.whl; do
    [ -e "$wheel" ] || continue
    if $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" "$wheel"; then
        say "installed $(basename "$wheel")"
    else
        say "optional wheel $(basename "$wheel") did not install; going on without it"
    fi
done
[ -d "$WORK/site" ] && export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

# The host: GPU, driver, cores, memory, /dev/shm (the loaders' batches pass through it).
shm_bytes() { df -B1 --output=size /dev/shm 2>/dev/null | tail -n 1 | tr -d ' '; }
SHM_MIN=${SHM_MIN:-3221225472}
if [ "${DEVICE%%:*}" = cuda ] && [ "$(shm_bytes || echo 0)" -lt "$SHM_MIN" ]; then
    mount -o remount,size=16G /dev/shm 2>/dev/null && say "/dev/shm was small: remounted at 16 GiB"
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  echo "cores: $CORES"; free -g 2>&1 | head -n 2; df -h /dev/shm 2>&1; } > "$RESULTS/host.txt"
$PYTHON - "$ROWS" "$(shm_bytes)" "$SHM_MIN" "$CORES" <<'EOF' || say "could not record the host"
import datetime, json, subprocess, sys, torch
rows, shm, shm_min, cores = sys.argv[1], int(sys.argv[2] or 0), int(sys.argv[3]), int(sys.argv[4])
try:
    driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                            capture_output=True, text=True, timeout=30).stdout.strip() or None
except (OSError, subprocess.SubprocessError):
    driver = None
with open(rows, "a") as f:
    f.write(json.dumps({"kind": "host", "torch": torch.__version__, "cuda": torch.version.cuda, "driver": driver,
                        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                        "cores": cores, "shm_bytes": shm, "shm_small": shm < shm_min,
                        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}) + "\n")
EOF
[ "$(shm_bytes || echo 0)" -ge "$SHM_MIN" ] || say "/dev/shm holds $(shm_bytes) bytes, under the loaders' $SHM_MIN: the loaders may fail with a bus error; the table says so"

# The budget: the chosen stages share what is left after the start by weight; each runs under
# a watchdog until its mark, and a stage that ends early leaves its time to the next.
needs_data=0
for s in "${STAGE_LIST[@]}"; do case $s in data|train|big) needs_data=1 ;; esac; done
[ $needs_data = 1 ] && STAGE_LIST=(prepare "${STAGE_LIST[@]}")
weight() { local w; for w in "${WEIGHT_LIST[@]}"; do [ "${w%%=*}" = "$1" ] && echo "${w#*=}" && return; done; echo 1; }
total=0; for s in "${STAGE_LIST[@]}"; do total=$(( total + $(weight "$s") )); done
span=$(( started + BUDGET - RESERVE - $(date +%s) )); origin=$(date +%s); done_weight=0
stage() {  # stage NAME: run stage_NAME in its own process group until its mark; say how it ended
    local name=$1 rc watchdog
    done_weight=$(( done_weight + $(weight "$name") ))
    local limit=$(( origin + span * done_weight / total - $(date +%s) ))
    if [ "$limit" -lt 5 ]; then say "$name: skipped, no time left in the budget"; return 1; fi
    say "$name: up to ${limit}s"
    rm -f "$WORK/stopped"
    set -m  # background jobs in process groups of their own: the watchdog stops the whole tree
    "stage_$name" &
    local pid=$!
    ( sleep "$limit"; touch "$WORK/stopped"; kill -TERM -- "-$pid"; sleep 5; kill -KILL -- "-$pid" ) \
        > /dev/null 2>&1 &
    watchdog=$!
    set +m
    wait "$pid"; rc=$?
    kill -- "-$watchdog" 2> /dev/null
    if [ -e "$WORK/stopped" ]; then
        say "$name: stopped at its time limit (${limit}s); the rows it wrote are kept"; return 124
    fi
    [ $rc = 0 ] && say "$name: done" || say "$name: failed (exit $rc); the rows it wrote are kept"
    return $rc
}

source_images() {  # an image folder train/<wnid>/..., val/... from SAMPLES, else synthetic JPEGs
    local samples=${SAMPLES:-}
    for candidate in ../shared/data/imagenet-samples shared/data/imagenet-samples; do
        [ -z "$samples" ] && [ -d "$candidate" ] && samples=$candidate
    done
    if [ -n "$samples" ]; then
        say "source: $samples"
        $PYTHON - "$samples" "$WORK/source" <<'EOF'
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
        say "source: ${SYNTHETIC:-1000} synthetic JPEGs (no samples folder found)"
        # Photograph-like: a smooth colour field, a few flat shapes, sensor noise. Prepared at 256,
        # they take about the bytes (21 kB) and decoding time of the imagenet-samples.
        $PYTHON - "$WORK/source" "${SYNTHETIC:-1000}" <<'EOF'
import sys
from pathlib import Path
import numpy as np
from PIL import Image, ImageDraw
out = Path(sys.argv[1])
for i in range(int(sys.argv[2])):
    rng = np.random.default_rng(i)
    folder = out / ("val" if i % 10 == 0 else "train") / f"n{i % 100:08d}"
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
    fi && $PYTHON -m alexnet prepare "$WORK/source" "$WORK/prepared" --workers "$CORES" > /dev/null
}

measured() {  # measured BATCH SETTING: whether rows.jsonl has an end-to-end rate for them
    $PYTHON - "$ROWS" "$1" "$2" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip().endswith("}")]
sys.exit(0 if any(r.get("kind") == "train" and r.get("batch_size") == int(sys.argv[2]) and
                  r.get("setting") == sys.argv[3] and "images_per_s" in r for r in rows) else 1)
EOF
}

end_to_end() {  # end_to_end BATCH WORKERS...: ours (both decoders) and the examples way
    local batch=$1 setting=${TRAIN_SETTING:-compile} extra decode; shift
    args extra "${TRAIN_ARGS:-}"; args decode "${DECODE:-workers device}"
    run_train() {
        $PYTHON -m alexnet bench train --device "$DEVICE" --data "$WORK/prepared" --batch-size "$batch" \
            --workers "${@:2}" --decode "${decode[@]}" --seconds "$SECONDS_EACH" --rows "$ROWS" \
            --setting "$1" --json "${NET[@]}" "${extra[@]}" > /dev/null
    }
    run_train "$setting" "$@" && return
    local rc=$?
    measured "$batch" "$setting" && return $rc  # it measured something first: keep that
    say "bench train --setting $setting failed at once; again with bf16 (no compile)"
    run_train bf16 "$@"
}

stage_prepare() { source_images; }
stage_data() {
    local extra; args extra "${DATA_ARGS:-}"
    $PYTHON -m alexnet bench data --data "$WORK/prepared" --workers "${COUNTS[0]}" --batch-size "$BATCH" \
        --seconds "$SECONDS_EACH" --rows "$ROWS" --json "${extra[@]}" > /dev/null
}
stage_model() {
    local extra settings profiled
    args extra "${MODEL_ARGS:-}"; args settings "${SETTINGS:-plain fast-fp32 bf16 compile channels-last fp16}"
    args profiled "${PROFILE:-$([ "${DEVICE%%:*}" = cuda ] && echo "bf16 compile" || echo fast-fp32)}"
    $PYTHON -m alexnet bench model --device "$DEVICE" --batch-size "$BATCH" --optimizer-step \
        --seconds "$SECONDS_EACH" --warmup-seconds "${WARMUP_SECONDS:-5}" --rounds 2 --settings "${settings[@]}" \
        --profile "${profiled[@]}" --rows "$ROWS" --json "${NET[@]}" "${extra[@]}" > /dev/null
}
stage_train() { end_to_end "$BATCH" "${COUNTS[@]}"; }
stage_big() { end_to_end "$BIG_BATCH" "${COUNTS[0]}"; }
stage_tests() {
    $PYTHON -m pytest -v -p no:cacheprovider -m cuda tests/test_cuda.py > "$RESULTS/cuda-tests.txt" 2>&1
    local rc=$?
    tail -n 15 "$RESULTS/cuda-tests.txt"
    return $rc
}

prepared=0
for s in "${STAGE_LIST[@]}"; do
    case $s in
        prepare) stage prepare && prepared=1 ;;
        data|train|big) if [ $prepared = 1 ]; then stage "$s"; else say "$s: skipped, no prepared shards"; fi ;;
        model|tests) stage "$s" ;;
        *) say "unknown stage $s (known: data model train big tests)" ;;
    esac
done

$PYTHON benchmarks/gpu_table.py "$RESULTS" > "$RESULTS/table.txt" 2>&1
cat "$RESULTS/table.txt"
say "done within the budget of ${BUDGET}s"
exec >&- 2>&-
wait "$TEE" 2> /dev/null  # log.txt complete before the script returns
