#!/usr/bin/env bash
# Metadata at scale (issue 12, "files, not only bytes"): FILES empty (or FILE_SIZE-byte) files in
# directories of PER_DIR, created, stat'ed and unlinked by bench-mdtest (one process, no fork per
# file), on every target in interleaved rounds of one run:
#   local           a plain directory
#   hamirror        a hamirror-fs primary mount replicating synchronously to a secondary on 127.0.0.1
#   passthrough_ll  libfuse's passthrough_ll example, built here (FUSE alone, no replication)
#   bindfs          bindfs, default options (FUSE alone, libfuse 2, single-threaded)
#   floor           a perfect synchronous mirror of the namespace on this machine: a plain directory,
#                   each mkdir/create/unlink/rmdir repeated in a second directory of the same disk by a
#                   peer behind a loopback TCP round trip before the next one (bench-mdtest --mirror):
#                   what any mirror that keeps promise 1 for creates pays here at least
#   floor_fuse      the same on a passthrough_ll mount (the FUSE hop added)
#   hamirror_alt    hamirror with HAMIRROR_FS_ALT (two builds A/B in one run; no RSS or tree checks)
# Phases per run: create (mkdir per PER_DIR files + open(O_CREAT|O_EXCL) + close), stat (stat(2) of every
# file by path, nothing dropped: a user re-stat'ing), unlink (every file, then the directories).
# Reports ops/s per phase (medians, per-round values in brackets) and ratios to local. For hamirror,
# after create: RSS of the primary and the secondary hamirror-fs (and the growth since before create
# per created inode), their open descriptors and descriptor limits; the primary's tree compared with
# the secondary's through both mounts, after create and after unlink: VERIFY=1 names, types, modes,
# owners, sizes, link counts, mtimes (CompareTrees without content and xattrs: no open per file);
# VERIFY=full also content and xattrs (≈ 20x slower: 1.5 ms vs 0.08 ms per file on the development VM);
# VERIFY=0 off.
# A phase that fails (e.g. EMFILE) or runs past PHASE_TIMEOUT is reported with its errno and how far
# it got; the later phases of that run then work on the files it made but stay out of the medians.
# Exit status 1 if any phase failed or trees differed (after printing the report), else 0.
#
# SCALE=1: the descriptor-limit check: by default FILES=1000000, TARGETS=hamirror, ROUNDS=1, the
#   daemons at the descriptor limit they inherit (nothing raised here; printed in the report).
# Descriptor limits: hamirror-fs runs with the limit it inherits from this shell (the issue's "default
# descriptor limit"), unless HM_NOFILE=N (soft and hard, through prlimit) is set: e.g. to measure a
# build that keeps one descriptor per inode past its limit. passthrough_ll also keeps one O_PATH
# descriptor per inode, so it runs with PT_NOFILE (default 2*FILES+4096, at most fs.nr_open) to stay
# usable as the FUSE-only reference.
#
# Knobs (env): FILES=100000 PER_DIR=1000 FILE_SIZE=0 ROUNDS=3 SETTLE=5 (s idle after `sync` before
#   each run) TARGETS="local hamirror passthrough_ll" VERIFY=1
#   PHASE_TIMEOUT=60+FILES/200 s (bound on each phase and each compare) HM_NOFILE= PT_NOFILE=
#   BENCH_MDTEST=build/bin/bench-mdtest HAMIRROR_FS=build/bin/hamirror-fs BENCH_DIR=/var/tmp/hamirror-bench
#   KEEP_CPUS_AWAKE=1 (see mariadb-lib.sh)
# Build first: cmake --build build --target hamirror-fs bench-mdtest
# Disk: FILES inodes per target (twice for hamirror). Run as root. Not part of ctest.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$REPO/bench/lib.sh"

SCALE=${SCALE:-0}
if [ "$SCALE" = 1 ]; then
  FILES=${FILES:-1000000} TARGETS=${TARGETS:-hamirror} ROUNDS=${ROUNDS:-1}
else
  FILES=${FILES:-100000} TARGETS=${TARGETS:-local hamirror passthrough_ll} ROUNDS=${ROUNDS:-3}
