#!/usr/bin/env bash
# MariaDB sysbench (oltp_write_only; SB_TEST for another) on several targets, in interleaved rounds, same machine, same run:
#   local           a plain directory on the local disk (the baseline), MariaDB's default flush method
#                   (O_DIRECT)
#   local_fsync     the same with innodb_flush_method=fsync (what a FUSE layer that drops O_DIRECT on its
#                   backing files amounts to; passthrough_ll needs it): separates that effect from FUSE's
#   hamirror        a hamirror-fs primary mount replicating synchronously to a secondary on 127.0.0.1
#   hamirror_alone  a hamirror-fs `alone` mount (no peer): the write path without replication, i.e. FUSE
#                   plus what the node records for a later resync (docs/reintegration.md, the record)
#   passthrough_ll  libfuse's passthrough_ll example (Debian's libfuse3-dev docs), built here, default
#                   options (multithreaded); no replication
#   bindfs          bindfs, default options; no replication
#   floor           MariaDB on a plain local directory with bench/floor_shim.c preloaded: every fsync and
#                   fdatasync also pays a loopback round trip to a "peer" thread that writes and flushes
#                   4 KiB on the same disk (overlapping the local flush). What a perfect synchronous
#                   mirror of this workload could reach on this machine, whatever its design (an upper
#                   bound for hamirror: nothing else is charged)
#   floor_fuse      the same on a passthrough_ll mount (flush method as passthrough_ll): the FUSE hop plus
#                   a perfect mirror, the upper bound for any FUSE-based synchronous mirror here
#   floor_writes, floor_writes_fuse  the same two with FLOOR_WRITES=1: every write of mariadbd to a file
#                   also waits for the peer (hamirror's promise 1), a log's write+flush in one round trip
#                   (as hamirror does it): the upper bound for a mirror that keeps hamirror's promises
#                   (InnoDB's io_uring page writes, and the flushes of files written only that way,
#                   are not charged: see bench/floor_shim.c)
# Full durability everywhere: innodb_flush_log_at_trx_commit=1, sync_binlog=1, binary log on.
# Prints per-round tps, the median per target and its ratio to local's median.
#
# Knobs (env): ROUNDS=3 DURATION=30 (s per run) SETTLE=10 (s idle after `sync` before each run)
#   TARGETS="local local_fsync hamirror passthrough_ll bindfs" SB_THREADS=4 SB_TABLES=4 SB_TABLE_SIZE=10000
#   SB_TEST=oltp_write_only (or oltp_read_write, oltp_read_only)
#   KEEP_CPUS_AWAKE=0 (1: PM QoS 0 µs on /dev/cpu_dma_latency during the runs, so idle vCPUs poll instead
#   of halting; see mariadb-lib.sh and docs/benchmarks.md: without it this VM can add ~4 ms of wake-up
#   latency to every lone sync write)
#   BENCH_DIR=/var/tmp/hamirror-bench HAMIRROR_FS=build/bin/hamirror-fs
#   HAMIRROR_FS_ALT=path/to/another/hamirror-fs with targets hamirror_alt and hamirror_alone_alt: A/B of
#   two builds in one run
#   PT_FLUSH_METHOD=fsync (passthrough_ll hands O_DIRECT to its backing files with unaligned buffers and
#   MariaDB's default O_DIRECT then fails with EINVAL; see docs/benchmarks.md)
# Default runtime: 5 targets x 3 rounds x ~52 s ≈ 13 min. Run as root. Not part of ctest.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$REPO/bench/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-30}
SETTLE=${SETTLE:-10}
TARGETS=${TARGETS:-local local_fsync hamirror passthrough_ll bindfs}
PT_FLUSH_METHOD=${PT_FLUSH_METHOD:-fsync}
[ "$(id -u)" -eq 0 ] || hm_die "run as root (FUSE mounts, mariadbd --user=root)"

bench_cleanup_hook() { mdb_stop >/dev/null 2>&1; }
bench_init sb

