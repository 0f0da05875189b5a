#!/usr/bin/env bash
# How fast hamirror-fs brings a peer's copy up to date (docs/reintegration.md), against the plain tools
# that do the same job on the same disk, in interleaved rounds of one run. Data set: FILES random files
# of FILE_MB MiB each in SUBDIRS subdirectories (default 8 x 128 MiB = 1 GiB), made once per run. Every
# measured run starts after `sync` and dropping the page cache (DROP_CACHES=1), so every target reads
# the data set cold alike.
#   full_resync    a primary on the data set (fresh state dir: no record) connects to a secondary on an
#                  EMPTY directory: full resync. Timed from the primary's start to resync phase done
#                  (wall), and by the resync's own elapsed_s; also wall until a `sync` after done returns
#                  (the secondary's writes durable, as after plain_copy).
#   plain_copy     `cp -a` of the data set into an empty directory of the same disk, then `sync` (the
#                  target's reference: coreutils copies in the kernel with copy_file_range, no network).
#   net_copy       the same bytes through a loopback TCP socket by plain tools, then `sync`:
#                  `tar -c | socat - TCP:127.0.0.1:P` into `socat TCP-LISTEN | tar -x` (an extra column:
#                  what a user-space copy over a socket costs here, which the resync also is).
#   incremental    a pair synced on two identical copies (the full compare at connect finds nothing to
#                  send); SIGKILL of the secondary; the primary goes alone (--send-timeout-ms); CHANGE_MB
#                  1 MiB `dd conv=notrunc` writes at random 1 MiB-aligned offsets across the files, the
#                  rename of one file they do not touch within its directory and one new 1 MiB file,
#                  through the primary's mount; the secondary restarted; `hamirror-fs ctl role primary
#                  --peer`: the incremental resync from the record, timed until done.
#   rsync_inplace  the same change applied to a copy, then `rsync -a --inplace --no-whole-file
#                  --delete-after --stats NEW/ OLD/` (local: two processes over a pipe; --no-whole-file
#                  makes local rsync compute deltas as it would over ssh; --delete-after removes the
#                  renamed file's old name, so both trees end identical). Time includes a final `sync`.
#                  Then, on a second old copy, the same with --fuzzy (rsync finds the renamed file's old
#                  name as its basis; without it the renamed file is sent whole).
#   full_compare   the changed tree vs an old copy through hamirror with no record: full checksum compare.
#   full_resync_alt  full_resync with HAMIRROR_FS_ALT on both nodes (two builds A/B in one run).
# The change list (which file, which MiB) is the same for incremental, rsync and full_compare within a
# round (seeded by the round), the written data is fresh random data each time.
# Prints per-round values, medians and ratios (full_resync / plain_copy throughput; hamirror's wire bytes
# vs rsync's bytes sent). With VERIFY=1 (default) every result tree is compared with its source
# afterwards (content, sizes, modes, mtimes), outside the timed part.
#
# Knobs (env): FILES=8 FILE_MB=128 SUBDIRS=3 CHANGE_MB=64 ROUNDS=3 DROP_CACHES=1 VERIFY=1
#   TARGETS="full_resync plain_copy net_copy incremental rsync_inplace full_compare" SEND_TIMEOUT_MS=1000
#   NAMESPACE=1 (0: the change is the data writes only, no rename and no new file; a namespace change
#   made alone has the incremental resync walk the whole tree and compare every file whose mtime
#   differs in full)
#   WAIT_S=900 (bound on every wait for a resync) BENCH_DIR=/var/tmp/hamirror-bench
#   HAMIRROR_FS=build/bin/hamirror-fs KEEP_CPUS_AWAKE=0
# Disk: the data set plus up to three copies of it at once under BENCH_DIR. Default runtime ≈ 40 s per
# round on the development VM (≈ 2 min in all). Run as root. Not part of ctest.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$REPO/bench/lib.sh"