fi
PER_DIR=${PER_DIR:-1000}
FILE_SIZE=${FILE_SIZE:-0}
SETTLE=${SETTLE:-5}
VERIFY=${VERIFY:-1}
PHASE_TIMEOUT=${PHASE_TIMEOUT:-$(( 60 + FILES / 200 ))}
BENCH_MDTEST=${BENCH_MDTEST:-$REPO/build/bin/bench-mdtest}
HM_NOFILE=${HM_NOFILE:-}
PT_NOFILE=${PT_NOFILE:-$(( 2 * FILES + 4096 ))}
nr_open=$(cat /proc/sys/fs/nr_open)
[ "$PT_NOFILE" -le "$nr_open" ] || PT_NOFILE=$nr_open
[ "$(id -u)" -eq 0 ] || hm_die "run as root (FUSE mounts)"
[ -x "$BENCH_MDTEST" ] || hm_die "no bench-mdtest at $BENCH_MDTEST (cmake --build build --target bench-mdtest)"
[[ $FILES =~ ^[0-9]+$ && $PER_DIR =~ ^[1-9][0-9]*$ && $FILE_SIZE =~ ^[0-9]+$ ]] ||
  hm_die "FILES, PER_DIR (>= 1) and FILE_SIZE must be whole numbers"
[[ $VERIFY == 0 || $VERIFY == 1 || $VERIFY == full ]] || hm_die "VERIFY must be 0, 1 or full"
[[ -z $HM_NOFILE || $HM_NOFILE =~ ^[1-9][0-9]*$ ]] || hm_die "HM_NOFILE must be a number of descriptors"
command -v prlimit >/dev/null || hm_die "prlimit not found (util-linux)"
# Raising a hard limit needs CAP_SYS_RESOURCE (containers may lack it): checked before any target runs.
if [ -n "$HM_NOFILE" ] && ! prlimit --nofile="$HM_NOFILE:$HM_NOFILE" true 2>/dev/null; then
  hm_die "HM_NOFILE=$HM_NOFILE: cannot set that descriptor limit here (hard limit $(ulimit -Hn), no CAP_SYS_RESOURCE?)"
fi
if [[ " $TARGETS " == *" passthrough_ll "* ]] && ! prlimit --nofile="$PT_NOFILE:$PT_NOFILE" true 2>/dev/null; then
  hm_log "passthrough_ll: cannot raise the descriptor limit to $PT_NOFILE here; it runs at $(ulimit -Hn) (fails past that many inodes)"
  PT_NOFILE=$(ulimit -Hn)
fi

bench_init md

# setup_target NAME: mounts/creates the target; sets TDIR (where bench-mdtest works, created here) and
# MIRROR_DIR (the floor targets' second copy, else empty).
setup_target() {
  MIRROR_DIR=
  case $1 in
    local) TDIR=$W/local/md ;;
    floor) TDIR=$W/floor/md MIRROR_DIR=$W/floor/mirror ;;
    hamirror | hamirror_alt)
      local fs=$HAMIRROR_FS
      [ "$1" = hamirror_alt ] && fs=$HAMIRROR_FS_ALT
      if [ -n "$HM_NOFILE" ]; then
        # hm_pair_start runs $HAMIRROR_FS: a wrapper that execs it (same PID) with the limit.
        mkdir -p "$W/tools"
        printf '#!/bin/sh\nexec prlimit --nofile=%s:%s %s "$@"\n' "$HM_NOFILE" "$HM_NOFILE" "$fs" \
          >"$W/tools/hamirror-fs-nofile"
        chmod +x "$W/tools/hamirror-fs-nofile"
        fs=$W/tools/hamirror-fs-nofile
      fi
      HAMIRROR_FS=$fs hm_pair_start "$W/hm" || return 1
      TDIR=$HM_PRIMARY_DIR/md ;;
    passthrough_ll | bindfs | floor_fuse)
      mkdir -p "$W/$1/src" "$W/$1/mnt"
      [ "$1" = floor_fuse ] && MIRROR_DIR=$W/$1/mirror
      if [ "$1" != bindfs ]; then
        fuse_start "$W/$1/mnt" "$W/$1.log" prlimit --nofile="$PT_NOFILE:$PT_NOFILE" "$PT_BIN" -f \
          -o source="$W/$1/src" "$W/$1/mnt" || return 1
      else
        fuse_start "$W/$1/mnt" "$W/$1.log" bindfs -f "$W/$1/src" "$W/$1/mnt" || return 1
      fi
      TDIR=$FUSE_MNT/md ;;
    *) hm_die "unknown target $1" ;;
  esac
  mkdir -p "$TDIR"
  if [ -n "$MIRROR_DIR" ]; then mkdir -p "$MIRROR_DIR"; fi
}

