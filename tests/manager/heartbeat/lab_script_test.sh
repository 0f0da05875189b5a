#!/usr/bin/env bash
# scripts/lab/lab.sh: up builds a working lab (both lans, client), cut/heal work, down removes every
# namespace and is idempotent. Needs root.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "needs root: skipped"; exit 0; }
LAB="$(dirname "$0")/../../../scripts/lab/lab.sh"
export HAMIRROR_LAB="hmt$$-lab"
trap 'bash "$LAB" down >/dev/null 2>&1 || true' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

bash "$LAB" up -n 2 -l 2
[ "$(ip netns list | grep -c "^$HAMIRROR_LAB-")" -eq 4 ] || fail "expected 4 namespaces"
bash "$LAB" up -n 2 -l 2 2>/dev/null && fail "second up must refuse"
bash "$LAB" exec client ping -c 1 -W 2 198.18.0.11 >/dev/null || fail "client -> n1"
bash "$LAB" exec n1 ping -c 1 -W 2 "$(bash "$LAB" addr 2 1)" >/dev/null || fail "n1 -> n2 on lan 1"
bash "$LAB" exec client ping -c 1 -W 1 198.18.1.11 >/dev/null 2>&1 && fail "client must not reach lan 1"
bash "$LAB" cut 2 1
bash "$LAB" exec n1 ping -c 1 -W 1 198.18.1.12 >/dev/null 2>&1 && fail "lan 1 of n2 is cut"
bash "$LAB" exec n1 ping -c 1 -W 2 198.18.0.12 >/dev/null || fail "lan 0 still up"
bash "$LAB" heal 2 1
ok=0
for _ in 1 2 3 4 5; do  # bounded: the port needs a moment to forward again
  if bash "$LAB" exec n1 ping -c 1 -W 1 198.18.1.12 >/dev/null 2>&1; then ok=1; break; fi
done
[ $ok -eq 1 ] || fail "heal"
bash "$LAB" exec n1 sleep 600 &
sleeper=$!
for _ in $(seq 1 50); do [ -n "$(ip netns pids "$HAMIRROR_LAB-n1")" ] && break; sleep 0.1; done
bash "$LAB" down
wait "$sleeper" 2>/dev/null || true
[ "$(ip netns list | grep -c "^$HAMIRROR_LAB-" || true)" -eq 0 ] || fail "namespaces left"
bash "$LAB" down || fail "down must be idempotent"
echo "lab_script_test: ok"
