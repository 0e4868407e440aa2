#!/usr/bin/env bash
# Before/after throughput of two runnel binaries, interleaved on one machine
# (old, new, new, old per round, so drift cancels), as JSON Lines with a
# "build" field; a table of the ratios follows on stdout.
#
#   bench/interleave.sh OLD_RUNNEL NEW_RUNNEL [ROUNDS] [OUT.jsonl]
#
# Tests: pp512 and tg128 on the default model (-r 3), and on 1B-shaped random
# weights in Q4_0 and F16 (--preset llama-1b, -r 1); 2 threads.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: bench/interleave.sh OLD_RUNNEL NEW_RUNNEL [ROUNDS] [OUT.jsonl]" >&2; exit 2; }
old="$(realpath "$1")" new="$(realpath "$2")" rounds="${3:-2}"
cd "$(dirname "$0")/.."
out="${4:-$(mktemp --suffix=.jsonl)}"
: >"$out"
one() {  # BUILD LABEL ARGS...
  local w="$1" label="$2" bin="$old"
  shift 2
  [ "$w" = new ] && bin="$new"
  "$bin" bench "$@" -t 2 -o jsonl 2>/dev/null | sed "s/^{/{\"build\": \"$w\", \"label\": \"$label\", /" >>"$out"
}
interleave() {  # LABEL ARGS...
  for ((r = 1; r <= rounds; r++)); do
    if ((r % 2)); then order="old new"; else order="new old"; fi
    for w in $order; do one "$w" "$@"; done
  done
}
d=models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$d" ] && interleave default -m "$d" -p 512 -n 128 -r 3
interleave llama-1b-q4_0 --preset llama-1b --dtype q4_0 -p 512 -n 128 -r 1
interleave llama-1b-f16 --preset llama-1b --dtype f16 -p 512 -n 128 -r 1
echo "results: $out" >&2
python3 - "$out" <<'PY'
import collections, json, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    d = json.loads(line)
    runs[(d["label"], d["test"], d["build"])].append(d["avg_ts"])
print("| model | test | old t/s (runs) | new t/s (runs) | new / old |")
print("|---|---|---|---|---|")
for label, test in sorted({(k[0], k[1]) for k in runs}):
    o, n = runs[(label, test, "old")], runs[(label, test, "new")]
    f = lambda xs: ", ".join(f"{x:.1f}" for x in xs)
    print(f"| {label} | {test} | {f(o)} | {f(n)} | {sum(n) / sum(o):.3f} |")
PY
