#!/usr/bin/env bash
# Creates bench/compare/.venv (git-ignored) with llama-cpp-python built from
# source for this machine, plus numpy. Used only by the comparison scripts in
# this folder; the runnel build and tests never need it.
#
#   bash bench/compare/setup.sh            # default: 1 compile job, niced
#   JOBS=2 bash bench/compare/setup.sh     # faster on an idle machine
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
llama_cpp_python_version="0.3.36"
numpy_version="2.1.3"
jobs="${JOBS:-1}"

python="${PYTHON:-python3}"
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "numpy==$numpy_version"

if "$venv/bin/python" - "$llama_cpp_python_version" <<'PY' 2>/dev/null
import sys, llama_cpp
sys.exit(0 if llama_cpp.__version__ == sys.argv[1] else 1)
PY
then
  echo "llama-cpp-python $llama_cpp_python_version already installed in $venv"
  exit 0
fi

launcher=""
if command -v ccache >/dev/null 2>&1; then
  launcher="-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
fi
# CPU-only, tuned for this machine (-march=native); the multimodal library is
# not needed for text benchmarks.
export CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_CURL=OFF $launcher ${CMAKE_ARGS_EXTRA:-}"
export CMAKE_BUILD_PARALLEL_LEVEL="$jobs"
export MAKEFLAGS="-j$jobs"
nice -n 10 "$venv/bin/python" -m pip install --verbose \
  --no-binary llama-cpp-python "llama-cpp-python==$llama_cpp_python_version"
"$venv/bin/python" -c 'import llama_cpp; print("llama_cpp", llama_cpp.__version__)'
