#!/usr/bin/env bash
# Creates tools/reference/.venv and installs the pinned reference toolchain.
# Usage: bash tools/reference/setup.sh            (idempotent)
#        PYTHON=python3.11 bash tools/reference/setup.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
py="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip
"$venv/bin/python" -m pip install --disable-pip-version-check -r "$here/requirements.txt"
"$venv/bin/python" - <<'PY'
import torch, transformers, safetensors, numpy
print("torch", torch.__version__, "transformers", transformers.__version__,
      "safetensors", safetensors.__version__, "numpy", numpy.__version__)
PY
