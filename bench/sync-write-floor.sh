#!/usr/bin/env bash
# What one synchronous 4 KiB write costs through hamirror, against what this machine alone makes it cost
# (issue 12: "added p50 <= 150 us"; if out of reach, show the floor). Interleaved rounds, one run:
#   local           O_DSYNC 4 KiB writes to a plain directory, one at a time (fio's qd-1 test)
#   two_flushes     pwrite + fdatasync in two files at once, timed until both are done: both copies of a
#                   mirror on this machine share its one disk, whose flushes do not overlap
#   tcp_rt          4 KiB over a loopback TCP socket and a 16-byte answer (the network's floor)
#   passthrough     O_DSYNC writes through libfuse's passthrough_ll example, `-o cache=never` (direct
#                   I/O, as hamirror gives O_DSYNC handles): the FUSE hop's floor, nothing replicated
#   hamirror        O_DSYNC writes through a hamirror-fs primary replicating to a secondary on 127.0.0.1
#   hamirror_alt    the same with HAMIRROR_FS_ALT (A/B of two builds)
# Report: medians of the rounds' p50/p90/p99, each target's p50 minus local's, and the floor of a
# replicated write here: two_flushes + (passthrough - local) + tcp_rt, i.e. both disks' flushes, one
# FUSE hop and one round trip, with no software of ours in between.
# STAGES=1 adds, after the rounds, where one hamirror write's time goes: `perf record` of the system
# calls of both daemons during WRITES writes, split into stages by bench/sync_write_stages.py.
#
# Knobs (env): ROUNDS=5 WRITES=3000 TARGETS="local two_flushes tcp_rt passthrough hamirror" STAGES=0
#   HAMIRROR_FS=build/bin/hamirror-fs HAMIRROR_FS_ALT= KEEP_CPUS_AWAKE=0 BENCH_DIR=/var/tmp/hamirror-bench
# Default runtime ≈ 2 min. Run as root. Not part of ctest.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$REPO/bench/lib.sh"

ROUNDS=${ROUNDS:-5}
WRITES=${WRITES:-3000}
TARGETS=${TARGETS:-local two_flushes tcp_rt passthrough hamirror}
STAGES=${STAGES:-0}
TOOL=$REPO/bench/sync_write_floor.py
[ "$(id -u)" -eq 0 ] || hm_die "run as root (FUSE mounts)"
command -v python3 >/dev/null || hm_die "python3 not installed (scripts/install-deps.sh)"

bench_init sync-floor

declare -A P50 P90 P99
measure() {  # measure NAME ARGS...: runs the tool, keeps its numbers under NAME
  local name=$1 line p50 p90 p99
  shift
  line=$(timeout 300 python3 "$TOOL" "$@") || { hm_log "$name: measurement failed"; return 1; }
  read -r _ p50 _ p90 _ p99 _ <<<"$line"
  P50[$name]="${P50[$name]:-} $p50"
  P90[$name]="${P90[$name]:-} $p90"
  P99[$name]="${P99[$name]:-} $p99"
  hm_log "  $name: $line"
}

run_one() {
  local name=$1 round=$2 rc=0
  hm_log "round $round: $name"
  sync
  case $name in
    local) mkdir -p "$W/local"; measure local write "$W/local" "$WRITES" || rc=1; rm -rf "$W/local" ;;
    two_flushes) mkdir -p "$W/two"; measure two_flushes two_flushes "$W/two" "$WRITES" || rc=1; rm -rf "$W/two" ;;
    tcp_rt) measure tcp_rt tcp_rt "$WRITES" || rc=1 ;;
    passthrough)
      mkdir -p "$W/pt/src" "$W/pt/mnt"
      if fuse_start "$W/pt/mnt" "$W/pt.log" "$PT_BIN" -f -o "source=$W/pt/src,cache=never" "$W/pt/mnt"; then
        measure passthrough write "$W/pt/mnt" "$WRITES" || rc=1
      else
        rc=1
      fi
      fuse_stop
      rm -rf "$W/pt" ;;
    hamirror | hamirror_alt)
      local bin=$HAMIRROR_FS
      [ "$name" = hamirror_alt ] && bin=$HAMIRROR_FS_ALT
      if HAMIRROR_FS=$bin hm_pair_start "$W/hm"; then
        measure "$name" write "$W/hm/primary" "$WRITES" || rc=1
      else
        rc=1
      fi
      hm_pair_stop || hm_log "$name: a daemon did not stop cleanly"
      rm -rf "$W/hm" ;;
  esac
  return $rc
}

