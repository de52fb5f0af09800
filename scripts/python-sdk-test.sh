#!/usr/bin/env bash
# The Python SDK (sdks/python) against a real all-in-one telepath.
#
#   scripts/python-sdk-test.sh [BIN_DIR]     (default target/debug; needs `telepath`)
#
# Makes a virtualenv under target/tools/python-sdk (python3 -m venv; Python
# >= 3.11), installs the SDK from sdks/python with pytest and pytest-asyncio
# from PyPI, and runs sdks/python/tests: each test module starts its own
# `telepath` on a free loopback port with a temp dir and kills it (by pid)
# when done. Non-interactive; exits non-zero when a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin_dir=$(cd "${1:-target/debug}" && pwd)
if [ ! -x "$bin_dir/telepath" ]; then
  echo "no telepath binary in $bin_dir (build it with: cargo build --bin telepath)" >&2
  exit 1
fi

python3 - <<'PY' || { echo "the Python SDK needs Python >= 3.11 (python3 is $(python3 --version 2>&1))" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  echo "installing python3-venv"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
fi

venv="$root/target/tools/python-sdk"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
"$venv/bin/python" -m pip install -q ./sdks/python 'pytest>=8,<10' 'pytest-asyncio>=1.0,<2'
# The same version number every time: make sure the tests see this tree's SDK.
"$venv/bin/python" -m pip install -q --no-deps --force-reinstall ./sdks/python
# pip builds in the tree; leave it clean.
rm -rf sdks/python/build sdks/python/src/telepath_sdk.egg-info
"$venv/bin/python" -c 'import telepath, websockets, httpx; print(f"telepath-sdk {telepath.__version__}, websockets {websockets.__version__}, httpx {httpx.__version__}")'

export TELEPATH_BIN="$bin_dir/telepath"
cd sdks/python
# The installed package is what the tests import (src/ is not on the path).
timeout 900 "$venv/bin/python" -m pytest -p no:cacheprovider -q -ra tests
