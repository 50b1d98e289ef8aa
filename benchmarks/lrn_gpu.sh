#!/usr/bin/env bash
# Section 3.3 at the authors' budget on one GPU (issue 12): `alexnet experiment lrn`, the 13pct
# net against the first 11pct net, 160 epochs each (the last 10 at lr/10 and 10 at lr/100),
# three seeds, tested with ten views on CIFAR-10's official test set. The six (seed, net) runs
# train at once, one process each, on the one GPU (the nets are small: one alone leaves the GPU
# mostly idle), and a last call assembles lrn.json, lrn.md and lrn.png.
#
#   bash benchmarks/lrn_gpu_pack.sh TEST_FOLDER      (here, once: .gpu-cifar/cifar10.tar.gz)
#   bash benchmarks/lrn_gpu.sh [RESULTS_DIR]          (there: default $OUT, else benchmarks/lrn-results)
#
# Environment: CIFAR (.gpu-cifar/cifar10.tar.gz, or a folder holding train/ and test/), EPOCHS
# (160), ANNEAL ("10 10"), SEEDS ("0 1 2"), DEVICE (cuda), LIMIT (training images; default all),
# PYTHON (python3). Every run keeps its state in RESULTS_DIR/lrn/partial after each epoch, so the
# same command with the results carried back continues where a time limit stopped it.
# A dry run without a GPU: DEVICE=cpu EPOCHS=2 ANNEAL="0 1" CIFAR=FOLDER.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${1:-${OUT:-benchmarks/lrn-results}}
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
if [ -d "$CIFAR" ]; then
    DATA=$CIFAR
else
    [ -f "$CIFAR" ] || { echo "lrn_gpu.sh: $CIFAR: no such file; run benchmarks/lrn_gpu_pack.sh first" >&2; exit 2; }
    tar -xzf "$CIFAR" -C "$WORK"
    DATA=$WORK
fi
mkdir -p "$RESULTS/lrn"
ARGS=(experiment lrn --data "$DATA/train" --test-data "$DATA/test" --epochs "$EPOCHS" --anneal "${ANNEAL[@]}"
      --device "$DEVICE" --out "$RESULTS/lrn")
[ -n "${LIMIT:-}" ] && ARGS+=(--limit "$LIMIT")
$PYTHON -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
pids=()
for seed in "${SEEDS[@]}"; do
    for variant in without with; do
        say "start: $variant norm, seed $seed (log: $RESULTS/lrn-$variant-$seed.log)"
        OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1 $PYTHON -m alexnet "${ARGS[@]}" --seeds "$seed" --variants "$variant" \
            > "$RESULTS/lrn-$variant-$seed.log" 2>&1 &
        pids+=($!)
    done
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
say "all runs ended$([ $failed = 1 ] && echo ', some FAILED: see the logs')"
[ $failed = 0 ] || { tail -n 5 "$RESULTS"/lrn-*.log >&2; exit 1; }
$PYTHON -m alexnet "${ARGS[@]}" --seeds "${SEEDS[@]}" --json "$RESULTS/lrn/numbers.json"
cat "$RESULTS/lrn/lrn.md"
say "done in $(( $(date +%s) - started )) s"
