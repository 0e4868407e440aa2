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
ctest --preset "$preset" -j "$jobs" --timeout 900
