#!/usr/bin/env bash
# Build (once, cached) a device-like Python env: no TensorFlow, numpy < 2, tflite-runtime 2.14.0
# (its last release; x86_64 cp311 wheel) and the harness's own requirements (setup.cfg's
# install_requires), resolved by pip together with numpy < 2. The harness itself runs from the
# checkout with PYTHONPATH, so the cache never holds stale code.
# Usage: .ci/tflite_runtime_env.sh CACHE_DIR   (prints the env's python on its last line)
set -euo pipefail
CACHE=${1:?usage: .ci/tflite_runtime_env.sh CACHE_DIR}
HOST_PY=${HOST_PY:-python3.11}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PINS=("numpy<2" "tflite-runtime==2.14.0")
# A new setup.cfg (requirements) or pin list makes a new env.
KEY=$( (cat "$ROOT/setup.cfg"; echo "${PINS[*]}") | sha256sum | cut -c1-12)
if [[ -f "$CACHE/.built-$KEY" ]]; then echo "$CACHE/bin/python"; exit 0; fi
mkdir -p "$(dirname "$CACHE")"
exec 9>"$CACHE.lock" && flock 9   # two CI runs on one machine: one builds, the other waits
if [[ -f "$CACHE/.built-$KEY" ]]; then echo "$CACHE/bin/python"; exit 0; fi
t0=$(date +%s)
rm -rf "$CACHE.tmp"
"$HOST_PY" -m venv "$CACHE.tmp"
"$CACHE.tmp/bin/python" -m pip install -q --upgrade pip
# The harness's install_requires (no extras: no TensorFlow) must resolve with numpy < 2. Read from
# setup.cfg rather than `pip install .`, which would leave build/ and *.egg-info in the checkout.
mapfile -t REQS < <("$HOST_PY" - "$ROOT/setup.cfg" <<'PY'
import configparser, sys
cfg = configparser.ConfigParser()
cfg.read(sys.argv[1])
for line in cfg["options"]["install_requires"].splitlines():
    if line.strip() and not line.strip().startswith("#"):
        print(line.strip())
PY
)
"$CACHE.tmp/bin/python" -m pip install -q "${PINS[@]}" "${REQS[@]}"
"$CACHE.tmp/bin/python" - <<'PY'
import importlib.util, numpy
assert numpy.__version__.startswith("1."), numpy.__version__
assert importlib.util.find_spec("tensorflow") is None, "TensorFlow in the device-like env"
from tflite_runtime.interpreter import Interpreter  # noqa: F401
PY
rm -rf "$CACHE" && mv "$CACHE.tmp" "$CACHE"
touch "$CACHE/.built-$KEY"
echo "tflite-runtime env built in $(( $(date +%s) - t0 )) s: $(du -sh "$CACHE" | cut -f1) in $CACHE" >&2
echo "$CACHE/bin/python"
