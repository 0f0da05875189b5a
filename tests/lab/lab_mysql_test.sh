#!/usr/bin/env bash
# Acceptance tests of issue 11 on the lab (scripts/lab/lab.sh up --mysql): MariaDB on hamirror behind the
# VIP, the bank workload (bank-client) in the client namespace, failures thrown at the cluster.
#   lab_mysql_test.sh up|restartd|failovers|failback|partition|slowlink|down
# ctest runs them in that order on one lab (fixture "lab": up first, down last). Needs root, MariaDB
# and namespaces: anything missing fails the test (never a skip). Environment: LAB, BANK (paths), WORK
# (logs, shared by the steps), HAMIRROR_LAB (prefix; ctest uses hmtest).
set -Eeuo pipefail
: "${LAB:?}" "${BANK:?}" "${WORK:?}"
export HAMIRROR_LAB=${HAMIRROR_LAB:-hmtest}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=scripts/lab/bank-lib.sh
. "$ROOT/scripts/lab/bank-lib.sh"
STEP=${1:?step}

require_tools() {
  [ "$(id -u)" -eq 0 ] || { echo "FAIL: needs root (namespaces, FUSE, mariadbd)" >&2; exit 1; }
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] ||
    { echo "FAIL: mariadbd missing (scripts/install-deps.sh)" >&2; exit 1; }
  [ -x "$BANK" ] || { echo "FAIL: $BANK missing" >&2; exit 1; }
  command -v python3 >/dev/null || { echo "FAIL: python3 missing" >&2; exit 1; }
}

# Every step but up/down leaves the workload stopped and the cluster PRIM/SECOND ready, links healed.
CUT_NODE=
SLOW_LINK=
lans=()
on_exit() {
  bank_stop >/dev/null 2>&1 || true
  if [ -n "$CUT_NODE" ]; then for lan in "${lans[@]}"; do lab heal "$CUT_NODE" "$lan" || true; done; fi
  if [ -n "$SLOW_LINK" ]; then
    lab delay 0 || true
    lab loss 1 0 0 || true
    lab loss 2 0 0 || true
  fi
}
trap on_exit EXIT
trap 'exit 1' TERM INT  # a ctest timeout: the EXIT trap still heals the links and stops the client