# setup_target NAME DIR: mounts/creates the target under DIR; sets DATADIR (and FUSE_PID/FUSE_MNT).
setup_target() {
  local name=$1 d=$2
  mkdir -p "$d"
  case $name in
    local | local_fsync | floor | floor_writes) DATADIR=$d/data ;;
    hamirror)
      hm_pair_start "$d" || return 1
      DATADIR=$d/primary/data ;;
    hamirror_alt)  # another hamirror-fs build, for A/B comparisons in one run
      HAMIRROR_FS=$HAMIRROR_FS_ALT hm_pair_start "$d" || return 1
      DATADIR=$d/primary/data ;;
    hamirror_alone | hamirror_alone_alt)  # no peer; the control socket's directory holds the record
      local bin=$HAMIRROR_FS
      [ "$name" = hamirror_alone_alt ] && bin=$HAMIRROR_FS_ALT
      mkdir -p "$d/alone"
      fuse_start "$d/alone" "$d/alone.log" "$bin" alone --dir "$d/alone" --control "$d/alone.ctl" ||
        { tail -20 "$d/alone.log" >&2; return 1; }
      DATADIR=$d/alone/data ;;
    passthrough_ll | bindfs | floor_fuse | floor_writes_fuse)
      mkdir -p "$d/src" "$d/mnt"
      if [ "$name" != bindfs ]; then
        fuse_start "$d/mnt" "$d/fuse.log" "$PT_BIN" -f -o source="$d/src" "$d/mnt" || return 1
      else
        fuse_start "$d/mnt" "$d/fuse.log" bindfs -f "$d/src" "$d/mnt" || return 1
      fi
      DATADIR=$d/mnt/data ;;
    *) hm_die "unknown target $name" ;;
  esac
}

teardown_target() {
  local name=$1 d=$2
  case $name in
    hamirror | hamirror_alt) hm_pair_stop || hm_log "$name: a daemon did not stop cleanly" ;;
    passthrough_ll | bindfs | floor_fuse | floor_writes_fuse | hamirror_alone | hamirror_alone_alt) fuse_stop ;;
  esac
  rm -rf "$d"
}

is_floor() { case $1 in floor | floor_fuse | floor_writes | floor_writes_fuse) return 0 ;; esac; return 1; }

declare -A TPS
HM_HWM=0
run_one() {
  local name=$1 round=$2 d=$W/hm flush=$MDB_FLUSH_METHOD
  [ "$name" = hamirror ] || d=$W/$name
  setup_target "$name" "$d" || { hm_log "$name: setup failed"; teardown_target "$name" "$d"; return 1; }
  case $name in passthrough_ll | floor_fuse | floor_writes_fuse) MDB_FLUSH_METHOD=$PT_FLUSH_METHOD ;; esac
  [ "$name" = local_fsync ] && MDB_FLUSH_METHOD=fsync
  local started=0
  if mdb_install "$DATADIR" "$W/run"; then
    if is_floor "$name"; then
      rm -f "$d/mirror.count"
      local writes=0
      case $name in floor_writes*) writes=1 ;; esac
      LD_PRELOAD=$FLOOR_SHIM FLOOR_MIRROR=$d/mirror FLOOR_WRITES=$writes mdb_start "$DATADIR" "$W/run" && started=1
    else
      mdb_start "$DATADIR" "$W/run" && started=1
    fi
  fi
  if [ "$started" = 1 ] && sb_prepare "$W/prepare.log"; then
    sync
    sleep "$SETTLE"  # let the disk settle (anchors.md), the same for every target
    local tps
    if tps=$(sb_run "$DURATION" "$W/run-$name-$round.log"); then
      TPS[$name]="${TPS[$name]:-} $tps"
      hm_log "round $round $name: $tps tps"
    fi
    if [ "$name" = hamirror ] && [ -n "${HM_PRIMARY_PID:-}" ]; then
      local hwm
      hwm=$(hm_vmhwm "$HM_PRIMARY_PID")
      [ -n "$hwm" ] && [ "$hwm" -gt "$HM_HWM" ] && HM_HWM=$hwm
    fi
  else
    hm_log "$name: MariaDB could not run here (see above)"
  fi
  mdb_stop || hm_log "$name: mariadbd did not stop cleanly"
  if is_floor "$name"; then
    # The shim counts what it mirrored: a floor that mirrored nothing would be local, not a floor.
    local mirrored
    mirrored=$(cat "$d/mirror.count" 2>/dev/null || echo 0)
    hm_log "round $round $name: $mirrored requests mirrored"
    [ "$mirrored" -gt 0 ] || hm_die "$name: the shim mirrored nothing (LD_PRELOAD not applied?)"
  fi
  MDB_FLUSH_METHOD=$flush
  rm -rf "$W/run"
  teardown_target "$name" "$d"
}

