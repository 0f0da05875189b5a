#!/usr/bin/env bash
# N failovers of MariaDB on the lab under the bank workload, and the tally (needs root and a build).
#   scripts/failover-loop.sh [N]        N rounds (default 50): kill the primary (power loss, lab.sh kill),
#                                       measure the time to the first commit acknowledged through the VIP,
#                                       check zero loss, boot the node again and wait until it is resynced
#                                       (SECOND ready); the next round kills the other node.
# Environment:
#   BUILD_DIR=build       where bank-client (build/bin) is
#   LAB_REUSE=1           use the cluster `lab.sh up --mysql` already made (its bank set up, log in
#                         $WORK/bank.log) and leave it up; otherwise one is made and removed
#   HAMIRROR_LAB=hmloop   lab prefix when it makes its own
#   THREADS=4             bank client threads
#   RESYNC_KILL_AT=K      in round K, once the returning node resyncs, kill the new primary too: the
#                         resyncing node must never serve; the killed one boots and serves again (0: never)
#   MAX_MEDIAN_MS=M       exit 1 if the median failover time is above M ms
#   WORK=DIR              logs (default: a new /tmp directory, kept and printed)
# Prints per round the failover and resync times; at the end failovers, acknowledged, lost (must be 0),
# failover time min/median/max and resync time. Exit 0 only when nothing was lost.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-50}
if ! [[ "$N" =~ ^[1-9][0-9]*$ ]]; then echo "usage: $0 [N>=1]" >&2; exit 64; fi
LAB=${LAB:-$ROOT/scripts/lab/lab.sh}
BANK=${BANK:-$ROOT/${BUILD_DIR:-build}/bin/bank-client}
THREADS=${THREADS:-4}
RESYNC_KILL_AT=${RESYNC_KILL_AT:-0}
WORK=${WORK:-$(mktemp -d /tmp/hamirror-failover.XXXXXX)}
export HAMIRROR_LAB=${HAMIRROR_LAB:-hmloop}
# shellcheck source=scripts/lab/bank-lib.sh
. "$ROOT/scripts/lab/bank-lib.sh"

[ "$(id -u)" -eq 0 ] || { echo "$0: must run as root (namespaces, mounts)" >&2; exit 1; }
[ -x "$BANK" ] || { echo "$0: $BANK missing: build it (cmake --build build --target bank-client)" >&2; exit 1; }