FILES=${FILES:-8}
FILE_MB=${FILE_MB:-128}
SUBDIRS=${SUBDIRS:-3}
CHANGE_MB=${CHANGE_MB:-64}
ROUNDS=${ROUNDS:-3}
DROP_CACHES=${DROP_CACHES:-1}
VERIFY=${VERIFY:-1}
TARGETS=${TARGETS:-full_resync plain_copy net_copy incremental rsync_inplace full_compare}
SEND_TIMEOUT_MS=${SEND_TIMEOUT_MS:-1000}
NAMESPACE=${NAMESPACE:-1}
WAIT_S=${WAIT_S:-900}
TOTAL_MB=$(( FILES * FILE_MB ))
[ "$(id -u)" -eq 0 ] || hm_die "run as root (FUSE mounts, drop_caches)"
[ -x "$HAMIRROR_FS" ] || hm_die "no hamirror-fs binary at $HAMIRROR_FS (build it first)"
case " $TARGETS " in *" full_resync_alt "*) [ -x "${HAMIRROR_FS_ALT:-}" ] || hm_die "target full_resync_alt needs HAMIRROR_FS_ALT=<another hamirror-fs>";; esac
command -v python3 >/dev/null || hm_die "python3 not installed (scripts/install-deps.sh)"
[ "$CHANGE_MB" -le "$TOTAL_MB" ] || hm_die "CHANGE_MB ($CHANGE_MB) > data set ($TOTAL_MB MiB)"
[ "$SUBDIRS" -ge 1 ] && [ "$FILES" -ge 1 ] || hm_die "FILES and SUBDIRS must be >= 1"

bench_init resync

# --- helpers ---------------------------------------------------------------------------------------
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }
mibps() { awk -v mb="$1" -v s="$2" 'BEGIN {if (s <= 0) print "n/a"; else printf "%.0f", mb / s}'; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }

# cold: everything written so far on disk, then the page cache, dentries and inodes dropped.
cold() {
  sync
  if [ "$DROP_CACHES" = 1 ]; then echo 3 >/proc/sys/vm/drop_caches; fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# jget FILE PATH...: fields of a FsStatus JSON file (dotted paths, e.g. resync.phase), space-separated.
jget() {
  python3 - "$@" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
out = []
for path in sys.argv[2:]:
    v = d
    for k in path.split("."):
        v = v.get(k, "") if isinstance(v, dict) else ""
    out.append(str(v) if v != "" else "0")
print(" ".join(out))
EOF
}

# status CTL OUT: the fs's status as JSON into OUT.
status() { "$HAMIRROR_FS" ctl --control "$1" status >"$2" 2>/dev/null; }

# sec_start DIR BASE: a secondary on DIR listening on 127.0.0.1:$PORT, control BASE/secondary.ctl, log
# appended to BASE/secondary.log. Sets HM_SECONDARY_PID/HM_SECONDARY_DIR (hm_pair_stop stops it).
sec_start() {
  local dir=$1 base=$2 i
  HM_SECONDARY_DIR=$dir
  "$HAMIRROR_FS" secondary --dir "$dir" --listen "127.0.0.1:$PORT" --control "$base/secondary.ctl" \
    --insecure >>"$base/secondary.log" 2>&1 &
  HM_SECONDARY_PID=$!
  hm_await_mount "$dir" 30 fuse || { hm_log "secondary did not mount"; tail -20 "$base/secondary.log" >&2; return 1; }
  for (( i = 0; i < 300; i++ )); do
    ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  hm_log "secondary never listened on 127.0.0.1:$PORT"
  return 1
}

# pri_start DIR BASE [ARGS...]: a primary on DIR towards 127.0.0.1:$PORT, control and state dir BASE/st
# (created here: a fresh one means no record, i.e. a full compare at connect). Sets HM_PRIMARY_PID/DIR.
pri_start() {
  local dir=$1 base=$2
  shift 2
  mkdir -p "$base/st"
  HM_PRIMARY_DIR=$dir
  "$HAMIRROR_FS" primary --dir "$dir" --peer "127.0.0.1:$PORT" --control "$base/st/primary.ctl" \
    --insecure "$@" >>"$base/primary.log" 2>&1 &
  HM_PRIMARY_PID=$!
}

# wait_resync BASE OLD_ID OUT: waits (≤ WAIT_S) until the primary's resync has an id other than OLD_ID
# and has ended; its status JSON in OUT. `ctl wait` polls every 0.1 s inside one process: a shell loop
# starting a status process and a JSON parser ten times a second took a quarter of this 2-vCPU
# machine from the resync it timed (perf, 2026-12-05).
wait_resync() {
  local base=$1 old=$2 out=$3 rc=0
  "$HAMIRROR_FS" ctl --control "$base/st/primary.ctl" wait --after-id "$old" --timeout "$WAIT_S" \
    >"$out.tmp" 2>"$out.err" || rc=$?
  mv "$out.tmp" "$out"
  case $rc in
    0) return 0 ;;
    1) hm_log "resync $(jget "$out" resync.id) failed: $(jget "$out" resync.error)" ;;
    *) hm_log "no resync end: $(cat "$out.err")"
       kill -0 "$HM_PRIMARY_PID" 2>/dev/null || { hm_log "primary exited"; tail -20 "$base/primary.log" >&2; } ;;
  esac
  return 1
}

