#!/usr/bin/env bash
# Run a bundle's predictions on aarch64 onnxruntime under QEMU user-mode emulation and compare them
# with this (x86) machine's predictions. Agreement only: timing under emulation means nothing.
#
#   export/check_arm64.sh BUNDLE [INPUTS.jsonl]     (opt-in: slow, needs root for apt and debootstrap)
#
# Sets up, once, under ${ARM64_HOME:-~/.cache/edgedistill-arm64}:
#   rootfs/  a minimal Debian bookworm arm64 userland with python3 (debootstrap --foreign; the .debs are
#            unpacked with dpkg-deb -x because there is no binfmt_misc here for a second stage)
#   site/    aarch64 wheels of onnxruntime, numpy and tokenizers (downloaded by the x86 pip)
# then runs export/arm64_predict.py with qemu-aarch64-static -cpu neoverse-n1 (NEON + dot product;
# `-cpu max` enables SME, which QEMU 7.2 emulates wrongly for INT8). QEMU 7.2 shows the host's x86
# /proc/cpuinfo, on which onnxruntime's CPU detection crashes, so an ARM cpuinfo is bind-mounted over
# it inside a private mount namespace (unshare) for the emulated process only.
set -euo pipefail
BUNDLE=$(realpath "${1:?usage: check_arm64.sh BUNDLE [INPUTS.jsonl]}")
INPUTS=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
HOME_DIR=${ARM64_HOME:-$HOME/.cache/edgedistill-arm64}
ROOTFS=$HOME_DIR/rootfs
SITE=$HOME_DIR/site
PY=${PYTHON:-python3}
mkdir -p "$HOME_DIR"

if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
  echo "installing qemu-user-static and debootstrap (apt) ..." >&2
  apt-get update -qq && apt-get install -y -qq qemu-user-static debootstrap >&2
fi

if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
  echo "building an arm64 Debian rootfs with python3 (a few minutes) ..." >&2
  rm -rf "$ROOTFS"
  debootstrap --arch=arm64 --foreign --variant=minbase --include=python3 bookworm "$ROOTFS" >&2
  for deb in "$ROOTFS"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$ROOTFS"; done
fi
PYVER=$(ls "$ROOTFS"/usr/lib | grep -E '^python3\.[0-9]+$' | sort -V | tail -1 | sed 's/python//')

if [ ! -d "$SITE/onnxruntime" ]; then
  echo "fetching aarch64 wheels for python $PYVER ..." >&2
  tmp=$(mktemp -d)
  "$PY" -m pip download -q --only-binary=:all: --python-version "$PYVER" --implementation cp \
      --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
      -d "$tmp" onnxruntime numpy tokenizers
  mkdir -p "$SITE"
  # a wheel is a zip: unpack instead of `pip install`, which would refuse a foreign platform's wheels
  for whl in "$tmp"/*.whl; do "$PY" -m zipfile -e "$whl" "$SITE"; done
  rm -rf "$tmp"
fi

# An ARM /proc/cpuinfo matching -cpu neoverse-n1 (asimddp = dot product). onnxruntime reads
# /proc/cpuinfo at import; QEMU passes the host's x86 file through, so we hide it in a private mount
# namespace. QEMU's -L only remaps paths the guest opens inside the prefix, and /proc is not.
cat > "$HOME_DIR/cpuinfo" <<'CPU'
processor	: 0
BogoMIPS	: 50.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x3
CPU part	: 0xd0c
CPU revision	: 1

CPU

OUT=$(mktemp -d)
echo "x86 predictions ..." >&2
"$PY" "$HERE/arm64_predict.py" "$BUNDLE" "$OUT/x86.json" $INPUTS
echo "aarch64 predictions under qemu (slow) ..." >&2
unshare --mount bash -c "mount --bind '$HOME_DIR/cpuinfo' /proc/cpuinfo && \
  PYTHONPATH='$SITE' PYTHONHOME=/usr qemu-aarch64-static -cpu neoverse-n1 -L '$ROOTFS' '$ROOTFS/usr/bin/python3' \
  '$HERE/arm64_predict.py' '$BUNDLE' '$OUT/arm64.json' $INPUTS"
"$PY" "$HERE/arm64_predict.py" --compare "$OUT/x86.json" "$OUT/arm64.json"
