#!/usr/bin/env bash
# Runs one libFuzzer target with its dictionary and resource limits, starting
# from the committed corpus plus seeds made from the fixtures.
#
#   scripts/fuzz.sh TARGET SECONDS [--update] [--jobs N]
#
# TARGET is gguf, safetensors, config, tokenizer_json, tokenizer_encode,
# chat_template or server_request (tests/fuzz/fuzz_TARGET.cpp).  The targets come from the asan
# preset (cmake --preset asan && cmake --build --preset asan), or from
# RUNNEL_FUZZ_BUILD.  New inputs go to a scratch corpus under
# RUNNEL_FUZZ_WORK (default /tmp/runnel-fuzz/TARGET); --update then merges
# everything into tests/fuzz/corpus/TARGET (libFuzzer -merge=1 keeps the
# smallest set of inputs with the same coverage).  A crash, a leak, a time-out
# (-timeout) or a blow-up (-rss_limit_mb, -malloc_limit_mb) stops the run, and
# the input is written next to the log as crash-*, timeout-*, oom-* or leak-*.
# The last lines printed are libFuzzer's final statistics
# (stat::number_of_executed_units is the number of executions).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: scripts/fuzz.sh TARGET SECONDS [--update] [--jobs N]" >&2; exit 2; }
[ $# -ge 2 ] || usage
target="$1" seconds="$2"
shift 2
update=0 jobs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --update) update=1 ;;
    --jobs) [ $# -ge 2 ] || usage; jobs="$2"; shift ;;
    *) usage ;;
  esac
  shift
done
case "$target" in
  gguf) max_len=16384 ;;
  tokenizer_json) max_len=16384 ;;
  safetensors|config) max_len=4096 ;;
  tokenizer_encode|chat_template|server_request) max_len=4096 ;;
  *) echo "scripts/fuzz.sh: unknown target '$target' (gguf, safetensors, config, tokenizer_json, tokenizer_encode, chat_template, server_request)" >&2
     exit 2 ;;
esac
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "scripts/fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2; }

build="${RUNNEL_FUZZ_BUILD:-build/asan}"
bin="$build/tests/fuzz_$target"
[ -x "$bin" ] || { echo "scripts/fuzz.sh: $bin not found; build it with: cmake --preset asan && cmake --build --preset asan" >&2; exit 2; }
work="${RUNNEL_FUZZ_WORK:-/tmp/runnel-fuzz}/$target"
committed="tests/fuzz/corpus/$target"
mkdir -p "$work/corpus" "$work/seeds" "$committed"

if [ "$target" = gguf ]; then
  "$build/tests/make_gguf_seeds" "$work/seeds"
else
  python3 tests/fuzz/make_seeds.py "$work/seeds.all"
  rm -rf "$work/seeds"
  mv "$work/seeds.all/$target" "$work/seeds"
  rm -rf "$work/seeds.all"
fi

# The limits: 5 s per input, 1 GiB resident, no single allocation above 512 MiB.
limits=(-timeout=5 -rss_limit_mb=1024 -malloc_limit_mb=512 -max_len="$max_len")
args=("${limits[@]}" -dict="tests/fuzz/dict/$target.dict" -max_total_time="$seconds"
      -print_final_stats=1 -artifact_prefix="$work/")
if [ "$jobs" -gt 1 ]; then
  args+=(-fork="$jobs" -ignore_crashes=0)
fi
echo "scripts/fuzz.sh: $bin ${args[*]} $work/corpus $committed $work/seeds" >&2
set +e
"$bin" "${args[@]}" "$work/corpus" "$committed" "$work/seeds" 2>&1 | tee "$work/log" | grep -v '^#[0-9]'
status="${PIPESTATUS[0]}"
set -e
if [ "$status" -ne 0 ]; then
  echo "scripts/fuzz.sh: fuzz_$target stopped with status $status; the input is under $work/ (log: $work/log)" >&2
  exit "$status"
fi

if [ "$update" -eq 1 ]; then
  rm -rf "$work/merged"
  mkdir -p "$work/merged"
  "$bin" "${limits[@]}" -merge=1 "$work/merged" "$committed" "$work/corpus" "$work/seeds" > "$work/merge.log" 2>&1 ||
    { echo "scripts/fuzz.sh: merge failed (log: $work/merge.log)" >&2; exit 1; }
  rm -rf "$committed"
  mv "$work/merged" "$committed"
  echo "scripts/fuzz.sh: $committed: $(ls "$committed" | wc -l) inputs, $(du -sk "$committed" | cut -f1) KiB" >&2
fi
