#!/usr/bin/env bash
# Pack what benchmarks/gpu.sh needs on a lent GPU machine that has no index and no ../shared:
#   .gpu-samples/  COUNT of ../shared/data/imagenet-samples (default 500, about 53 MB), copied
#   .whl/          simplejpeg as a wheel for the GPU machine's Python (PY_VERSION, default 3.12)
# Both are ignored by git (.git/info/exclude) and travel only when carried.
#
#   bash benchmarks/gpu_pack.sh [COUNT]
# then, on the GPU machine (the device tool: carry [".gpu-samples", ".whl"], timeout 600 s):
#   SAMPLES=.gpu-samples bash benchmarks/gpu.sh "$OUT"
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-500}
SOURCE=${SOURCE:-../shared/data/imagenet-samples}
[ -d "$SOURCE" ] || { echo "gpu_pack.sh: no $SOURCE; set SOURCE to a folder of <wnid>_*.JPEG files" >&2; exit 2; }
mkdir -p .git/info
for path in /.gpu-samples/ /.whl/; do
    grep -qxF "$path" .git/info/exclude 2>/dev/null || echo "$path" >> .git/info/exclude
done
rm -rf .gpu-samples && mkdir .gpu-samples
find "$SOURCE" -maxdepth 1 -type f \( -iname '*.jpeg' -o -iname '*.jpg' \) | sort | head -n "$COUNT" \
    | while read -r file; do cp "$file" .gpu-samples/; done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "${PY_VERSION:-3.12}" \
    --implementation cp --platform manylinux_2_17_x86_64 -d .whl simplejpeg
echo "packed $(ls .gpu-samples | wc -l) images ($(du -sh .gpu-samples | cut -f1)) and $(ls .whl | tr '\n' ' ')"
echo "carry: .gpu-samples .whl; run: SAMPLES=.gpu-samples bash benchmarks/gpu.sh \"\$OUT\""