active=()
for t in $TARGETS; do
  case $t in passthrough_ll | floor_fuse | floor_writes_fuse) build_passthrough_ll || continue ;; esac
  if is_floor "$t" && [ -z "${FLOOR_SHIM:-}" ]; then
    FLOOR_SHIM=$W/floor_shim.so
    gcc -O2 -Wall -shared -fPIC -o "$FLOOR_SHIM" "$REPO/bench/floor_shim.c" -ldl -lpthread ||
      hm_die "floor: cannot build bench/floor_shim.c"
  fi
  if { [ "$t" = hamirror ] || [ "$t" = hamirror_alone ]; } && ! bench_have_hamirror; then continue; fi
  if { [ "$t" = hamirror_alt ] || [ "$t" = hamirror_alone_alt ]; } && [ ! -x "${HAMIRROR_FS_ALT:-}" ]; then
    hm_log "$t: set HAMIRROR_FS_ALT; target skipped"
    continue
  fi
  if [ "$t" = bindfs ] && ! command -v bindfs >/dev/null; then hm_log "bindfs not installed; target skipped"; continue; fi
  active+=("$t")
done
hm_log "sysbench $SB_TEST: targets=${active[*]} rounds=$ROUNDS duration=${DURATION}s threads=$SB_THREADS tables=$SB_TABLES x $SB_TABLE_SIZE rows, work dir $W"

[ "$KEEP_CPUS_AWAKE" = 1 ] && hm_cpus_awake_start
bench_rounds run_one "${active[@]}"

local_median=$(median ${TPS[local]:-})
echo
echo "## sysbench $SB_TEST, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), MariaDB $(mariadbd --version | awk '{print $3}')"
echo "threads=$SB_THREADS tables=$SB_TABLES table_size=$SB_TABLE_SIZE duration=${DURATION}s rounds=$ROUNDS settle=${SETTLE}s keep_cpus_awake=$KEEP_CPUS_AWAKE"
echo
echo "| target | tps per round | median tps | ratio to local |"
echo "|---|---|---|---|"
for t in "${active[@]}"; do
  m=$(median ${TPS[$t]:-})
  echo "| $t | $(echo ${TPS[$t]:-none} | sed 's/ / \/ /g') | $m | $(ratio "$m" "$local_median") |"
done
# A/B of two builds: each hamirror target against its _alt twin.
ab=
for t in hamirror hamirror_alone; do
  if [ -n "${TPS[$t]:-}" ] && [ -n "${TPS[${t}_alt]:-}" ]; then
    ab="$ab $t / ${t}_alt $(ratio "$(median ${TPS[$t]})" "$(median ${TPS[${t}_alt]})");"
  fi
done
[ -n "$ab" ] && echo && echo "median tps ratios (HAMIRROR_FS / HAMIRROR_FS_ALT):${ab%;}"
[ "$HM_HWM" -gt 0 ] && echo && echo "hamirror-fs primary peak RSS (VmHWM) under sysbench: $(( HM_HWM / 1024 )) MiB"
exit 0
