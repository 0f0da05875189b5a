#!/usr/bin/env bash
# The full-count crash test: runs the MariaDB bank-workload crash test (SIGKILL of mariadbd and of the
# primary hamirror-fs at the same instant, then MariaDB recovery on the secondary's copy) for ROUNDS
# rounds and prints a summary. CI runs the same test with 3 rounds.
#   sudo scripts/crash-loop.sh                 # 10 rounds
#   ROUNDS=50 SEED=1234 BUILD_DIR=build scripts/crash-loop.sh
# Exit status 0 only if every round kept every acknowledged commit and the total balance.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-10}
BUILD_DIR=${BUILD_DIR:-$REPO/build}
[ "$(id -u)" -eq 0 ] || { echo "crash-loop.sh: run as root (FUSE mounts, mariadbd --user=root)" >&2; exit 1; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  [ -f "$BUILD_DIR/build.ninja" ] || cmake -S "$REPO" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" --target mariadb_mirror_test -j "$(nproc)"
fi
BIN=$BUILD_DIR/bin/mariadb_mirror_test
[ -x "$BIN" ] || { echo "crash-loop.sh: $BIN not built (needs the hamirror-fs target)" >&2; exit 1; }

LOG=$(mktemp /tmp/hamirror-crash-loop.XXXXXX.log)
export HAMIRROR_CRASH_ROUNDS=$ROUNDS
[ -n "${SEED:-}" ] && export HAMIRROR_CRASH_SEED=$SEED
start=$(date +%s)
set +e
"$BIN" "[crash]" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
elapsed=$(( $(date +%s) - start ))

echo
echo "=== crash-loop summary ($(date -u +%Y-%m-%dT%H:%MZ), ${elapsed} s, log $LOG)"
grep '^crash-test:' "$LOG" || true
grep '^crash-round' "$LOG" | awk '
  { total++; if ($3 == "PASS") pass++; else fail++
    for (i = 4; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    acked += v["acknowledged"]; doubt += v["in_doubt"]; present += v["present"] }
  END {
    if (total == 0) { print "no rounds completed"; exit }
    printf "rounds completed: %d, passed: %d, failed: %d\n", total, pass, fail
    printf "acknowledged commits: %d (every one must be present), in doubt at the crash: %d, transfers present after recovery: %d\n", acked, doubt, present
  }'
rec=$(grep '^crash-round' "$LOG" | sed -n 's/.*recovery_ms=\([0-9]*\).*/\1/p' | sort -n)
if [ -n "$rec" ]; then
  n=$(echo "$rec" | wc -l)
  echo "MariaDB start + crash recovery on the secondary copy: min $(echo "$rec" | head -1) ms," \
    "median $(echo "$rec" | sed -n "$(( (n + 1) / 2 ))p") ms, max $(echo "$rec" | tail -1) ms"
fi
grep '^crash-round.* FAIL' "$LOG" || true
if [ "$rc" -ne 0 ]; then echo "RESULT: FAILED (test exit status $rc)"; else echo "RESULT: PASSED"; fi
exit "$rc"
