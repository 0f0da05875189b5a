#!/usr/bin/env bash
# Installs dependencies, builds hamirror (Release, all cores) and runs the whole test suite with ctest.
#   scripts/test.sh                 # everything
#   BUILD_DIR=build-asan CMAKE_ARGS="-DHAMIRROR_SANITIZE=address" scripts/test.sh   # ASan+UBSan
#   BUILD_DIR=build-tsan CMAKE_ARGS="-DHAMIRROR_SANITIZE=thread" scripts/test.sh    # TSan (tests/tsan.supp)
#   CTEST_ARGS="-R fuse" scripts/test.sh   # a subset
#   TRANSPORT=uring scripts/test.sh        # every hamirror-fs the tests start on FUSE over io_uring
# TRANSPORT=uring|auto|dev: the tests that start hamirror-fs (directly, through a pair or through
# hamirrord) run it through a wrapper, given as HAMIRROR_FS_BIN, that adds `--transport T` where a role
# is started without one. uring also turns the kernel's fuse.enable_uring on for the run and restores it.
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
TRANSPORT=${TRANSPORT:-}
if [ -n "$TRANSPORT" ]; then
  case $TRANSPORT in dev | uring | auto) ;; *) echo "TRANSPORT=$TRANSPORT: expected dev, uring or auto" >&2; exit 64 ;; esac
  fs_bin=$PWD/$BUILD_DIR/bin/hamirror-fs wrapper=$PWD/$BUILD_DIR/hamirror-fs-$TRANSPORT
  cat >"$wrapper" <<WRAPPER
#!/bin/sh
# Made by scripts/test.sh: hamirror-fs with --transport $TRANSPORT unless the caller chose one. exec: same PID.
case "\$1" in primary | secondary | alone) ;; *) exec "$fs_bin" "\$@" ;; esac
for a in "\$@"; do [ "\$a" = --transport ] && exec "$fs_bin" "\$@"; done
exec "$fs_bin" "\$@" --transport $TRANSPORT
WRAPPER
  chmod +x "$wrapper"
  export HAMIRROR_FS_BIN=$wrapper
  param=/sys/module/fuse/parameters/enable_uring
  if [ "$TRANSPORT" = uring ]; then
    [ -w "$param" ] || { echo "TRANSPORT=uring: $param is missing or not writable (kernel >= 6.14, root)" >&2; exit 1; }
    old_uring=$(cat "$param")
    trap 'echo "$old_uring" >"$param"' EXIT
    echo Y >"$param"
  fi
  echo "tests start hamirror-fs through $wrapper (--transport $TRANSPORT)"
fi
cd "$BUILD_DIR"
# Integration tests mount FUSE file systems and make namespaces: they run one at a time.
ctest --output-on-failure --timeout 900 ${CTEST_ARGS:-}
