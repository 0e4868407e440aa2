#!/usr/bin/env bash
# Makes the test-only venv that tests/server/test_server.py runs in: the
# official openai client, pinned (tests/server/requirements.txt).  Needs PyPI.
#   scripts/server-test-venv.sh [DIR]      (default build/server-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-build/server-venv}"
req=tests/server/requirements.txt
if [ -x "$dir/bin/python" ] && cmp -s "$req" "$dir/requirements.txt"; then
  exit 0
fi
rm -rf "$dir"
python3 -m venv "$dir"
"$dir/bin/pip" install -q --disable-pip-version-check -r "$req"
cp "$req" "$dir/requirements.txt"
echo "server-test-venv: $dir ($("$dir/bin/python" -c 'import openai; print("openai", openai.__version__)'))"