teardown_target() {
  case $1 in
    local | floor) rm -rf "${W:?}/$1" ;;
    hamirror | hamirror_alt) hm_pair_stop || hm_log "$1: a daemon did not stop cleanly"; rm -rf "$W/hm" ;;
    passthrough_ll | bindfs | floor_fuse) fuse_stop; rm -rf "${W:?}/$1" ;;
  esac
}

# kv LINE KEY: the value of KEY=VALUE in bench-mdtest's output line (error= is last and free text).
kv() {
  if [ "$2" = error ]; then sed -n 's/.* error=//p' <<<"$1"; return; fi
  tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -1
}

declare -A OPS SECS STATS FAILED_AS
FAILS=()
# fail ROUND NAME WHAT: records a failure for the report.
fail() { FAILS+=("round $1 $2: $3"); hm_log "round $1 $2: $3"; }

# phase NAME ROUND PHASE COUNT RECORD: bench-mdtest PHASE on COUNT files in TDIR, bounded by
# PHASE_TIMEOUT. Sets DONE to the files it got through ("" if unknown: killed). RECORD=1: its ops/s
# count towards the medians. Returns non-zero if the phase failed.
phase() {
  local name=$1 round=$2 ph=$3 count=$4 record=$5 out rc mirror=()
  if [ -n "$MIRROR_DIR" ] && [ "$ph" != stat ]; then mirror=(--mirror "$MIRROR_DIR"); fi
  out=$(timeout -k 10 "$PHASE_TIMEOUT" "$BENCH_MDTEST" "$ph" "$TDIR" --files "$count" --per-dir "$PER_DIR" \
    --size "$FILE_SIZE" "${mirror[@]}" 2>&1) && rc=0 || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    DONE='' FAILED_AS[$name.$ph]=timeout
    fail "$round" "$name" "$ph of $count files did not finish within ${PHASE_TIMEOUT}s (PHASE_TIMEOUT); killed"
    return 1
  fi
  DONE=$(kv "$out" files)
  if [ "$rc" != 0 ] || [ -z "$DONE" ]; then
    FAILED_AS[$name.$ph]=$(kv "$out" errno_name)
    if [ -n "$(kv "$out" errno_name)" ]; then
      fail "$round" "$name" "$ph failed after $DONE of $count files in $(kv "$out" seconds) s: $(kv "$out" errno_name) ($(kv "$out" error))"
    else
      fail "$round" "$name" "$ph: bench-mdtest exited $rc: $out"
    fi
    return 1
  fi
  local ops secs
  ops=$(kv "$out" ops_per_s) secs=$(kv "$out" seconds)
  hm_log "round $round $name: $ph $count files: $ops ops/s ($secs s)$([ "$record" = 1 ] || echo ', partial run: not in the medians')"
  if [ "$record" = 1 ]; then
    OPS[$name.$ph]="${OPS[$name.$ph]:-} $ops"
    SECS[$name.$ph]="${SECS[$name.$ph]:-} $secs"
  fi
}

# stat_add KEY VALUE: appends VALUE to the per-round list STATS[KEY].
stat_add() { STATS[$1]="${STATS[$1]:-} $2"; }

# compare_trees ROUND WHEN: the primary's tree vs the secondary's through both mounts (bounded).
compare_trees() {
  local round=$1 when=$2 out rc start
  local how=--metadata-only
  case $VERIFY in 0) return 0 ;; full) how='' ;; esac
  start=$(date +%s.%N)
  # shellcheck disable=SC2086 # $how: one option or none
  out=$(timeout -k 10 "$PHASE_TIMEOUT" "$BENCH_MDTEST" compare "$HM_PRIMARY_DIR/md" "$HM_SECONDARY_DIR/md" $how 2>&1) &&
    rc=0 || rc=$?
  local secs
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  if [ "$rc" = 0 ]; then
    stat_add "trees.$when" yes
    hm_log "round $round hamirror: trees identical $when (compare ${secs} s)"
  else
    stat_add "trees.$when" no
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && out="compare did not finish within ${PHASE_TIMEOUT}s"
    fail "$round" hamirror "trees differ $when: $out"
  fi
}

