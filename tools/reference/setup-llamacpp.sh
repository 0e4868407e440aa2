#!/usr/bin/env bash
# Creates tools/reference/.venv-llamacpp (git-ignored) for make_llamacpp_fixtures.py:
# llama-cpp-python built from source (CPU only, -march=native), gguf-py and numpy,
# all pinned in requirements-llamacpp.txt. Never a project dependency.
#   bash tools/reference/setup-llamacpp.sh           # 2 compile jobs
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-llamacpp"
py="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip
export CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TOOLS=OFF"
export CMAKE_BUILD_PARALLEL_LEVEL="${JOBS:-2}"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-binary llama-cpp-python \
  -r "$here/requirements-llamacpp.txt"
"$venv/bin/python" -c "import llama_cpp, gguf, numpy; print('llama-cpp-python', llama_cpp.__version__, 'numpy', numpy.__version__)"
