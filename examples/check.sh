#!/usr/bin/env bash
# Checks runnel as an outside user sees it: installs a build to a temporary
# prefix, builds examples/ against the installed CMake package, compiles one
# example with pkg-config alone, and runs every example on the committed
# fixtures, comparing with the transformers reference where there is one.
#   examples/check.sh [BUILD_DIR] [GGUF_WITH_VOCAB]
# BUILD_DIR defaults to build/release.  GGUF_WITH_VOCAB, when given, is a small
# GGUF model with an embedded tokenizer: the examples also run on text there.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build/release}"
gguf="${2:-}"
jobs="${RUNNEL_JOBS:-$(nproc)}"
work="$(mktemp -d "${TMPDIR:-/tmp}/runnel-examples.XXXXXX")"
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"

echo "== install $build -> $prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in lib/librunnel.a include/runnel/runnel.hpp include/runnel/scheduler.hpp \
         include/runnel/version.hpp bin/runnel lib/cmake/runnel/runnelConfig.cmake \
         lib/cmake/runnel/runnelConfigVersion.cmake lib/cmake/runnel/runnelTargets.cmake \
         lib/pkgconfig/runnel.pc; do
  [ -e "$prefix/$f" ] || { echo "missing after install: $f" >&2; exit 1; }
done
"$prefix/bin/runnel" --version

echo "== examples with find_package(runnel)"
cmake -S examples -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/build" -j "$jobs"

echo "== generate.cpp with pkg-config"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# shellcheck disable=SC2046
g++ -std=c++20 -O2 examples/generate.cpp $(pkg-config --cflags --libs --static runnel) \
    -o "$work/generate-pc"

model=tests/data/models/llama-mha
ref="$model/reference.json"
ids0=$(python3 -c "import json; print(','.join(map(str, json.load(open('$ref'))['prompts'][0]['ids'])))")
ids1=$(python3 -c "import json; print(','.join(map(str, json.load(open('$ref'))['prompts'][1]['ids'])))")

echo "== generate (CMake and pkg-config builds): greedy ids against transformers"
want=$(python3 -c "import json; print(' '.join(map(str, json.load(open('$ref'))['prompts'][0]['greedy'])))")
for exe in "$work/build/generate" "$work/generate-pc"; do
  got=$("$exe" "$model" --ids "$ids0" -n 32 | xargs)
  [ "$got" = "$want" ] || { echo "generate: got [$got], want [$want]" >&2; exit 1; }
done
echo "32 greedy tokens match"
# Cancellation through the callback after 5 tokens.
got=$("$work/build/generate" "$model" --ids "$ids0" -n 32 --cancel-after 5 2>"$work/cancel.txt" | xargs)
want5=$(echo "$want" | cut -d' ' -f1-5)
[ "$got" = "$want5" ] && grep -q cancelled "$work/cancel.txt" ||
  { echo "generate --cancel-after 5: got [$got], $(cat "$work/cancel.txt")" >&2; exit 1; }
"$work/build/generate" "$model" --ids "$ids0" -n 16 --temp 0.8 --seed 7 >/dev/null

echo "== embed: mean-pooled final hidden states against transformers"
"$work/build/embed" "$model" --ids "$ids0" --ids "$ids1" | tee "$work/embed.txt"
python3 - "$ref" "$work/embed.txt" <<'PY'
import json, math, sys
ref = json.load(open(sys.argv[1]))["prompts"][0]["final_norm_hidden"]  # [n, embed_dim]
dim = len(ref[0])
mean = [sum(row[d] for row in ref) / len(ref) for d in range(dim)]
norm = math.sqrt(sum(x * x for x in mean))
want = [x / norm for x in mean[:4]]
line = next(l for l in open(sys.argv[2]) if l.startswith("0:"))
got = [float(x) for x in line.split("=")[1].split()]
err = max(abs(a - b) for a, b in zip(got, want))
print(f"embedding[0:4] max abs error {err:.2e}")
sys.exit(0 if err < 1e-3 else 1)
PY

echo "== batch: Scheduler and generate_batch against transformers"
"$work/build/batch" "$model" --ids "$ids0" --ids "$ids1" --ids "$ids0" -n 8 | tee "$work/batch.txt"
python3 - "$ref" "$work/batch.txt" <<'PY'
import json, sys
prompts = json.load(open(sys.argv[1]))["prompts"]
want = [prompts[0]["greedy"][:8], prompts[1]["greedy"][:8], prompts[0]["greedy"][:8]]
lines = [l for l in open(sys.argv[2]) if l.startswith("generate_batch ")]
got = [[int(x) for x in l.split("[")[1].split("]")[0].split()] for l in lines]
if got != want:
    sys.exit(f"generate_batch tokens {got}, want {want}")
if not any("Cancelled" in l or "cancelled" in l for l in open(sys.argv[2])):
    sys.exit("the request cancelled from its callback did not report it")
print("generate_batch: 3 x 8 greedy tokens match")
PY

if [ -n "$gguf" ]; then
  echo "== text prompts on $gguf (GGUF, embedded tokenizer)"
  "$work/build/generate" "$gguf" "ab abc" -n 8
  "$work/build/embed" "$gguf" "ab" "abc b"
  "$work/build/batch" "$gguf" "ab" "b c a" -n 4
fi
echo "examples: ok"
