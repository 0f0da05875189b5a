#!/usr/bin/env bash
# LAB_RESTARTD_HOOK for `lab_mysql_test.sh restartd`: lab.sh restartd runs it with the node number
# between the old hamirrord's exit and the new one's start, to spoil the adoption record.
#   ADOPT_HOOK_MODE=corrupt  one digit changed (checksum mismatch)
#   ADOPT_HOOK_MODE=reboot   another boot id, checksum recomputed (a record from before a reboot)
#   ADOPT_HOOK_MODE=stale    waits 2 s, past the module's 1.5 s heartbeat timeout
#   ADOPT_HOOK_MODE=fs-gone  stops the hamirror-fs the record names (SIGTERM: clean unmount; a
#                            secondary's directory is not in use): the record is older than what runs
set -euo pipefail
: "${LAB:?}" "${ADOPT_HOOK_MODE:?}"
n=$1
rec=/var/lib/hamirror/mysql/adopt
case $ADOPT_HOOK_MODE in
  corrupt) "$LAB" exec "n$n" sed -i 's/^handoff \([0-9]\)/handoff 9\1/' "$rec" ;;
  reboot)
    "$LAB" exec "n$n" python3 -c '
import sys
p = sys.argv[1]
body = [l for l in open(p).read().split("\n") if l and not l.startswith("checksum ")]
body = ["boot 00000000-0000-4000-8000-000000000000" if l.startswith("boot ") else l for l in body]
text = "\n".join(body) + "\n"
h = 1469598103934665603
for c in text.encode():
    h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
open(p, "w").write(text + "checksum %016x\n" % h)' "$rec" ;;
  stale) sleep 2 ;;
  fs-gone)
    pid=$("$LAB" exec "n$n" awk '$1 == "fs" {print $2; exit}' "$rec")
    [ -n "$pid" ] && [ "$pid" != 0 ] || { echo "adopt_record_hook.sh: no hamirror-fs in the record" >&2; exit 1; }
    "$LAB" exec "n$n" kill -TERM "$pid"
    for _ in $(seq 1 100); do
      "$LAB" exec "n$n" kill -0 "$pid" 2>/dev/null || exit 0
      sleep 0.1
    done
    echo "adopt_record_hook.sh: hamirror-fs $pid on n$n did not exit within 10 s" >&2
    exit 1 ;;
  *) echo "adopt_record_hook.sh: unknown ADOPT_HOOK_MODE '$ADOPT_HOOK_MODE'" >&2; exit 64 ;;
esac
