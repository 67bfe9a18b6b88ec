#!/usr/bin/env bash
# Build (once, cached) an emulated ARM64 Python 3.11 that runs the runtime harness:
#   - Debian's qemu-user-static (apt, as root),
#   - an aarch64 sysroot unpacked (dpkg -x) from Debian :arm64 packages (apt-get download),
#   - aarch64 wheels from PyPI (pip --platform manylinux_2_X_aarch64 --only-binary=:all:, X up to
#     bookworm's glibc 2.36; this pip does not widen the alias manylinux2014 to those tags),
#   - bin/python: a wrapper that runs the sysroot's python3.11 under qemu with argv0 = itself, so
#     sys.executable is the wrapper and the harness's child-process probe can start it.
# Usage: .ci/arm64_env.sh CACHE_DIR   (prints the wrapper's path on its last line)
set -euo pipefail
CACHE=${1:?usage: .ci/arm64_env.sh CACHE_DIR}
HOST_PY=${HOST_PY:-python3}
LITERT_ARM64=${LITERT_ARM64:-ai-edge-litert==1.4.0}   # the last release with a cp311 aarch64 wheel
WHEELS=("$LITERT_ARM64" "numpy>=2,<2.5" "click>=8.1,<9" "tqdm>=4.66")
DEBS=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libgcc-s1 libstdc++6
      libssl3 libffi8 zlib1g libexpat1 libbz2-1.0 liblzma5 libsqlite3-0 libuuid1 libcrypt1
      libncursesw6 libtinfo6 libreadline8 libnsl2 libtirpc3 libdb5.3 libgssapi-krb5-2 libkrb5-3
      libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1)
# The cache is keyed by this script: a change of its package lists (or anything) rebuilds it.
KEY=$(sha256sum "$0" | cut -c1-12)
STAMP="$CACHE/.built-$KEY"
if [[ -f "$STAMP" ]]; then echo "$CACHE/bin/python"; exit 0; fi
mkdir -p "$(dirname "$CACHE")"
exec 9>"$CACHE.lock" && flock 9   # two CI runs on one machine: one builds, the other waits
if [[ -f "$STAMP" ]]; then echo "$CACHE/bin/python"; exit 0; fi
t0=$(date +%s)
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
if ! command -v qemu-aarch64-static >/dev/null || ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
fi
rm -rf "$CACHE.tmp" && mkdir -p "$CACHE.tmp/debs" "$CACHE.tmp/sysroot" "$CACHE.tmp/site" "$CACHE.tmp/bin"
# apt-get download runs as root here; the _apt sandbox user cannot write into this folder (a warning only).
( cd "$CACHE.tmp/debs" && apt-get download -qq "${DEBS[@]/%/:arm64}" 2>&1 ) | { grep -v "unsandboxed as root" || true; }
for deb in "$CACHE.tmp"/debs/*.deb; do dpkg -x "$deb" "$CACHE.tmp/sysroot"; done
rm -rf "$CACHE.tmp/debs"
PLATFORMS=(); for x in $(seq 17 36); do PLATFORMS+=(--platform "manylinux_2_${x}_aarch64"); done
"$HOST_PY" -m pip install -q --no-compile --target "$CACHE.tmp/site" "${PLATFORMS[@]}" \
  --python-version 3.11 --implementation cp --only-binary=:all: --no-warn-conflicts "${WHEELS[@]}"
cat > "$CACHE.tmp/bin/python" <<'WRAP'
#!/bin/sh
# aarch64 python3.11 under qemu-user; argv0 is this wrapper, so sys.executable can be run again.
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONHOME="$here/sysroot/usr" PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$here/site"
exec qemu-aarch64-static -L "$here/sysroot" -0 "$here/bin/python" "$here/sysroot/usr/bin/python3.11" "$@"
WRAP
chmod +x "$CACHE.tmp/bin/python"
"$CACHE.tmp/bin/python" -c "import platform, numpy, ai_edge_litert.interpreter; assert platform.machine() == 'aarch64', platform.machine()"
rm -rf "$CACHE" && mv "$CACHE.tmp" "$CACHE"
# The wrapper finds its folder from $0, so the move keeps it working.
touch "$CACHE/.built-$KEY"
echo "arm64 env built in $(( $(date +%s) - t0 )) s: $(du -sh "$CACHE" | cut -f1) in $CACHE" >&2
echo "$CACHE/bin/python"
