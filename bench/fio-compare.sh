#!/usr/bin/env bash
# fio on a plain local directory vs a hamirror-fs primary mount (synchronous replication to a secondary
# on 127.0.0.1), interleaved rounds, same run:
#   seq    sequential 1 MiB writes of SEQ_SIZE, one job, final fsync (end_fsync): throughput MiB/s
#   4 KiB random writes, one job, psync, queue depth 1, each made durable (SYNC_MODES, default all):
#     dsync  O_DSYNC (sync=dsync)   sync  O_SYNC (sync=sync)   fsync  plain writes, fsync after each (fsync=1)
#   IOPS, p50 and p99 latency of a durable write (fsync: the write's and the fsync's own percentiles
#   added, since fio times them apart; IOPS counts write+fsync pairs)
# Reports medians per target, ratios to local, the latency hamirror adds (µs), and hamirror-fs peak RSS
# (VmHWM) of the primary and the secondary under this load.
# Target local_x2 runs both tests as two jobs at once in a plain directory (two files; per-job numbers):
# what each copy of a mirror whose two copies share this machine's one disk and two vCPUs can get at
# most, the ceiling for hamirror on this machine (a real pair has a disk and CPUs per copy).
#
# Knobs (env): ROUNDS=3 SETTLE=10 (s idle after `sync` before each run) SEQ_SIZE=1G RAND_SIZE=64M
#   RAND_SECONDS=20 SYNC_MODES="dsync sync fsync" TARGETS="local hamirror" (bindfs and local_x2 also accepted) BENCH_DIR=/var/tmp/hamirror-bench
#   DIRECT=1: both tests with O_DIRECT (as InnoDB writes its data files), default 0 (page cache)
#   HAMIRROR_FS=build/bin/hamirror-fs
#   HAMIRROR_FS_ALT=path/to/another/hamirror-fs with target hamirror_alt: A/B of two builds in one run
#   KEEP_CPUS_AWAKE=0 (1: PM QoS 0 µs on /dev/cpu_dma_latency during the runs, so idle vCPUs poll instead
#   of halting; see mariadb-lib.sh and docs/benchmarks.md: without it this VM can add ~4 ms of wake-up
#   latency to every lone sync write)
# Default runtime: 2 targets x 3 rounds x ~110 s ≈ 11 min. Run as root. Not part of ctest.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$REPO/bench/lib.sh"

ROUNDS=${ROUNDS:-3}
SETTLE=${SETTLE:-10}
SEQ_SIZE=${SEQ_SIZE:-1G}
SYNC_MODES=${SYNC_MODES:-dsync sync fsync}
for m in $SYNC_MODES; do case $m in dsync | sync | fsync) ;; *) hm_die "SYNC_MODES: $m is not dsync, sync or fsync" ;; esac; done
RAND_SIZE=${RAND_SIZE:-64M}
RAND_SECONDS=${RAND_SECONDS:-20}
TARGETS=${TARGETS:-local hamirror}
DIRECT=${DIRECT:-0}
[ "$(id -u)" -eq 0 ] || hm_die "run as root (FUSE mounts)"
command -v fio >/dev/null || hm_die "fio not installed (scripts/install-deps.sh)"

bench_init fio

# setup_target NAME: sets TDIR, the directory fio writes into.
setup_target() {
  local name=$1
  JOBS=1
  case $name in
    local) TDIR=$W/local; mkdir -p "$TDIR" ;;
    local_x2) TDIR=$W/local; mkdir -p "$TDIR"; JOBS=2 ;;
    hamirror) hm_pair_start "$W/hm" || return 1; TDIR=$W/hm/primary ;;
    hamirror_alt) HAMIRROR_FS=$HAMIRROR_FS_ALT hm_pair_start "$W/hm" || return 1; TDIR=$W/hm/primary ;;
    bindfs)
      mkdir -p "$W/bindfs/src" "$W/bindfs/mnt"
      fuse_start "$W/bindfs/mnt" "$W/bindfs.log" bindfs -f "$W/bindfs/src" "$W/bindfs/mnt" || return 1
      TDIR=$FUSE_MNT ;;
    *) hm_die "unknown target $name" ;;
  esac
}

