#!/usr/bin/env bash
# Installs dependencies, builds hamirror (Release, all cores) and runs the whole test suite with ctest.
#   scripts/test.sh                 # everything
#   BUILD_DIR=build-asan CMAKE_ARGS="-DHAMIRROR_SANITIZE=address" scripts/test.sh   # ASan+UBSan
#   BUILD_DIR=build-tsan CMAKE_ARGS="-DHAMIRROR_SANITIZE=thread" scripts/test.sh    # TSan (tests/tsan.supp)
#   CTEST_ARGS="-R fuse" scripts/test.sh   # a subset
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SKIP_DEPS:-0}" != 1 ]; then bash scripts/install-deps.sh; fi
# catch_discover_tests splits a test name at ';' into entries that run nothing and "pass": refuse.
if grep -rnE 'TEST_CASE\("[^"]*;' tests/; then
  echo "test names above contain ';' (ctest would split them and run nothing): use ','" >&2
  exit 1
fi
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} ${CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j "$(nproc)"
# TSan: Debian's gRPC and Abseil are not instrumented; their internal hand-offs are suppressed (the
# tests and the daemons they start inherit this). An operator's own TSAN_OPTIONS wins.
if grep -q '^HAMIRROR_SANITIZE:STRING=thread$' "$BUILD_DIR/CMakeCache.txt"; then
  export TSAN_OPTIONS=${TSAN_OPTIONS:-suppressions=$PWD/tests/tsan.supp}
fi
cd "$BUILD_DIR"
# Integration tests mount FUSE file systems and make namespaces: they run one at a time.
ctest --output-on-failure --timeout 900 ${CTEST_ARGS:-}
