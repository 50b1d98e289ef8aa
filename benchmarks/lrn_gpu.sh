#!/usr/bin/env bash
# Section 3.3 at the authors' budget on one GPU (issue 12): `alexnet experiment lrn`, the 13pct
# net against the first 11pct net, 160 epochs each (the last 10 at lr/10 and 10 at lr/100),
# three seeds, tested with ten views. The six (seed, net) runs train at once, one process each,
# on the one GPU (the nets are small: one alone leaves the GPU mostly idle), and a last call
# assembles lrn.json, lrn.md and lrn.png.
#
#   bash benchmarks/lrn_gpu_pack.sh [TEST_FOLDER]    (here, once: .gpu-cifar/cifar10.tar.gz)
#   bash benchmarks/lrn_gpu.sh [RESULTS_DIR]          (there; default benchmarks/lrn-results)
#
# The whole budget takes longer than one lease of a GPU machine (15 minutes, a command at most
# 10), so it is resumable: every run keeps its state in RESULTS_DIR/lrn/partial after each epoch,
# the runs are stopped BUDGET seconds after the start (keeping that state), and RESULTS_DIR is
# packed into ONE archive, ARCHIVE (what a device call brings back: its files are few). The next
# call carries that archive back and names it RESUME; it is unpacked into RESULTS_DIR first and
# the runs go on from their last epoch. The device call is in docs/speed.md.
#
# Environment: CIFAR (.gpu-cifar/cifar10.tar.gz, or a folder holding train/ and perhaps test/),
# EPOCHS (160), ANNEAL ("10 10"), SEEDS ("0 1 2"), DEVICE (cuda), LIMIT (training images; default
# all), HOLDOUT (0.2: the share of the training images tested on when the archive holds no test/
# folder, CIFAR-10's official test set), BUDGET (seconds; default none), RESUME, ARCHIVE, PYTHON
# (python3). A dry run without a GPU: DEVICE=cpu EPOCHS=2 ANNEAL="0 1" CIFAR=FOLDER.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${1:-benchmarks/lrn-results}
CIFAR=${CIFAR:-.gpu-cifar/cifar10.tar.gz}
EPOCHS=${EPOCHS:-160}
read -r -a ANNEAL <<< "${ANNEAL:-10 10}"
read -r -a SEEDS <<< "${SEEDS:-0 1 2}"
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
started=$(date +%s)
say() { echo "[lrn_gpu.sh $(( $(date +%s) - started ))s] $*" >&2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/alexnet-lrn.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
pack() {  # RESULTS_DIR as one archive, written whole or not at all
    [ -n "${ARCHIVE:-}" ] || return 0
    tar -czf "$ARCHIVE.part" -C "$RESULTS" . && mv "$ARCHIVE.part" "$ARCHIVE" && say "packed $RESULTS into $ARCHIVE"
}
if [ -d "$CIFAR" ]; then
    DATA=$CIFAR
else
    [ -f "$CIFAR" ] || { echo "lrn_gpu.sh: $CIFAR: no such file; run benchmarks/lrn_gpu_pack.sh first" >&2; exit 2; }
    tar -xzf "$CIFAR" -C "$WORK" || exit 2
    DATA=$WORK
fi
mkdir -p "$RESULTS/lrn"
if [ -n "${RESUME:-}" ]; then
    tar -xzf "$RESUME" -C "$RESULTS" || { echo "lrn_gpu.sh: RESUME=$RESUME: not a tar.gz archive" >&2; exit 2; }
    say "resumed from $RESUME"
fi
ARGS=(experiment lrn --data "$DATA/train" --epochs "$EPOCHS" --anneal "${ANNEAL[@]}" --device "$DEVICE"
      --out "$RESULTS/lrn")
if [ -d "$DATA/test" ]; then ARGS+=(--test-data "$DATA/test"); else ARGS+=(--holdout "${HOLDOUT:-0.2}"); fi
[ -n "${LIMIT:-}" ] && ARGS+=(--limit "$LIMIT")
$PYTHON -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
LIMITED=()  # the runs stop 30 s before the budget, leaving time to assemble and pack
[ -n "${BUDGET:-}" ] && LIMITED=(timeout -k 10 "$(( (left = BUDGET - 30 - $(date +%s) + started) > 1 ? left : 1 ))")
pids=()
for seed in "${SEEDS[@]}"; do
    for variant in without with; do
        say "start: $variant norm, seed $seed (log: $RESULTS/lrn-$variant-$seed.log)"
        OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1 "${LIMITED[@]}" $PYTHON -m alexnet "${ARGS[@]}" --seeds "$seed" \
            --variants "$variant" >> "$RESULTS/lrn-$variant-$seed.log" 2>&1 &
        pids+=($!)
    done
done
failed=0 stopped=0
for pid in "${pids[@]}"; do
    wait "$pid"; rc=$?
    case $rc in 0) ;; 124|137) stopped=1 ;; *) failed=1 ;; esac
done
if [ $stopped = 1 ]; then
    say "stopped at the budget of ${BUDGET}s; each run keeps its last epoch: carry the archive back as RESUME"
    pack; exit 0
fi
say "all runs ended$([ $failed = 1 ] && echo ', some FAILED: see the logs')"
[ $failed = 0 ] || { tail -n 5 "$RESULTS"/lrn-*.log >&2; pack; exit 1; }
$PYTHON -m alexnet "${ARGS[@]}" --seeds "${SEEDS[@]}" --json "$RESULTS/lrn/numbers.json"
cat "$RESULTS/lrn/lrn.md"
pack
say "done in $(( $(date +%s) - started )) s"