teardown_target() {
  case $1 in
    local | local_x2) rm -rf "$W/local" ;;
    hamirror | hamirror_alt) hm_pair_stop || hm_log "$1: a daemon did not stop cleanly"; rm -rf "$W/hm" ;;
    bindfs) fuse_stop; rm -rf "$W/bindfs" ;;
  esac
}

# fio_json JOBNAME OUT.json ARGS...: runs fio in TDIR.
fio_json() {
  local name=$1 out=$2
  shift 2
  fio --name="$name" --directory="$TDIR" --ioengine=psync --numjobs="$JOBS" --output-format=json "$@" >"$out" 2>"$out.err" ||
    { hm_log "fio $name failed:"; tail -5 "$out.err" >&2; return 1; }
}

declare -A SEQ IOPS P50 P99
HWM_P=0
HWM_S=0
note_rss() {
  [ -n "${HM_PRIMARY_PID:-}" ] || return 0
  local p s
  p=$(hm_vmhwm "$HM_PRIMARY_PID")
  s=$(hm_vmhwm "$HM_SECONDARY_PID")
  if [ -n "$p" ] && [ "$p" -gt "$HWM_P" ]; then HWM_P=$p; fi
  if [ -n "$s" ] && [ "$s" -gt "$HWM_S" ]; then HWM_S=$s; fi
}

# rand_write TARGET ROUND MODE: 4 KiB random overwrites of the prefilled file, each made durable the
# MODE's way; records IOPS and p50/p99 latency of one durable write under MODE:TARGET.
rand_write() {
  local name=$1 round=$2 mode=$3 how
  case $mode in
    dsync) how=(--sync=dsync) ;;
    sync) how=(--sync=sync) ;;
    fsync) how=(--fsync=1) ;;
  esac
  local out=$W/$mode-$name-$round.json
  fio_json "$mode" "$out" --filename_format='dsync.$jobnum' --rw=randwrite --bs=4k --size="$RAND_SIZE" \
    "${how[@]}" --time_based --runtime="$RAND_SECONDS" --direct="$DIRECT" || return 0
  local line iops p50 p99
  # Per job (the mean of the jobs when there are several). With fsync=1 fio times the write and the
  # fsync apart: a durable write's percentile is taken as the sum of the two (exact for the median of
  # a steady pair, an estimate at p99).
  line=$(python3 -c 'import json,sys
js=json.load(open(sys.argv[1]))["jobs"]; n=len(js)
def pct(k):
    t=0
    for j in js:
        t+=j["write"]["clat_ns"]["percentile"][k]
        if j["sync"]["total_ios"]: t+=j["sync"]["lat_ns"]["percentile"][k]
    return t/n/1000
print("%.0f %.0f %.0f" % (sum(j["write"]["iops"] for j in js) / n, pct("50.000000"), pct("99.000000")))' "$out")
  read -r iops p50 p99 <<<"$line"
  IOPS[$mode:$name]="${IOPS[$mode:$name]:-} $iops"
  P50[$mode:$name]="${P50[$mode:$name]:-} $p50"
  P99[$mode:$name]="${P99[$mode:$name]:-} $p99"
  hm_log "round $round $name: 4 KiB $mode $iops IOPS, p50 ${p50} µs, p99 ${p99} µs"
}

