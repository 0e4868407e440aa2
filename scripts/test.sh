#!/usr/bin/env bash
# Configures, builds and runs the test suite.
#   scripts/test.sh            release build, all tests
#   scripts/test.sh asan       the same under AddressSanitizer + UBSan
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
jobs="${RUNNEL_JOBS:-$(nproc)}"
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$jobs"
# The server test's openai client (pinned, from PyPI); without it that one
# test is skipped with a message.
scripts/server-test-venv.sh || echo "test.sh: no server-test venv (PyPI unreachable?); Server.OpenAIClient will skip" >&2
ctest --preset "$preset" -j "$jobs" --timeout 900
