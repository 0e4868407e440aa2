#!/usr/bin/env bash
# Runs two runnel binaries on the same inputs and compares everything they
# write, byte for byte: the generated text or ids and every --dump-layers
# intermediate of every forward call.  For changes that must not change a
# bit (refactors of the forward pass).
#
#   scripts/compare-builds.sh OLD_RUNNEL NEW_RUNNEL [WORKDIR]
#
# Runs the fixture models (f32 and f16 KV cache), and, when present,
# stories260K from ../shared/testdata and the default model (greedy,
# --llama-cpp-order, sampling).  Exits 1 if any run differs.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: scripts/compare-builds.sh OLD_RUNNEL NEW_RUNNEL [WORKDIR]" >&2; exit 2; }
old="$(realpath "$1")" new="$(realpath "$2")"
cd "$(dirname "$0")/.."
work="${3:-$(mktemp -d)}"
fail=0 runs=0
run() {  # NAME ARGS...
  local name="$1"
  shift
  for w in old new; do
    local bin="$old"
    [ "$w" = new ] && bin="$new"
    rm -rf "$work/$name.$w"
    mkdir -p "$work/$name.$w"
    "$bin" generate "$@" --dump-layers "$work/$name.$w/d" >"$work/$name.$w/out.txt" 2>"$work/$name.$w/err.txt" ||
      echo "$name: $w exited $? (see $work/$name.$w/err.txt)"
  done
  runs=$((runs + 1))
  if diff -rq "$work/$name.old" "$work/$name.new" -x err.txt >/dev/null; then
    echo "$name: identical ($(ls "$work/$name.new/d" | wc -l) dumps)"
  else
    echo "$name: DIFFERENT ($work/$name.old vs $work/$name.new)"
    fail=1
  fi
}
for m in tests/data/models/*/; do
  n="$(basename "$m")"
  run "$n" -m "$m" --prompt-ids 1,5,9,3,7,2,8 -n 12 -t 2 --print-ids
  run "$n-f16kv" -m "$m" --prompt-ids 1,5,9,3,7,2,8 -n 12 -t 2 --print-ids --kv-dtype f16
done
s=../shared/testdata/stories260K
if [ -f "$s/stories260K.bin" ]; then
  run stories-bin -m "$s/stories260K.bin" --tokenizer "$s/tok512.bin" -p "Once upon a time" -n 40 -t 2
  run stories-gguf-temp -m "$s/stories260K.gguf" -p "There was a big" -n 40 -t 2 --temp 0.8 --seed 7
fi
d=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$d" ]; then
  run smollm2 -m "$d" -p "The capital of France is" -n 16 -t 2
  run smollm2-lcpp -m "$d" -p "The capital of France is" -n 16 -t 2 --llama-cpp-order
  run smollm2-temp -m "$d" -p "Write a poem" -n 16 -t 2 --temp 0.7 --seed 3 --kv-dtype f16
fi
echo "$runs runs, $([ $fail = 0 ] && echo "all identical" || echo "some differ")"
exit "$fail"