run_one() {
  local name=$1 round=$2
  setup_target "$name" || { hm_log "$name: setup failed"; teardown_target "$name"; return 1; }
  sync
  sleep "$SETTLE"  # let the disk settle (anchors.md), the same for every target
  if fio_json seq "$W/seq-$name-$round.json" --rw=write --bs=1M --size="$SEQ_SIZE" --end_fsync=1 \
    --direct="$DIRECT"; then
    local mibs
    # Per job (the mean of the jobs when there are several).
    mibs=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"]; print("%.0f" % (sum(x["write"]["bw_bytes"] for x in j) / len(j) / 1048576))' "$W/seq-$name-$round.json")
    SEQ[$name]="${SEQ[$name]:-} $mibs"
    hm_log "round $round $name: seq 1 MiB writes $mibs MiB/s"
  fi
  note_rss
  rm -f "$TDIR"/seq.*
  # Write the random-write file in full first: fio would otherwise fallocate it, and every O_DSYNC write
  # into an unwritten extent then waits for a journal commit (ms, not µs) on ext4: that measures extent
  # conversion, not the steady overwrite a database does.
  fio_json prefill "$W/prefill-$name-$round.json" --filename_format='dsync.$jobnum' --rw=write --bs=1M --size="$RAND_SIZE" \
    --end_fsync=1 || true
  local mode
  for mode in $SYNC_MODES; do
    sync
    sleep "$SETTLE"
    rand_write "$name" "$round" "$mode"
  done
  note_rss
  teardown_target "$name"
}

active=()
for t in $TARGETS; do
  if [ "$t" = hamirror ] && ! bench_have_hamirror; then continue; fi
  if [ "$t" = hamirror_alt ] && [ ! -x "${HAMIRROR_FS_ALT:-}" ]; then hm_log "hamirror_alt: set HAMIRROR_FS_ALT; target skipped"; continue; fi
  active+=("$t")
done
hm_log "fio: targets=${active[*]} rounds=$ROUNDS seq=$SEQ_SIZE random=${RAND_SIZE}/${RAND_SECONDS}s modes=\"$SYNC_MODES\" direct=$DIRECT, work dir $W"
[ "$KEEP_CPUS_AWAKE" = 1 ] && hm_cpus_awake_start
bench_rounds run_one "${active[@]}"

diff_us() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == "n/a") print "n/a"; else printf "%+.0f", a - b}'; }
lseq=$(median ${SEQ[local]:-})
echo
echo "## fio, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), rounds=$ROUNDS settle=${SETTLE}s keep_cpus_awake=$KEEP_CPUS_AWAKE direct=$DIRECT (medians; per-round values in brackets)"
echo
echo "Sequential 1 MiB writes of $SEQ_SIZE, final fsync:"
echo
echo "| target | MiB/s | ratio |"
echo "|---|---|---|"
for t in "${active[@]}"; do
  s=$(median ${SEQ[$t]:-})
  echo "| $t | $s [${SEQ[$t]:-} ] | $(ratio "$s" "$lseq") |"
done
declare -A MODE_TITLE=([dsync]="O_DSYNC" [sync]="O_SYNC" [fsync]="write + fsync (fsync=1)")
for m in $SYNC_MODES; do
  liops=$(median ${IOPS[$m:local]:-}); lp50=$(median ${P50[$m:local]:-}); lp99=$(median ${P99[$m:local]:-})
  echo
  echo "4 KiB random writes, queue depth 1, ${MODE_TITLE[$m]}:"
  echo
  echo "| target | IOPS | ratio | p50 µs | p99 µs | added p50 / p99 µs |"
  echo "|---|---|---|---|---|---|"
  for t in "${active[@]}"; do
    i=$(median ${IOPS[$m:$t]:-}); a=$(median ${P50[$m:$t]:-}); b=$(median ${P99[$m:$t]:-})
    echo "| $t | $i [${IOPS[$m:$t]:-} ] | $(ratio "$i" "$liops") | $a | $b | $(diff_us "$a" "$lp50") / $(diff_us "$b" "$lp99") |"
  done
done
if [[ " ${active[*]} " == *" local_x2 "* ]]; then
  echo
  echo "local_x2: per job, two jobs at once on the local disk: the most each copy of a mirror whose two copies share this machine can get."
fi
if [ "$HWM_P" -gt 0 ]; then
  echo
  echo "hamirror-fs peak RSS (VmHWM): primary $(( HWM_P / 1024 )) MiB, secondary $(( HWM_S / 1024 )) MiB"
fi
exit 0
