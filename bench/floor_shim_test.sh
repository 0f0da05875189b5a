#!/usr/bin/env bash
# bench_floor_shim (ctest): bench/floor_shim.c, the sysbench floors' LD_PRELOAD shim, on a temporary
# local directory: what it charges a round trip for, in each mode, counted by the shim itself.
# Usage: floor_shim_test.sh REPO
set -uo pipefail
REPO=$1
# shellcheck source=check_lib.sh
source "$(dirname "$0")/check_lib.sh"
gcc -O2 -Wall -Wextra -Werror -shared -fPIC -o "$T/shim.so" "$REPO/bench/floor_shim.c" -ldl -lpthread
check "the shim builds without warnings" [ -f "$T/shim.so" ]

# A log (one write, then its flush, 100 times), a file written twice per flush (10 times), a write to
# a pipe, and an fsync of a file never written.
cat >"$T/load.py" <<'PY'
import os, sys
d = sys.argv[1]
log = os.open(os.path.join(d, "log"), os.O_WRONLY | os.O_CREAT, 0o600)
for i in range(100):
    os.pwrite(log, b"l" * 512, i * 512)
    os.fdatasync(log)
data = os.open(os.path.join(d, "data"), os.O_WRONLY | os.O_CREAT, 0o600)
for i in range(10):
    os.pwrite(data, b"d" * 4096, 2 * i * 4096)
    os.write(data, b"e" * 100)
    os.fsync(data)
r, w = os.pipe()
os.write(w, b"not a file")
idle = os.open(os.path.join(d, "idle"), os.O_WRONLY | os.O_CREAT, 0o600)
os.fsync(idle)
print("%d %d" % (os.fstat(log).st_size, os.fstat(data).st_size), flush=True)  # stdout: a pipe
PY
run() {  # run MODE-ENV...: the load with the shim; prints the shim's count
  rm -f "$T/mirror" "$T/mirror.count" "$T/log" "$T/data" "$T/idle" "$T/sizes"
  timeout 60 env LD_PRELOAD="$T/shim.so" "$@" python3 "$T/load.py" "$T" | cat >"$T/sizes"
  [ "${PIPESTATUS[0]}" = 0 ] || return 1
  cat "$T/mirror.count" 2>/dev/null || echo none
}

# Flushes only: 100 + 10 + 1 flushes, each one round trip.
n=$(run FLOOR_MIRROR="$T/mirror")
check "flushes only: every fsync/fdatasync is mirrored (got $n, want 111)" [ "$n" = 111 ]
check "the writes themselves are done" [ "$(cat "$T/sizes" 2>/dev/null)" = "51200 77824" ]

# FLOOR_WRITES=1: the log's 100 writes + its first flush (the pattern is not known yet; the others
# ride with their write); the data file's 20 writes + 10 flushes; nothing for the pipe or the idle file.
n=$(run FLOOR_MIRROR="$T/mirror" FLOOR_WRITES=1)
check "writes charged: writes to files and the flushes not carried by a write (got $n, want 131)" [ "$n" = 131 ]
check "the writes themselves are done" [ "$(cat "$T/sizes" 2>/dev/null)" = "51200 77824" ]
check "the peer wrote what it received" [ -s "$T/mirror" ]

# Without FLOOR_MIRROR the shim does nothing.
n=$(run FLOOR_WRITES=1)
check "without FLOOR_MIRROR nothing is mirrored" [ "$n" = none ]
checks_done
