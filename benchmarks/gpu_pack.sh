#!/usr/bin/env bash
# Pack what benchmarks/gpu.sh needs on a lent GPU machine that has no index and no ../shared,
# the same way every time:
#   .gpu-samples/  the first of ../shared/data/imagenet-samples (sorted by name) that fit in
#                  SAMPLES_MIB (default 48 MiB: about 450 images), copied
#   .whl/          emptied, then PINNED (default simplejpeg==1.9.0, the version measured on the
#                  CPU) as wheels for the GPU machine's Python (cp312, manylinux x86-64)
# Both are ignored by git (.git/info/exclude) and travel only when carried. It prints what will
# travel in all (the working tree git sees, plus these two) against the device's 64 MiB.
#
#   bash benchmarks/gpu_pack.sh
# then the device call of docs/speed.md ("The first GPU run").
set -euo pipefail
cd "$(dirname "$0")/.."
SOURCE=${SOURCE:-../shared/data/imagenet-samples}
SAMPLES_MIB=${SAMPLES_MIB:-48}
read -r -a PINNED <<< "${PINNED:-simplejpeg==1.9.0}"
[ -d "$SOURCE" ] || { echo "gpu_pack.sh: no $SOURCE; set SOURCE to a folder of <wnid>_*.JPEG files" >&2; exit 2; }
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
for path in /.gpu-samples/ /.whl/; do
    grep -qxF "$path" "$exclude" 2>/dev/null || echo "$path" >> "$exclude"
done
rm -rf .gpu-samples .whl && mkdir .gpu-samples .whl
budget=$(( SAMPLES_MIB * 1024 * 1024 )) used=0
while IFS= read -r file; do
    size=$(stat -c %s "$file")
    [ $(( used + size )) -le "$budget" ] || break
    cp "$file" .gpu-samples/ && used=$(( used + size ))
done < <(find "$SOURCE" -maxdepth 1 -type f \( -iname '*.jpeg' -o -iname '*.jpg' \) | sort)
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${PINNED[@]}"
sum() { awk '{ s += $1 } END { print s + 0 }'; }
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | sum)
packed=$(du -sb .gpu-samples .whl | cut -f1 | sum)
echo "packed $(ls .gpu-samples | wc -l) images and $(ls .whl | tr '\n' ' ')"
echo "travels: $(( (tree + packed) / 1048576 )) MiB of 64 (working tree $(( tree / 1048576 )) MiB, carried $(( packed / 1048576 )) MiB)"
[ $(( tree + packed )) -le $(( 64 * 1048576 )) ] || { echo "gpu_pack.sh: over 64 MiB: lower SAMPLES_MIB" >&2; exit 1; }