cleanup() {
  bank_stop >/dev/null 2>&1 || true
  [ "${LAB_REUSE:-0}" = 1 ] || lab down >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 1' TERM INT

if [ "${LAB_REUSE:-0}" != 1 ]; then
  say "lab.sh up --mysql (prefix $HAMIRROR_LAB)"
  lab up --mysql
  lab_env
  bank_setup
  : >"$WORK/bank.log"
else
  lab_env
  [ -f "$WORK/bank.log" ] || { echo "$0: LAB_REUSE=1 needs the bank set up and $WORK/bank.log" >&2; exit 1; }
fi
: >"$WORK/failover_ms"
: >"$WORK/resync_ms"
say "work directory $WORK; $N rounds, $THREADS client threads"
bank_start "$THREADS"

BALLAST=/var/lib/mysql/hamirror-lab-ballast
BALLAST_MB=${BALLAST_MB:-768}

# True if node $1's module log shows it up to date (the primary mirroring to it synchronously) after
# it last entered SECOND (transient).
resynced_in_time() {
  lab exec "$1" hamirror log -n 2000 2>/dev/null |
    awk '/state SECOND \(transient\)/ {up = 0} /primary is synchronous: data up to date/ {up = 1} END {exit !up}'
}

# Kills the new primary while node $1 (returning) resyncs, and checks that $1 never serves meanwhile.
kill_during_resync() {
  local returning=$1 victim s deadline
  victim=$(other_node "$returning")
  deadline=$((SECONDS + 60))
  s=$(node_state "$returning")
  # Catch it while SECOND transient; if its resync was already over, make it resync everything again.
  if [[ $s == "second ready"* ]]; then
    say "  $returning already resynced; second fullsync to resync it again"
    lab exec "$returning" hamirror second fullsync >/dev/null
  fi
  while [[ $s != "second transient"* ]] && [ $SECONDS -lt $deadline ]; do
    sleep 0.05
    s=$(node_state "$returning")
  done
  [[ $s == "second transient"* ]] || fail "never saw $returning resyncing (last state '$s')" || return 1
  say "  $returning resyncing ($s): kill $victim"
  lab kill "$victim" >/dev/null
  # For heartbeat timeout and more: the inconsistent node must not serve.
  deadline=$((SECONDS + 8))
  while [ $SECONDS -lt $deadline ]; do
    s=$(node_state "$returning")
    if serving "$s"; then
      # `lab kill` takes a moment: the resync may have ended meanwhile and the victim mirrored to it
      # synchronously, which makes the returning node up to date and its takeover a plain failover.
      # Its own log says which: "primary is synchronous" after its last SECOND (transient).
      if resynced_in_time "$returning"; then
        say "  $returning finished its resync and was up to date before $victim died: a normal failover"
        break
      fi
      fail "$returning serves while its resync was unfinished ($s)"
      return 1
    fi
    sleep 0.2
  done
  say "  $returning did not serve without its data (state '$s'); start $victim"
  local t0
  t0=$(now_ns)
  lab start "$victim" >/dev/null
  wait_ack_after "$t0" 120 >/dev/null
  wait_pair_ready 180 >/dev/null
  say "  service back after $(ms_between "$t0" "$(now_ns)") ms counting the boot of $victim; $(bank_verify --live)"
  local serving_node
  serving_node=$(wait_pair_ready 180)
  lab exec "$serving_node" rm -f "$BALLAST" || fail "could not remove the ballast on $serving_node"
}

for ((round = 1; round <= N; round++)); do
  prim=$(wait_pair_ready 180)
  other=$(other_node "$prim")
  t0=$(now_ns)
  lab kill "$prim" >/dev/null
  t1=$(now_ns)
  ack=$(wait_ack_after "$t1" 60)
  failover_ms=$(ms_between "$t0" "$ack")
  echo "$failover_ms" >>"$WORK/failover_ms"
  s=$(node_state "$other")
  serving "$s" || fail "round $round: commits resumed but $other is '$s'"
  verify=$(bank_verify --live)
  if [ "$round" -eq "$RESYNC_KILL_AT" ]; then
    # Ballast the returning node must receive: its resync then lasts seconds, not the ~0.7 s of the
    # workload's changes alone, so the kill below lands while it runs (`lab kill` takes about a
    # second from the moment the resync is seen). MariaDB ignores a file of that name in its datadir.
    lab exec "$other" dd if=/dev/urandom of="$BALLAST" bs=1M count="$BALLAST_MB" status=none ||
      fail "could not write $BALLAST_MB MiB of ballast on $other"
  fi
  lab start "$prim" >/dev/null
  if [ "$round" -eq "$RESYNC_KILL_AT" ]; then
    say "round $round: kill $prim -> $other serves after $failover_ms ms; $verify"
    kill_during_resync "$prim"
    continue
  fi
  resync_ms=$(wait_second_ready "$prim" 180)
  echo "$resync_ms" >>"$WORK/resync_ms"
  say "round $round: kill $prim -> $other serves after $failover_ms ms; $prim resynced in $resync_ms ms; $verify"
done

bank_stop
run_summary=$(bank_summary)
lost=0
final=$(bank_verify) || lost=$(sed -n 's/.*: \([0-9][0-9]*\) acknowledged transfers missing.*/\1/p' <<<"$final")
echo "== failover loop: $N rounds, $THREADS threads, lab $HAMIRROR_LAB, $(date -u +%FT%TZ)"
echo "workload:      $run_summary"
echo "final check:   $final"
echo "failovers:     $(wc -l <"$WORK/failover_ms")"
echo "acknowledged:  $(sed -n 's/^acknowledged=\([0-9]*\).*/\1/p' <<<"$run_summary") (this run; $(acked_count) in $WORK/bank.log)"
echo "lost:          ${lost:-unknown}"
echo "failover ms:   $(distribution <"$WORK/failover_ms")"
echo "resync ms:     $(distribution <"$WORK/resync_ms")"
[ "$lost" = 0 ] || { echo "FAIL: acknowledged commits lost or the final check failed" >&2; exit 1; }
if [ -n "${MAX_MEDIAN_MS:-}" ]; then
  median=$(median_of <"$WORK/failover_ms")
  [ "$median" -le "$MAX_MEDIAN_MS" ] || { echo "FAIL: median failover $median ms > $MAX_MEDIAN_MS ms" >&2; exit 1; }
fi
