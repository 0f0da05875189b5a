#!/usr/bin/env bash
# bench_sync_write_floor (ctest): the measuring tool of bench/sync-write-floor.sh on a temporary local
# directory, and the stage splitter on a made-up trace whose stages are known.
# Usage: sync_write_floor_test.sh REPO
set -uo pipefail
REPO=$1
# shellcheck source=check_lib.sh
source "$(dirname "$0")/check_lib.sh"
line_ok() { [[ "$1" =~ ^p50\ [0-9]+\ p90\ [0-9]+\ p99\ [0-9]+\ n\ $2$ ]]; }

for mode in write two_flushes; do
  out=$(timeout 60 python3 "$REPO/bench/sync_write_floor.py" "$mode" "$T" 50); rc=$?
  check "$mode exits 0" [ "$rc" = 0 ]
  check "$mode prints its percentiles: $out" line_ok "$out" 50
  check "$mode leaves nothing behind" [ -z "$(ls -A "$T")" ]
done
out=$(timeout 60 python3 "$REPO/bench/sync_write_floor.py" tcp_rt 50); rc=$?
check "tcp_rt exits 0" [ "$rc" = 0 ]
check "tcp_rt prints its percentiles: $out" line_ok "$out" 50
timeout 60 python3 "$REPO/bench/sync_write_floor.py" write 2>/dev/null; rc=$?
check "a missing argument is refused" [ "$rc" != 0 ]

# 300 writes 1 ms apart, each with the same known stages (µs after the application's pwrite).
python3 - "$T/trace.txt" <<'PY'
import sys
ev = [("python3", 10, 0, "enter", 18, None),
      ("hmfs-x", 20, 10, "exit", 0, 4176),
      ("hmfs-x", 20, 12, "enter", 18, None), ("hmfs-x", 20, 20, "exit", 18, 4096),
      ("hmfs-x", 20, 30, "enter", 46, None), ("hmfs-x", 20, 40, "exit", 46, 4158),
      ("hmfs-x", 20, 45, "enter", 75, None),
      ("hm-repl-server", 30, 50, "exit", 47, 4158),
      ("hm-repl-server", 30, 60, "enter", 18, None), ("hm-repl-server", 30, 65, "exit", 18, 4096),
      ("hm-repl-server", 30, 70, "enter", 75, None), ("hm-repl-server", 30, 270, "exit", 75, 0),
      ("hmfs-x", 20, 200, "exit", 75, 0),
      ("hm-repl-server", 30, 280, "enter", 46, None),
      ("hm-acks", 40, 300, "exit", 47, 45),
      ("hm-acks", 40, 310, "enter", 20, None), ("hm-acks", 40, 315, "exit", 20, 24),
      ("python3", 10, 330, "exit", 18, 4096)]
with open(sys.argv[1], "w") as f:
    f.write("            perf  99 1.000000:  raw_syscalls:sys_exit: NR 1 = 8\n")
    for i in range(300):
        for comm, tid, us, kind, nr, ret in sorted(ev, key=lambda e: e[2]):
            t = 100 + i * 0.001 + us / 1e6
            tail = "(3, 0, 0)" if kind == "enter" else "= %d" % ret
            f.write("%16s %5d %.6f:  raw_syscalls:sys_%s: NR %d %s\n" % (comm, tid, t, kind, nr, tail))
PY
out=$(python3 "$REPO/bench/sync_write_stages.py" "$T/trace.txt" hmfs-x); rc=$?
check "stages exits 0" [ "$rc" = 0 ]
check "100 writes split, none left out" grep -q "^100 writes split, 0 left out" <<<"$out"
check "total 330 µs" grep -q "^| total: application pwrite | 330 | 330 |" <<<"$out"
check "secondary fdatasync 200 µs" grep -q "^| secondary: fdatasync | 200 | 200 |" <<<"$out"
check "request reaches the worker in 10 µs" grep -q "^| application write -> worker has the request | 10 | 10 |" <<<"$out"
check "primary flush starts 25 µs before the secondary's" grep -q "secondary fdatasync start | 25 | 25 |" <<<"$out"
python3 "$REPO/bench/sync_write_stages.py" "$T/trace.txt" 2>/dev/null; rc=$?
check "a missing argument is refused" [ "$rc" != 0 ]

checks_done