# wait_role BASE ROLE SECONDS
wait_role() {
  local base=$1 role=$2 limit=$(( $3 * 10 )) i
  for (( i = 0; i < limit; i++ )); do
    if status "$base/st/primary.ctl" "$base/role.json" && [ "$(jget "$base/role.json" role)" = "$role" ]; then return 0; fi
    sleep 0.1
  done
  return 1
}

# make_dataset DIR: FILES random files of FILE_MB MiB, file i in DIR/d<i % SUBDIRS>/f<i>.dat.
make_dataset() {
  local dir=$1 i
  for (( i = 0; i < SUBDIRS; i++ )); do mkdir -p "$dir/d$i"; done
  for (( i = 0; i < FILES; i++ )); do
    head -c "$(( FILE_MB << 20 ))" /dev/urandom >"$dir/d$(( i % SUBDIRS ))/f$i.dat"
  done
}

# The file round R renames (NAMESPACE=1), and R's change: CHANGE_MB distinct (file, MiB) pairs, seeded
# by R, never in the renamed file (so that it keeps its size and mtime: a pure rename); the same list
# for every target.
renamed_file() { echo $(( ($1 - 1) % FILES )); }
make_changes() {
  local skip=-1
  [ "$NAMESPACE" = 1 ] && [ "$FILES" -gt 1 ] && skip=$(renamed_file "$1")
  python3 - "$1" "$FILES" "$FILE_MB" "$SUBDIRS" "$CHANGE_MB" "$skip" <<'EOF'
import random, sys
r, files, file_mb, subdirs, change_mb, skip = map(int, sys.argv[1:])
slots = [s for s in range(files * file_mb) if s // file_mb != skip]
if change_mb > len(slots):
    sys.exit(f"CHANGE_MB {change_mb} > {len(slots)} MiB outside the renamed file")
for slot in sorted(random.Random(r).sample(slots, change_mb)):
    f, mb = divmod(slot, file_mb)
    print(f"d{f % subdirs}/f{f}.dat {mb}")
EOF
}

# apply_changes ROOT ROUND: the round's 1 MiB writes (fresh random data, conv=notrunc), then
# (NAMESPACE=1) the rename of one untouched data file within its directory, f<i>.dat -> f<i>.moved.dat
# (the suffix kept: rsync --fuzzy only matches similar names with the same suffix), and one new 1 MiB
# file. ROOT may be a mount.
apply_changes() {
  local root=$1 round=$2 path mb f
  while read -r path mb; do
    dd if=/dev/urandom of="$root/$path" bs=1M count=1 seek="$mb" conv=notrunc status=none || return 1
  done <"$W/changes-r$round"
  [ "$NAMESPACE" = 1 ] || return 0
  f=$(renamed_file "$round")
  mv "$root/d$(( f % SUBDIRS ))/f$f.dat" "$root/d$(( f % SUBDIRS ))/f$f.moved.dat" || return 1
  head -c 1M /dev/urandom >"$root/d0/new-r$round.dat" || return 1
}

# same_tree A B LABEL [DIR_MTIMES]: with VERIFY=1, content and metadata (type, size, mode, mtime) of both
# trees equal; DIR_MTIMES=0 leaves directories' mtimes out (rsync's late deletes change them after it
# set them).
same_tree() {
  [ "$VERIFY" = 1 ] || return 0
  local a=$1 b=$2 label=$3 fmt='%P %y %s %m %T@\n'
  if ! diff -rq "$a" "$b" >"$W/diff.out" 2>&1; then
    hm_log "VERIFY $label: contents differ:"; head -20 "$W/diff.out" >&2; VERIFY_FAILED="$VERIFY_FAILED $label"; return 1
  fi
  local filter=cat
  [ "${4:-1}" = 0 ] && filter=dir_mtime_out
  if ! diff <(cd "$a" && find . -printf "$fmt" | $filter | sort) \
            <(cd "$b" && find . -printf "$fmt" | $filter | sort) >"$W/diff.out" 2>&1; then
    hm_log "VERIFY $label: metadata differ:"; head -20 "$W/diff.out" >&2; VERIFY_FAILED="$VERIFY_FAILED $label"; return 1
  fi
}
dir_mtime_out() { awk '$2 == "d" {$5 = "-"} {print}'; }
VERIFY_FAILED=

declare -A V  # V[target.metric] = "value value ..." (one per round)
add() { V[$1]="${V[$1]:-} $2"; }

# shellcheck disable=SC2034 # HM_*_DIR are read by hm_pair_stop (mariadb-lib.sh)
pair_down() { hm_pair_stop || hm_log "a hamirror-fs did not stop cleanly"; HM_PRIMARY_DIR='' HM_SECONDARY_DIR=''; }

# --- the measurements ------------------------------------------------------------------------------
# resync_fields NAME STATUS.json WALL: stores the resync's numbers of a run.
resync_fields() {
  local name=$1 js=$2 wall=$3 el compared sent wire files pass errs
  read -r el compared sent wire files pass errs <<<"$(jget "$js" resync.elapsed_s resync.bytes_done resync.bytes_sent \
    resync.wire_bytes resync.files_done resync.pass peer_errors)"
  el=$(awk -v e="$el" 'BEGIN {printf "%.2f", e}')
  add "$name.elapsed" "$el"; add "$name.wall" "$wall"; add "$name.done_mib" "$(mib "$compared")"
  add "$name.sent_mib" "$(mib "$sent")"; add "$name.wire_mib" "$(mib "$wire")"; add "$name.pass" "$pass"
  add "$name.peer_errors" "$errs"
  hm_log "  $name: elapsed_s $el, wall ${wall}s, compared $(mib "$compared") MiB, sent $(mib "$sent") MiB, wire $(mib "$wire") MiB, $files files, pass $pass, peer errors $errs"
}

run_full_resync() {
  local round=$1 name=${2:-full_resync} T=$W/t t0 t1 t2
  mkdir -p "$T/sec"
  PORT=$(free_port)
  sec_start "$T/sec" "$T" || return 1
  cold
  t0=$(now)
  pri_start "$W/master" "$T"
  wait_resync "$T" 0 "$T/done.json" || return 1
  t1=$(now)
  sync
  t2=$(now)
  resync_fields "$name" "$T/done.json" "$(secs "$t0" "$t1")"
  add "$name.wall_sync" "$(secs "$t0" "$t2")"
  add "$name.mibps" "$(mibps "$TOTAL_MB" "$(jget "$T/done.json" resync.elapsed_s)")"
  add "$name.mibps_sync" "$(mibps "$TOTAL_MB" "$(secs "$t0" "$t2")")"
  pair_down
  same_tree "$W/master" "$T/sec" "$name r$round"
}

# The same with HAMIRROR_FS_ALT (both nodes): two builds A/B in one run.
run_full_resync_alt() {
  HAMIRROR_FS=$HAMIRROR_FS_ALT run_full_resync "$1" full_resync_alt
}

run_plain_copy() {
  local round=$1 T=$W/t t0
  mkdir -p "$T/copy"
  cold
  t0=$(now)
  cp -a "$W/master/." "$T/copy/" || return 1
  copy_done plain_copy "$round" "$t0"
}

# copy_done NAME ROUND T0: after a copy into $W/t/copy: sync, its time and rate, the tree compared.
copy_done() {
  local name=$1 round=$2 t0=$3 t1
  sync
  t1=$(now)
  add "$name.wall_sync" "$(secs "$t0" "$t1")"
  add "$name.mibps_sync" "$(mibps "$TOTAL_MB" "$(secs "$t0" "$t1")")"
  hm_log "  $name: $(secs "$t0" "$t1") s with sync"
  same_tree "$W/master" "$W/t/copy" "$name r$round"
}

run_net_copy() {
  local round=$1 T=$W/t t0 rpid i
  mkdir -p "$T/copy"
  PORT=$(free_port)
  socat -u -T 60 "TCP-LISTEN:$PORT,bind=127.0.0.1,reuseaddr" - 2>"$T/socat.err" | tar -C "$T/copy" -xf - &
  rpid=$!
  for (( i = 0; i < 100; i++ )); do  # ≤ 10 s for the listener
    ss -Htln "sport = :$PORT" | grep -q . && break
    sleep 0.1
  done
  cold
  t0=$(now)
  tar --format=posix -C "$W/master" -cf - . | socat -u -T 60 - "TCP:127.0.0.1:$PORT" || { kill "$rpid" 2>/dev/null; return 1; }
  wait "$rpid" || return 1
  copy_done net_copy "$round" "$t0"
}

run_incremental() {
  local round=$1 T=$W/t t0 t1 old
  mkdir -p "$T"
  cp -a "$W/master" "$T/pri" && cp -a "$W/master" "$T/sec" || return 1
  # The copies on disk first: the resync's end mark waits for the secondary's syncfs, which would
  # otherwise flush 2 GiB here and outlast the short send timeout (the primary would go alone).
  sync
  PORT=$(free_port)
  sec_start "$T/sec" "$T" || return 1
  pri_start "$T/pri" "$T" --send-timeout-ms "$SEND_TIMEOUT_MS"
  wait_resync "$T" 0 "$T/setup.json" || return 1  # the full compare of two identical copies
  hm_log "  incremental setup: full compare of identical copies sent $(mib "$(jget "$T/setup.json" resync.bytes_sent)") MiB in $(jget "$T/setup.json" resync.elapsed_s) s"
  old=$(jget "$T/setup.json" resync.id)
  { kill -KILL "$HM_SECONDARY_PID"; hm_wait_pid_exit "$HM_SECONDARY_PID" 10; } 2>/dev/null || true
  HM_SECONDARY_PID=
  hm_unmount "$T/sec"
  wait_role "$T" FS_ROLE_ALONE 30 || { hm_log "primary did not go alone within 30 s"; return 1; }
  apply_changes "$T/pri" "$round" || { hm_log "changes through the primary's mount failed"; return 1; }
  status "$T/st/primary.ctl" "$T/alone.json"
  hm_log "  incremental: record while alone: $(jget "$T/alone.json" record.files record.zones record.tree) (files zones tree)"
  sec_start "$T/sec" "$T" || return 1
  cold
  t0=$(now)
  "$HAMIRROR_FS" ctl --control "$T/st/primary.ctl" role primary --peer "127.0.0.1:$PORT" >"$T/role.out" 2>&1 ||
    { hm_log "ctl role primary failed: $(cat "$T/role.out")"; return 1; }
  wait_resync "$T" "$old" "$T/done.json" || return 1
  t1=$(now)
  resync_fields incremental "$T/done.json" "$(secs "$t0" "$t1")"
  pair_down
  same_tree "$T/pri" "$T/sec" "incremental r$round"
}

# rsync_stat LOG FIELD: a number from rsync --stats ("Total bytes sent", "Literal data"), in MiB.
rsync_stat() { sed -n "s/^$2: \([0-9,]*\).*/\1/p" "$1" | tr -d , | { read -r n; mib "${n:-0}"; }; }

run_rsync_inplace() {
  local round=$1 T=$W/t t0 t1 v opts
  mkdir -p "$T"
  cp -a "$W/master" "$T/new" && cp -a "$W/master" "$T/old" && cp -a "$W/master" "$T/old2" || return 1
  apply_changes "$T/new" "$round" || return 1
  for v in plain fuzzy; do
    opts=(-a --inplace --no-whole-file --delete-after --stats)
    [ "$v" = fuzzy ] && opts=(-a --inplace --no-whole-file --fuzzy --delete-after --stats)
    local dst=$T/old
    [ "$v" = fuzzy ] && dst=$T/old2
    cold
    t0=$(now)
    rsync "${opts[@]}" "$T/new/" "$dst/" >"$T/rsync-$v.log" 2>&1 || { hm_log "rsync failed:"; tail "$T/rsync-$v.log" >&2; return 1; }
    sync
    t1=$(now)
    local n=rsync_inplace
    [ "$v" = fuzzy ] && n=rsync_fuzzy
    add "$n.wall_sync" "$(secs "$t0" "$t1")"
    add "$n.sent_mib" "$(rsync_stat "$T/rsync-$v.log" 'Total bytes sent')"
    add "$n.literal_mib" "$(rsync_stat "$T/rsync-$v.log" 'Literal data')"
    add "$n.matched_mib" "$(rsync_stat "$T/rsync-$v.log" 'Matched data')"
    hm_log "  $n: $(secs "$t0" "$t1") s, sent $(rsync_stat "$T/rsync-$v.log" 'Total bytes sent') MiB, literal $(rsync_stat "$T/rsync-$v.log" 'Literal data') MiB"
    same_tree "$T/new" "$dst" "$n r$round" 0
  done
}

run_full_compare() {
  local round=$1 T=$W/t t0 t1
  mkdir -p "$T"
  cp -a "$W/master" "$T/pri" && cp -a "$W/master" "$T/sec" || return 1
  apply_changes "$T/pri" "$round" || return 1
  PORT=$(free_port)
  sec_start "$T/sec" "$T" || return 1
  cold
  t0=$(now)
  pri_start "$T/pri" "$T"
  wait_resync "$T" 0 "$T/done.json" || return 1
  t1=$(now)
  resync_fields full_compare "$T/done.json" "$(secs "$t0" "$t1")"
  pair_down
  same_tree "$T/pri" "$T/sec" "full_compare r$round"
}

run_one() {
  local name=$1 round=$2 rc=0
  hm_log "round $round: $name"
  "run_$name" "$round" || rc=$?
  if [ "$rc" != 0 ]; then
    local keep
    keep=$BENCH_DIR/resync-failed-$(date -u +%Y%m%dT%H%M%S)-$name-r$round
    mkdir -p "$keep"
    cp "$W"/t/*.log "$W"/t/*.json "$W"/t/*.out "$keep/" 2>/dev/null || true
    hm_log "round $round $name: FAILED (its logs kept in $keep)"
    FAILED="$FAILED $name/r$round"
  fi
  pair_down >/dev/null 2>&1
  rm -rf "$W/t"
  return "$rc"
}
FAILED=

active=()
for t in $TARGETS; do
  declare -F "run_$t" >/dev/null || hm_die "unknown target $t"
  if [ "$t" = rsync_inplace ] && ! command -v rsync >/dev/null; then hm_log "rsync not installed (scripts/install-deps.sh); target skipped"; continue; fi
  active+=("$t")
done
hm_log "resync compare: targets=${active[*]} rounds=$ROUNDS data set $FILES x $FILE_MB MiB in $SUBDIRS dirs, change $CHANGE_MB MiB, drop_caches=$DROP_CACHES, work dir $W"
hm_log "making the data set ($TOTAL_MB MiB of random data)"
make_dataset "$W/master"
for (( r = 1; r <= ROUNDS; r++ )); do make_changes "$r" >"$W/changes-r$r"; done
sync

[ "$KEEP_CPUS_AWAKE" = 1 ] && hm_cpus_awake_start
START=$(date -u +%Y-%m-%dT%H:%MZ)
bench_rounds run_one "${active[@]}"

# --- report ------------------------------------------------------------------------------------------
row() {  # row LABEL KEY
  local vals=${V[$2]:-}
  [ -n "$vals" ] || return 0
  # shellcheck disable=SC2086
  echo "| $1 | $(echo $vals | sed 's/ / \/ /g') | $(median $vals) |"
}
med() { local vals=${V[$1]:-}; [ -n "$vals" ] || { echo n/a; return; }; median $vals; }

echo
echo "## resync vs copy vs rsync, $START, $(uname -r), $(rsync --version 2>/dev/null | head -1 | awk '{print "rsync " $3}')"
echo "data set $FILES x $FILE_MB MiB random files ($TOTAL_MB MiB) in $SUBDIRS dirs; change: $CHANGE_MB x 1 MiB writes at random MiB offsets$([ "$NAMESPACE" = 1 ] && echo " + 1 rename + 1 new 1 MiB file"); rounds=$ROUNDS drop_caches=$DROP_CACHES keep_cpus_awake=$KEEP_CPUS_AWAKE verify=$VERIFY"
echo
echo "| measurement | per round | median |"
echo "|---|---|---|"
row "full_resync: resync elapsed_s" full_resync.elapsed
row "full_resync: wall s, primary start → done" full_resync.wall
row "full_resync: wall s, + sync" full_resync.wall_sync
row "full_resync: MiB/s (elapsed_s)" full_resync.mibps
row "full_resync: MiB/s (wall + sync)" full_resync.mibps_sync
row "full_resync: sent MiB" full_resync.sent_mib
row "full_resync: wire MiB" full_resync.wire_mib
row "full_resync_alt (HAMIRROR_FS_ALT): resync elapsed_s" full_resync_alt.elapsed
row "full_resync_alt: MiB/s (elapsed_s)" full_resync_alt.mibps
row "full_resync_alt: MiB/s (wall + sync)" full_resync_alt.mibps_sync
row "plain_copy: cp -a + sync s" plain_copy.wall_sync
row "plain_copy: MiB/s" plain_copy.mibps_sync
row "net_copy: tar | socat loopback | tar + sync s" net_copy.wall_sync
row "net_copy: MiB/s" net_copy.mibps_sync
row "incremental: resync elapsed_s" incremental.elapsed
row "incremental: wall s, ctl role primary → done" incremental.wall
row "incremental: compared MiB (bytes_done)" incremental.done_mib
row "incremental: sent MiB (bytes_sent)" incremental.sent_mib
row "incremental: wire MiB (wire_bytes)" incremental.wire_mib
row "incremental: passes" incremental.pass
row "incremental: peer error acks" incremental.peer_errors
row "rsync --inplace --no-whole-file --delete-after: s (+ sync)" rsync_inplace.wall_sync
row "rsync --inplace ...: Total bytes sent MiB" rsync_inplace.sent_mib
row "rsync --inplace ...: Literal data MiB" rsync_inplace.literal_mib
row "rsync --inplace --fuzzy --delete-after: s (+ sync)" rsync_fuzzy.wall_sync
row "rsync ... --fuzzy: Total bytes sent MiB" rsync_fuzzy.sent_mib
row "rsync ... --fuzzy: Literal data MiB" rsync_fuzzy.literal_mib
row "full_compare: resync elapsed_s" full_compare.elapsed
row "full_compare: wall s, primary start → done" full_compare.wall
row "full_compare: compared MiB" full_compare.done_mib
row "full_compare: sent MiB" full_compare.sent_mib
row "full_compare: wire MiB" full_compare.wire_mib
echo
echo "Ratios of medians:"
echo "- full_resync / plain_copy throughput: $(ratio "$(med full_resync.mibps)" "$(med plain_copy.mibps_sync)") (resync elapsed_s, no sync) and $(ratio "$(med full_resync.mibps_sync)" "$(med plain_copy.mibps_sync)") (wall from the primary's start, + sync; both against cp -a + sync; target >= 0.8)"
[ -n "${V[full_resync_alt.mibps]:-}" ] && echo "- full_resync_alt / plain_copy throughput: $(ratio "$(med full_resync_alt.mibps)" "$(med plain_copy.mibps_sync)") (elapsed_s) and $(ratio "$(med full_resync_alt.mibps_sync)" "$(med plain_copy.mibps_sync)") (wall + sync)"
echo "- full_resync / net_copy throughput (extra column: a plain copy through a loopback socket): $(ratio "$(med full_resync.mibps)" "$(med net_copy.mibps_sync)") (resync elapsed_s) and $(ratio "$(med full_resync.mibps_sync)" "$(med net_copy.mibps_sync)") (wall + sync)"
echo "- incremental wire bytes / rsync bytes sent: $(ratio "$(med incremental.wire_mib)" "$(med rsync_inplace.sent_mib)") (plain), $(ratio "$(med incremental.wire_mib)" "$(med rsync_fuzzy.sent_mib)") (--fuzzy)"
echo "- incremental time / rsync time: $(ratio "$(med incremental.elapsed)" "$(med rsync_inplace.wall_sync)") (plain), $(ratio "$(med incremental.elapsed)" "$(med rsync_fuzzy.wall_sync)") (--fuzzy)"
echo "- full_compare time / incremental time: $(ratio "$(med full_compare.elapsed)" "$(med incremental.elapsed)")"
echo
echo "rsync ran locally (no ssh, no daemon): local rsync defaults to --whole-file; --no-whole-file makes it"
echo "run its delta algorithm between its sender and receiver processes, so 'Total bytes sent' is what a"
echo "remote rsync would put on the wire. hamirror's wire_bytes: resync payload and query bytes on the stream."
[ -n "$FAILED" ] && echo && echo "FAILED runs:$FAILED (logs kept under $BENCH_DIR/resync-failed-*)"
[ -n "$VERIFY_FAILED" ] && echo && echo "VERIFY found differences:$VERIFY_FAILED"
exit 0