active=()
for t in $TARGETS; do
  case $t in
    local | two_flushes | tcp_rt) ;;
    passthrough) build_passthrough_ll || continue ;;
    hamirror) bench_have_hamirror || continue ;;
    hamirror_alt) [ -x "${HAMIRROR_FS_ALT:-}" ] || { hm_log "hamirror_alt: set HAMIRROR_FS_ALT; target skipped"; continue; } ;;
    *) hm_die "unknown target $t" ;;
  esac
  active+=("$t")
done
hm_log "sync write floor: targets=${active[*]} rounds=$ROUNDS writes=$WRITES, work dir $W"
[ "$KEEP_CPUS_AWAKE" = 1 ] && hm_cpus_awake_start
bench_rounds run_one "${active[@]}"

med() { median ${1:-}; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == "n/a") print "n/a"; else printf "%+.0f", a - b}'; }
lp50=$(med "${P50[local]:-}")
echo
echo "## one synchronous 4 KiB write, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), rounds=$ROUNDS writes=$WRITES keep_cpus_awake=$KEEP_CPUS_AWAKE"
echo "(medians of the rounds; per-round p50 in brackets; µs)"
echo
echo "| target | p50 | p90 | p99 | p50 - local p50 |"
echo "|---|--:|--:|--:|--:|"
for t in "${active[@]}"; do
  a=$(med "${P50[$t]:-}")
  echo "| $t [${P50[$t]:-} ] | $a | $(med "${P90[$t]:-}") | $(med "${P99[$t]:-}") | $(sub "$a" "$lp50") |"
done
two=$(med "${P50[two_flushes]:-}"); pt=$(med "${P50[passthrough]:-}"); rt=$(med "${P50[tcp_rt]:-}")
if [ "$two" != n/a ] && [ "$pt" != n/a ] && [ "$rt" != n/a ] && [ "$lp50" != n/a ]; then
  floor=$(awk -v a="$two" -v b="$pt" -v c="$lp50" -v d="$rt" 'BEGIN {printf "%.0f", a + (b - c) + d}')
  echo
  echo "Floor of a replicated write on this machine: two_flushes + (passthrough - local) + tcp_rt = $floor µs,"
  echo "i.e. $(sub "$floor" "$lp50") µs over local (goal: hamirror's p50 - local p50 <= +150 µs)."
  for t in hamirror hamirror_alt; do
    h=$(med "${P50[$t]:-}")
    [ "$h" != n/a ] && echo "- $t: $(sub "$h" "$lp50") µs over local, $(sub "$h" "$floor") µs over the floor."
  done
fi

if [ "$STAGES" = 1 ] && bench_have_hamirror; then
  command -v perf >/dev/null || hm_die "STAGES=1 needs perf (scripts/install-deps.sh: linux-perf)"
  hm_log "stages: one more hamirror run under perf record (system calls of every thread)"
  HAMIRROR_FS=$HAMIRROR_FS hm_pair_start "$W/hm" || hm_die "stages: the pair did not start"
  perf record -q -e raw_syscalls:sys_enter,raw_syscalls:sys_exit -a -o "$W/stages.data" -- \
    python3 "$TOOL" write "$W/hm/primary" "$WRITES" >"$W/stages.out" 2>&1 || hm_log "perf record failed"
  hm_pair_stop || true
  perf script -i "$W/stages.data" -F comm,tid,time,event,trace 2>/dev/null >"$W/stages.txt"
  echo
  echo "### where one write's time goes (perf record of system calls; the writer saw: $(cat "$W/stages.out"))"
  echo
  python3 "$REPO/bench/sync_write_stages.py" "$W/stages.txt" "$(basename "$HAMIRROR_FS" | cut -c1-15)"
fi
exit 0
