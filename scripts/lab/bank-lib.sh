# shellcheck shell=bash
# Shell helpers shared by scripts/failover-loop.sh and the lab tests (tests/lab/): drive a cluster made by
# `lab.sh up --mysql` and the bank workload (build/bin/bank-client) in its client namespace.
# Source it after setting LAB (lab.sh), BANK (bank-client) and WORK (a directory for logs).
# Every wait is bounded; failures print a reason and return non-zero (callers run with set -e).

now_ns() { date +%s%N; }
ms_between() { echo $((($2 - $1) / 1000000)); }  # ms_between START_NS END_NS
say() { echo "[$(date -u +%T)] $*"; }
fail() { echo "FAIL: $*" >&2; return 1; }

lab() { "$LAB" "$@"; }

# Exports VIP, N1, N2, MYSQL_PORT, MYSQL_USER, MYSQL_PASSWORD from `lab.sh env` (bank-client reads them).
lab_env() {
  local env_text
  env_text=$(lab env) || fail "lab.sh env failed: is the lab up (lab.sh up --mysql)?" || return 1
  # Only these names: the env also prints LAB= (the prefix), which must not replace $LAB (lab.sh).
  local line key
  while IFS= read -r line; do
    key=${line%%=*}
    case $key in VIP | N1 | N2 | MYSQL_PORT | MYSQL_USER | MYSQL_PASSWORD) export "$key=${line#*=}" ;; esac
  done <<<"$env_text"
  [ -n "${VIP:-}" ] || fail "lab.sh env printed no VIP"
}

# "STATE SUBSTATE DATA_UPTODATE vip=HOLDER" of a node's module as the node itself sees it (HOLDER local:
# the VIP is on this node), or "down" when its daemon does not answer (killed node).
node_state() {
  local json
  json=$(timeout 5 "$LAB" exec "$1" hamirror state --json 2>/dev/null) || { echo down; return 0; }
  python3 -c 'import json,sys
r=json.load(sys.stdin)
d=r["local"]
print(d["state"], d["sub_state"], str(d.get("data_uptodate", False)).lower(), "vip=" + str(r.get("vip_holder")))' \
    <<<"$json" 2>/dev/null || echo down
}

# pair_ready STATE1 STATE2: one PRIM ready, the other SECOND ready.
pair_ready() { [[ $1 == "prim ready"* && $2 == "second ready"* ]] || [[ $2 == "prim ready"* && $1 == "second ready"* ]]; }
serving() { case $1 in prim* | alone*) return 0 ;; *) return 1 ;; esac }  # in a serving state
holds_vip() { [[ $1 == *" vip=local" ]]; }
other_node() { [ "$1" = n1 ] && echo n2 || echo n1; }

# Waits (at most $1 s) for one node PRIM ready and the other SECOND ready; prints the primary's name.
wait_pair_ready() {
  local deadline=$((SECONDS + $1)) s1 s2
  while [ $SECONDS -lt $deadline ]; do
    s1=$(node_state n1)
    s2=$(node_state n2)
    if [[ $s1 == "prim ready"* && $s2 == "second ready"* ]]; then echo n1; return 0; fi
    if [[ $s2 == "prim ready"* && $s1 == "second ready"* ]]; then echo n2; return 0; fi
    sleep 0.3
  done
  # What each node waits for (state -v: the wait reason) and its last log lines, so that a failure
  # explains itself.
  local n
  for n in n1 n2; do
    echo "--- $n: hamirror state -v" >&2
    timeout 10 "$LAB" exec "$n" hamirror state -v >&2 2>&1 || true
    echo "--- $n: last module log lines" >&2
    timeout 10 "$LAB" exec "$n" hamirror log -n 25 >&2 2>&1 || true
  done
  fail "after $1 s the cluster is not PRIM/SECOND ready: n1='$s1' n2='$s2'"
}