# note_daemons WHEN CREATED_INODES: RSS, its growth since RSS0_* per created inode, descriptors and
# descriptor limit of both hamirror-fs daemons.
RSS0_P='' RSS0_S=''
note_daemons() {
  local when=$1 inodes=$2 role pid rss rss0 fds lim per
  for role in primary secondary; do
    if [ "$role" = primary ]; then pid=$HM_PRIMARY_PID rss0=$RSS0_P; else pid=$HM_SECONDARY_PID rss0=$RSS0_S; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      fail "$ROUND" hamirror "$role hamirror-fs (pid $pid) is gone $when"
      continue
    fi
    rss=$(bench_vmrss "$pid") fds=$(bench_fd_count "$pid") lim=$(bench_fd_limit "$pid")
    per=$(awk -v a="$rss" -v b="$rss0" -v n="$inodes" 'BEGIN {if (n > 0) printf "%.0f", (a - b) * 1024 / n; else print "n/a"}')
    stat_add "$role.rss_mib" "$(( rss / 1024 ))"
    stat_add "$role.bytes_per_inode" "$per"
    stat_add "$role.fds" "$fds"
    stat_add "$role.fd_limit" "$lim"
    hm_log "round $ROUND hamirror: $role $when: RSS $(( rss / 1024 )) MiB (+$(( (rss - rss0) / 1024 )) MiB," \
      "$per bytes per created inode), $fds descriptors open, limit $lim"
  done
}

run_one() {
  local name=$1 round=$2 created record=1
  ROUND=$round
  setup_target "$name" || { fail "$round" "$name" "setup failed"; teardown_target "$name"; return 1; }
  sync
  sleep "$SETTLE"  # the same idle for every target
  if [ "$name" = hamirror ]; then RSS0_P=$(bench_vmrss "$HM_PRIMARY_PID") RSS0_S=$(bench_vmrss "$HM_SECONDARY_PID"); fi
  phase "$name" "$round" create "$FILES" 1 || record=0
  created=$DONE
  if [ "$name" = hamirror ]; then
    note_daemons "after create" "$(( ${created:-0} + (${created:-0} + PER_DIR - 1) / PER_DIR ))"
    compare_trees "$round" "after create"
  fi
  if [ -z "$created" ]; then
    hm_log "round $round $name: stat and unlink skipped (create killed, file count unknown)"
  else
    phase "$name" "$round" stat "$created" "$record" || true
    phase "$name" "$round" unlink "$created" "$record" || true
    [ "$name" = hamirror ] && compare_trees "$round" "after unlink"
  fi
  teardown_target "$name"
}

active=()
for t in $TARGETS; do
  case $t in
    hamirror) bench_have_hamirror || continue ;;
    hamirror_alt) [ -x "${HAMIRROR_FS_ALT:-}" ] || hm_die "target hamirror_alt needs HAMIRROR_FS_ALT=<another hamirror-fs>" ;;
    passthrough_ll | floor_fuse) build_passthrough_ll || continue ;;
    bindfs) command -v bindfs >/dev/null || { hm_log "bindfs not installed; target skipped"; continue; } ;;
    local | floor) ;;
    *) hm_die "unknown target $t (local hamirror hamirror_alt passthrough_ll bindfs floor floor_fuse)" ;;
  esac
  active+=("$t")
done
[ "${#active[@]}" -gt 0 ] || hm_die "no target to run"
hm_log "metadata: targets=${active[*]} rounds=$ROUNDS files=$FILES per_dir=$PER_DIR size=$FILE_SIZE scale=$SCALE" \
  "phase_timeout=${PHASE_TIMEOUT}s hm_nofile=${HM_NOFILE:-inherited} pt_nofile=$PT_NOFILE, this shell's" \
  "descriptor limit $(ulimit -Sn) (hard $(ulimit -Hn)), work dir $W"
[ "$KEEP_CPUS_AWAKE" = 1 ] && hm_cpus_awake_start
bench_rounds run_one "${active[@]}"