step_up() {
  require_tools
  mkdir -p "$WORK"
  rm -f "$WORK"/*
  lab down >/dev/null 2>&1 || true  # a lab left by an aborted run of these tests
  say "lab.sh up --mysql"
  local t0
  t0=$(now_ns)
  lab up --mysql
  say "cluster ready in $(ms_between "$t0" "$(now_ns)") ms"
  lab_env
  bank_setup
  : >"$WORK/bank.log"
  wait_pair_ready 60 >/dev/null
}

# At least 5 failovers alternating nodes, the 3rd followed by a kill during the returning node's resync;
# zero loss after each; median failover time <= 5 s.
step_failovers() {
  require_tools
  lab_env
  LAB_REUSE=1 RESYNC_KILL_AT=3 MAX_MEDIAN_MS=5000 THREADS=4 \
    "$ROOT/scripts/failover-loop.sh" "${FAILOVERS:-5}"
}

# Failback: the killed node boots, resyncs while the workload runs, becomes SECOND ready; swap moves
# MariaDB back to it with zero loss.
step_failback() {
  require_tools
  lab_env
  local prim other resync_ms t0 t1 ack
  prim=$(wait_pair_ready 120)
  other=$(other_node "$prim")
  bank_start 4
  lab kill "$prim"
  wait_ack_after "$(now_ns)" 60 >/dev/null
  say "failover to $other; boot $prim while the workload runs"
  local before
  before=$(acked_count)
  lab start "$prim"
  resync_ms=$(wait_second_ready "$prim" 180)
  say "resync time after failback: $prim SECOND ready $resync_ms ms after lab.sh start"
  [ "$(acked_count)" -gt "$before" ] || fail "no commit acknowledged while $prim resynced"
  bank_verify --live
  t0=$(now_ns)
  lab exec "$other" hamirror swap
  t1=$(now_ns)
  ack=$(wait_ack_after "$t1" 60)
  say "swap: first commit through the VIP $(ms_between "$t0" "$ack") ms after hamirror swap"
  [ "$(wait_pair_ready 120)" = "$prim" ] || fail "after swap $prim is not the primary"
  bank_stop
  bank_verify
}

# Lines of node $1's module log after line $2, and its line count now.
module_log_lines() { lab exec "$1" wc -l /var/log/hamirror/mysql.log | awk '{print $1}'; }
module_log_since() { lab exec "$1" tail -n "+$(($2 + 1))" /var/log/hamirror/mysql.log; }
fs_pid() {
  lab exec "$1" hamirror state --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["fs"][0]["pid"])'
}
mysqld_pid() { lab exec "$1" cat /run/mysqld/mysqld.pid; }
mount_type() { lab exec "$1" findmnt -n -o FSTYPE /var/lib/mysql | tail -n 1; }  # the top mount

# Samples both nodes until $WORK/watch-stop exists (bounded: 120 s): node $1 (restarted) may be "down"
# (no hamirrord for a moment) or in state $2; node $3 must stay in state $4 throughout; node $1's data
# directory must stay a hamirror mount. Writes the first violation to $WORK/watch-bad.
watch_restart() {
  local deadline=$((SECONDS + 120)) s1 s2 m n=0
  while [ ! -e "$WORK/watch-stop" ] && [ $SECONDS -lt $deadline ]; do
    s1=$(node_state "$1")
    s2=$(node_state "$3")
    m=$(mount_type "$1")
    n=$((n + 1))
    if [[ $s1 != down && $s1 != "$2 ready"* ]]; then echo "$1 was '$s1'" >"$WORK/watch-bad"; break; fi
    if [[ $s2 != "$4 ready"* ]]; then echo "$3 was '$s2'" >"$WORK/watch-bad"; break; fi
    if [ "$m" != fuse.hamirror ]; then echo "$1's /var/lib/mysql was '$m'" >"$WORK/watch-bad"; break; fi
  done
  echo "$n" >"$WORK/watch-samples"
}

# hamirrord restarted on node $1 (lab.sh restartd: SIGUSR2, a new hamirrord) while the workload runs;
# $2 is the primary, $3 the secondary. Same hamirror-fs and MariaDB processes, the mount never gone,
# both nodes in their state throughout, nothing run or changed by either daemon but the adoption.
restart_one() {
  local node=$1 prim=$2 sec=$3 fs_before mysqld_before l1 l2 out state other other_state t0 acked
  [ "$node" = "$prim" ] && { state=prim; other=$sec; other_state=second; } ||
    { state=second; other=$prim; other_state=prim; }
  fs_before=$(fs_pid "$node")
  mysqld_before=$(mysqld_pid "$prim")
  l1=$(module_log_lines "$node")
  l2=$(module_log_lines "$other")
  rm -f "$WORK/watch-stop" "$WORK/watch-bad" "$WORK/watch-samples"
  watch_restart "$node" "$state" "$other" "$other_state" &
  local watcher=$!
  acked=$(acked_count)
  t0=$(now_ns)
  out=$(lab restartd "$node") || { touch "$WORK/watch-stop"; wait "$watcher" || true; fail "lab.sh restartd $node: $out"; }
  say "$out"
  # Two heartbeat timeouts (2 x 1.5 s) after the new daemon answered: a peer that lost us would have
  # acted by then.
  sleep 3
  touch "$WORK/watch-stop"
  wait "$watcher" || true
  say "  watched in $(cat "$WORK/watch-samples" 2>/dev/null || echo 0) samples"
  [ ! -s "$WORK/watch-bad" ] || fail "during the restart of hamirrord on $node: $(cat "$WORK/watch-bad")"
  [ "$(fs_pid "$node")" = "$fs_before" ] || fail "hamirror-fs on $node changed: pid $fs_before -> $(fs_pid "$node")"
  [ "$(mysqld_pid "$prim")" = "$mysqld_before" ] || fail "MariaDB on $prim was restarted"
  [ "$(node_state "$node")" = "$state ready true vip=$([ "$node" = "$prim" ] && echo local || echo peer)" ] ||
    fail "$node is '$(node_state "$node")' after the restart"
  local newlog otherlog
  newlog=$(module_log_since "$node" "$l1")
  otherlog=$(module_log_since "$other" "$l2")
  grep -q "adopted the module left running by the previous hamirrord" <<<"$newlog" ||
    fail "$node did not adopt the module: $(grep -E 'adoption|crash path' <<<"$newlog" || echo 'no adoption line')"
  if grep -E "running (prestart|start_|stop_|poststop)|resync|removing VIP|VIP .* (added|removed)|starting hamirror-fs|fs role|failover done|state (STOP|WAIT|ALONE)" \
    <<<"$newlog$otherlog" >"$WORK/unexpected"; then
    fail "something changed during the restart of $node: $(cat "$WORK/unexpected")"
  fi
  grep -q "state " <<<"$otherlog" && fail "$other changed state: $(grep 'state ' <<<"$otherlog")"
  [ "$(acked_count)" -gt "$acked" ] || fail "no commit acknowledged while hamirrord on $node restarted"
  say "  $node adopted: same hamirror-fs (pid $fs_before), same MariaDB, $other stayed $other_state; longest commit gap $(max_ack_gap "$t0" "$(now_ns)") ms"
}

# hamirrord restarted on the secondary ($1; the primary is $2) with its adoption record spoiled
# (tests/lab/adopt_record_hook.sh, mode $3): the new daemon logs why ($4) and takes the crash path; the
# pair comes back PRIM/SECOND ready.
restart_spoiled() {
  local sec=$1 prim=$2 mode=$3 expect=$4 l log
  l=$(module_log_lines "$sec")
  ADOPT_HOOK_MODE=$mode LAB_RESTARTD_HOOK="$ROOT/tests/lab/adopt_record_hook.sh" lab restartd "$sec" >/dev/null
  log=$(module_log_since "$sec" "$l")
  grep -q "$expect.*; not adopting the running module: crash path" <<<"$log" ||
    fail "$mode record on $sec: no crash-path line saying '$expect': $(tail -20 <<<"$log")"
  ! grep -q "adopted the module left running" <<<"$log" || fail "$sec adopted from a $mode record"
  [ "$(node_state "$sec" | cut -d' ' -f1)" != stop ] || lab exec "$sec" hamirror start >/dev/null
  [ "$(wait_pair_ready 180)" = "$prim" ] || fail "after the crash path ($mode record) the pair is not back"
  say "$mode record: crash path taken and logged ($(grep -o "adoption record.*crash path" <<<"$log" | head -1 | cut -c1-160)...)"
}

# hamirrord restarted without the module noticing (issue 13 part 2): on the primary, then on the
# secondary, while the bank workload writes through the VIP: no error reaches the client (no reconnect,
# nothing failed or in doubt), nothing is lost, the mount stays, no failover, no resync. Then spoiled
# adoption records (corrupt, from before a reboot, too old, older than the hamirror-fs that runs): the
# new hamirrord says why and takes the crash path; the pair comes back.
step_restartd() {
  require_tools
  lab_env
  local prim sec node summary
  prim=$(wait_pair_ready 120)
  sec=$(other_node "$prim")
  bank_start 4
  for node in "$prim" "$sec" "$prim"; do restart_one "$node" "$prim" "$sec"; done
  bank_stop
  summary=$(bank_summary)
  say "workload: $summary"
  [[ " $summary " == *" in_doubt=0 failed=0 reconnects=0 gave_up=0 "* ]] ||
    fail "the client saw errors during the restarts: $summary"
  bank_verify
  # Negative: a spoiled record on the secondary means the crash path, logged with the reason.
  restart_spoiled "$sec" "$prim" corrupt "checksum mismatch"
  restart_spoiled "$sec" "$prim" reboot "written before the node rebooted (boot id differs)"
  restart_spoiled "$sec" "$prim" stale "not younger than the heartbeat timeout"
  restart_spoiled "$sec" "$prim" fs-gone "hamirror-fs for /var/lib/mysql was pid [0-9]*.*, is pid 0"
}

# Samples both nodes together for at most $1 s: fails if both hold the VIP or are both PRIM/ALONE at one
# instant; with "ready" as $2 it returns as soon as the pair is PRIM/SECOND ready again, or 2 when it is
# not by then. Prints a tally.
watch_one_side() {
  local deadline=$((SECONDS + $1)) s1 s2 samples=0 n1_serving=0 n2_serving=0
  while [ $SECONDS -lt $deadline ]; do
    # Waits for these two only (a bare wait would also wait for the bank client).
    node_state n1 >"$WORK/s1" &
    local p1=$!
    node_state n2 >"$WORK/s2" &
    wait "$p1" $!
    s1=$(cat "$WORK/s1")
    s2=$(cat "$WORK/s2")
    samples=$((samples + 1))
    if { holds_vip "$s1" && holds_vip "$s2"; } || { serving "$s1" && serving "$s2"; }; then
      fail "both nodes serve at once: n1='$s1' n2='$s2'"
      return 1
    fi
    if holds_vip "$s1" || serving "$s1"; then n1_serving=$((n1_serving + 1)); fi
    if holds_vip "$s2" || serving "$s2"; then n2_serving=$((n2_serving + 1)); fi
    if [ "${2:-}" = ready ] && pair_ready "$s1" "$s2"; then break; fi
    sleep 0.1
  done
  say "  $samples samples, never both serving (n1 serving in $n1_serving, n2 in $n2_serving); last n1='$s1' n2='$s2'"
  if [ "${2:-}" = ready ] && ! pair_ready "$s1" "$s2"; then
    echo "the pair is not PRIM/SECOND ready after $1 s" >&2
    return 2
  fi
}

# Partition with a witness: every link of the primary cut, both nodes alive: the service continues on
# one side, never on both at once (sampled during the cut and until the pair is ready again after heal);
# nothing acknowledged is lost.
step_partition() {
  require_tools
  lab_env
  local prim t0
  prim=$(wait_pair_ready 120)
  # The node's lans: its eth<k> interfaces (lab.sh up --mysql makes one, lan 0, which also carries the
  # clients and reaches the witness, the client's address).
  read -r -a lans <<<"$(ip -n "$HAMIRROR_LAB-$prim" -o link show | sed -n 's/^[0-9]*: eth\([0-9]*\)[@:].*/\1/p' | tr '\n' ' ')"
  [ "${#lans[@]}" -ge 1 ] || fail "no lan interface found in $HAMIRROR_LAB-$prim"
  bank_start 4
  t0=$(now_ns)
  CUT_NODE=${prim#n}
  for lan in "${lans[@]}"; do lab cut "$CUT_NODE" "$lan"; done
  say "cut $prim from every lan (${lans[*]})"
  watch_one_side 20
  local t_end
  t_end=$(now_ns)
  # Service continues: commits after the watch, and the longest pause of the workload since the cut.
  wait_ack_after "$t_end" 30 >/dev/null
  say "service on one side: longest pause without a commit since the cut $(max_ack_gap "$t0" "$t_end") ms"
  for lan in "${lans[@]}"; do lab heal "$CUT_NODE" "$lan"; done
  CUT_NODE=
  say "healed; watching until PRIM/SECOND ready"
  # The cut primary lost its lease before its peer: what it wrote alone afterwards (MariaDB's
  # shutdown) was never acknowledged, so it made no new generation and rejoins as SECOND by itself
  # (docs/state-machine.md, "Stopping alone is not serving alone"): no split brain, no operator.
  watch_one_side 30 ready || fail "the pair is not PRIM/SECOND ready 30 s after the heal: n1='$(node_state n1)' n2='$(node_state n2)'"
  bank_stop
  bank_verify
}

# Slow link: 2 ms delay and 1 % loss between the nodes; the workload continues; tps printed.
step_slowlink() {
  require_tools
  lab_env
  # netem first: a kernel without sch_netem cannot delay or drop, and nothing here can stand in for it.
  # Reported as skipped (ctest lists it), not passed; scripts/install-deps.sh cannot fix a kernel option.
  SLOW_LINK=1
  local out
  if ! out=$(lab delay 2 2>&1); then
    if [[ $out == *"netem is not available"* ]]; then
      echo "SKIP: $out" >&2
      exit 77
    fi
    fail "lab.sh delay 2: $out"
    return 1
  fi
  lab delay 0 >/dev/null
  wait_pair_ready 120 >/dev/null
  bank_start 4
  sleep 10  # a fixed measuring window for the baseline tps (nothing to await)
  bank_stop
  local base
  base=$(bank_summary)
  lab delay 2
  lab loss 1 0 1
  lab loss 2 0 1
  local qdiscs
  qdiscs=$(lab exec n1 tc qdisc show)
  echo "$qdiscs"
  if ! grep -q 'delay 2ms' <<<"$qdiscs" || ! grep -q 'loss 1%' <<<"$qdiscs"; then
    fail "netem delay and loss not both applied"
    return 1
  fi
  bank_start 4
  sleep 20
  local slow rc=0
  bank_stop || rc=$?
  slow=$(bank_summary)
  lab delay 0
  lab loss 1 0 0
  lab loss 2 0 0
  SLOW_LINK=
  say "baseline: $base"
  say "delay 2 ms + loss 1 %: $slow"
  [ $rc -eq 0 ] || return 1
  local acks
  acks=$(sed -n 's/.*acknowledged=\([0-9]*\).*/\1/p' <<<"$slow")
  [ "${acks:-0}" -ge 20 ] || fail "the workload did not continue on the slow link: $slow"
  wait_pair_ready 120 >/dev/null
  bank_verify
}


step_down() {
  lab down
  [ -z "$(ip netns list | grep "^$HAMIRROR_LAB-" || true)" ] || fail "namespaces left: $(ip netns list)"
}

case $STEP in
  up | restartd | failovers | failback | partition | slowlink | down) "step_$STEP" ;;
  *) echo "unknown step $STEP" >&2; exit 64 ;;
esac