# Waits (at most $2 s) until node $1 is SECOND ready; prints the seconds it took (decimal).
wait_second_ready() {
  local start deadline=$((SECONDS + $2)) s
  start=$(now_ns)
  while [ $SECONDS -lt $deadline ]; do
    s=$(node_state "$1")
    if [[ $s == "second ready"* ]]; then
      ms_between "$start" "$(now_ns)"
      return 0
    fi
    sleep 0.2
  done
  fail "$1 not SECOND ready after $2 s (last state '$s')"
}

# The bank workload in the client namespace, in the background; one at a time. bank_start and bank_stop
# must run in the main shell (not in $(...)): they keep its PID. bank_summary prints the last run's line.
BANK_PID=
bank_setup() { lab exec client "$BANK" setup; }
bank_start() {  # bank_start THREADS
  rm -f "$WORK/stop"
  # lab.sh execs ip netns exec, which execs bank-client: $! is bank-client itself.
  "$LAB" exec client "$BANK" run --log "$WORK/bank.log" --stop-file "$WORK/stop" --threads "$1" \
    --reconnect-window 90 --statement-timeout 10 >"$WORK/run.out" 2>&1 &
  BANK_PID=$!
  # Started means: a commit acknowledged after this point.
  wait_ack_after "$(now_ns)" 30 >/dev/null || { bank_stop || true; fail "the workload commits nothing"; }
}
bank_stop() {  # fails if a client gave up or nothing was acknowledged
  [ -n "$BANK_PID" ] || return 0
  touch "$WORK/stop"
  local deadline=$((SECONDS + 40)) rc=0
  while kill -0 "$BANK_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  if kill -0 "$BANK_PID" 2>/dev/null; then
    kill -KILL "$BANK_PID" 2>/dev/null || true
    wait "$BANK_PID" 2>/dev/null || true
    BANK_PID=
    fail "bank-client did not stop within 40 s"
    return 1
  fi
  wait "$BANK_PID" || rc=$?
  BANK_PID=
  [ $rc -eq 0 ] || fail "bank-client run exited $rc: $(cat "$WORK/run.out")"
}
bank_summary() { grep '^acknowledged=' "$WORK/run.out" | tail -1; }
# Longest time (ms) without an acknowledged commit between $1 and $2 (ns), the bounds counted as commits.
max_ack_gap() { "$BANK" max-gap --log "$WORK/bank.log" --after "$1" --before "$2"; }
# Prints the time (ns) of the first commit acknowledged after $1, waiting at most $2 s for one.
wait_ack_after() {
  local deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    "$BANK" first-ack --log "$WORK/bank.log" --after "$1" && return 0
    if [ -n "$BANK_PID" ] && ! kill -0 "$BANK_PID" 2>/dev/null; then
      cat "$WORK/run.out" >&2
      fail "bank-client exited while waiting for a commit"
      return 1
    fi
    sleep 0.1
  done
  fail "no commit acknowledged through the VIP within $2 s"
}
acked_count() { grep -c '^A ' "$WORK/bank.log" || true; }
# Zero loss, through the VIP: total balance, every acknowledged transfer present. --live while running.
bank_verify() {
  local deadline=$((SECONDS + 30)) out rc
  while :; do
    rc=0
    out=$(lab exec client "$BANK" verify --log "$WORK/bank.log" "$@" 2>&1) || rc=$?
    # 2 = server unreachable (the VIP is moving): retry; anything else is the answer.
    if [ $rc -ne 2 ] || [ $SECONDS -ge $deadline ]; then break; fi
    sleep 0.5
  done
  echo "$out"
  [ $rc -eq 0 ] || fail "bank verify: $out"
}

# min / median / max of numbers on stdin (one a line), as "min=.. median=.. max=.. n=..".
distribution() {
  sort -n | awk '{v[NR] = $1} END {
    if (NR == 0) { print "n=0"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2)
    printf "min=%d median=%d max=%d n=%d\n", v[1], m, v[NR], NR }'
}
median_of() { distribution | sed -n 's/.*median=\([0-9]*\).*/\1/p'; }