# --- report ----------------------------------------------------------------------------------------
# shellcheck disable=SC2086 # the per-round lists are space-separated on purpose
med() { median ${OPS[$1]:-}; }
# rounds_of KEY: the per-round values in brackets, and how the phase failed if it did in some round.
rounds_of() {
  local v=${OPS[$1]:-} f=${FAILED_AS[$1]:-}
  echo "[${v:- none} ]${f:+ FAILED: ${f:-error}}"
}
goal() { awk -v r="$1" -v g="$2" 'BEGIN {if (r == "n/a") print "n/a"; else print (r >= g ? "met" : "NOT met")}'; }
echo
echo "## metadata, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "files=$FILES per_dir=$PER_DIR size=$FILE_SIZE rounds=$ROUNDS settle=${SETTLE}s scale=$SCALE" \
  "hm_nofile=${HM_NOFILE:-inherited} keep_cpus_awake=$KEEP_CPUS_AWAKE (ops/s medians; per-round values in brackets)"
echo
echo "| target | create ops/s | ratio | stat ops/s | ratio | unlink ops/s | ratio |"
echo "|---|---|---|---|---|---|---|"
for t in "${active[@]}"; do
  row="| $t "
  for ph in create stat unlink; do
    row+="| $(med "$t.$ph") $(rounds_of "$t.$ph") | $(ratio "$(med "$t.$ph")" "$(med "local.$ph")") "
  done
  echo "$row|"
done
if [[ " ${active[*]} " == *" local "* && " ${active[*]} " == *" hamirror "* ]]; then
  echo
  echo "issue 12 goals: create >= 0.4x local: $(goal "$(ratio "$(med hamirror.create)" "$(med local.create)")" 0.4)," \
    "stat >= 0.8x local: $(goal "$(ratio "$(med hamirror.stat)" "$(med local.stat)")" 0.8)"
fi
for f in floor floor_fuse; do
  if [[ " ${active[*]} " == *" $f "* && " ${active[*]} " == *" hamirror "* ]]; then
    echo "hamirror against $f (a perfect synchronous mirror$([ $f = floor_fuse ] && echo ' behind FUSE')):" \
      "create $(ratio "$(med hamirror.create)" "$(med $f.create)"), unlink $(ratio "$(med hamirror.unlink)" "$(med $f.unlink)")"
  fi
done
if [ -n "${SECS[hamirror.create]:-}" ]; then
  # shellcheck disable=SC2086
  echo "hamirror create of $FILES files: $(median ${SECS[hamirror.create]}) s (median)"
fi
# shellcheck disable=SC2086
if [ -n "${STATS[primary.fds]:-}${STATS[secondary.fds]:-}" ]; then
  echo
  echo "hamirror-fs after create (medians; per round in brackets):"
  for role in primary secondary; do
    [ -n "${STATS[$role.fds]:-}" ] || continue
    echo "- $role: RSS $(median ${STATS[$role.rss_mib]}) MiB [${STATS[$role.rss_mib]} ]," \
      "$(median ${STATS[$role.bytes_per_inode]}) bytes per created inode [${STATS[$role.bytes_per_inode]} ]," \
      "$(median ${STATS[$role.fds]}) descriptors open [${STATS[$role.fds]} ], limit $(median ${STATS[$role.fd_limit]})"
  done
fi
if [ "$VERIFY" != 0 ] && [ -n "${STATS[trees.after create]:-}" ]; then
  after_unlink=${STATS[trees.after unlink]:-not checked}
  echo "trees identical (primary vs secondary, VERIFY=$VERIFY) after create: ${STATS[trees.after create]# }; after unlink: ${after_unlink# }"
fi
if [ "$SCALE" = 1 ] && [[ " ${active[*]} " == *" hamirror "* ]]; then
  echo
  # shellcheck disable=SC2086
  limit=$(median ${STATS[primary.fd_limit]:-})
  if [ -n "${SECS[hamirror.create]:-}" ] && [ "${#FAILS[@]}" = 0 ]; then
    echo "SCALE: $FILES files created, stat'ed, unlinked through a hamirror primary mount at descriptor limit $limit: OK"
  else
    echo "SCALE: $FILES files through a hamirror primary mount at descriptor limit $limit:" \
      "FAILED (${FAILED_AS[hamirror.create]:+create: ${FAILED_AS[hamirror.create]}, }see below)"
  fi
fi
if [ "${#FAILS[@]}" -gt 0 ]; then
  echo
  echo "FAILED:"
  printf -- '- %s\n' "${FAILS[@]}"
  exit 1
fi
exit 0
