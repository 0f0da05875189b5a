# Shared by the bench/*-compare.sh scripts (sourced, not run): work directory and its cleanup, FUSE
# comparison targets run as background daemons, interleaved rounds, result arithmetic. Builds on
# tests/integration/mariadb-lib.sh (hm_*, mdb_*, sb_*, median), which it sources.
# Needs REPO (the repository root) set by the sourcing script.
# shellcheck shell=bash
# shellcheck source=../tests/integration/mariadb-lib.sh
source "$REPO/tests/integration/mariadb-lib.sh"

BENCH_DIR=${BENCH_DIR:-/var/tmp/hamirror-bench}
# 0: the machine as it is (the numbers that count); 1: an extra column with idle vCPUs kept polling.
KEEP_CPUS_AWAKE=${KEEP_CPUS_AWAKE:-0}
FUSE_PID=
FUSE_MNT=

# bench_init TAG: creates the work directory W=$BENCH_DIR/TAG.XXXXXX and installs the cleanup traps.
bench_init() {
  mkdir -p "$BENCH_DIR"
  W=$(mktemp -d "$BENCH_DIR/$1.XXXXXX")
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

# On exit: CPUs back to normal idle, then the script's own bench_cleanup_hook if it defines one (e.g.
# stopping mariadbd before its datadir's mount goes), then every daemon and mount, then W.
bench_cleanup() {
  set +e
  hm_cpus_awake_stop
  if declare -F bench_cleanup_hook >/dev/null; then bench_cleanup_hook; fi
  [ -n "$FUSE_PID" ] && hm_stop_pid "$FUSE_PID" 20
  [ -n "$FUSE_MNT" ] && hm_unmount "$FUSE_MNT"
  hm_pair_stop >/dev/null 2>&1
  findmnt -n -o TARGET -l | grep "^$W/" | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$W"
}

# fuse_start MNT LOG COMMAND...: runs a FUSE file system's COMMAND (in the foreground mode, -f) in the
# background with its output in LOG, sets FUSE_PID and FUSE_MNT, and waits (≤ 20 s) until MNT is mounted.
fuse_start() {
  local mnt=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  FUSE_PID=$! FUSE_MNT=$mnt
  hm_await_mount "$mnt" 20 fuse
}

# fuse_stop: unmounts FUSE_MNT and stops FUSE_PID (started by fuse_start).
fuse_stop() {
  hm_unmount "$FUSE_MNT"
  hm_stop_pid "$FUSE_PID" 20 || true
  FUSE_PID='' FUSE_MNT=''
}

# bench_have_hamirror: true if the hamirror-fs binary exists; logs that the target is skipped if not.
bench_have_hamirror() {
  [ -x "$HAMIRROR_FS" ] && return 0
  hm_log "hamirror: no binary at $HAMIRROR_FS; target skipped"
  return 1
}

# build_passthrough_ll: builds libfuse's passthrough_ll example (Debian's libfuse3-dev docs) into
# W/tools and sets PT_BIN; logs that the target is skipped and fails if it cannot.
PT_BIN=
build_passthrough_ll() {
  local ex=/usr/share/doc/libfuse3-dev/examples
  if [ ! -f "$ex/passthrough_ll.c" ]; then
    hm_log "passthrough_ll: $ex/passthrough_ll.c not present (libfuse3-dev examples); target skipped"
    return 1
  fi
  mkdir -p "$W/tools"
  PT_BIN=$W/tools/passthrough_ll
  # shellcheck disable=SC2046 # pkg-config prints several flags
  gcc -O2 -o "$PT_BIN" "$ex/passthrough_ll.c" -I"$ex" $(pkg-config --cflags --libs fuse3) 2>"$W/pt-build.log" ||
    { hm_log "passthrough_ll: build failed (see below); target skipped"; cat "$W/pt-build.log" >&2; PT_BIN=; return 1; }
}

# bench_rounds RUN_ONE TARGETS...: calls `RUN_ONE TARGET ROUND` for every target, ROUNDS times. The order
# rotates each round so no target always runs first (or right after the same neighbour). A failed run
# is logged by RUN_ONE and does not stop the others.
bench_rounds() {
  local run_one=$1 r i n
  shift
  n=$#
  local targets=("$@")
  for (( r = 1; r <= ROUNDS; r++ )); do
    for (( i = 0; i < n; i++ )); do "$run_one" "${targets[$(( (i + r - 1) % n ))]}" "$r" || true; done
  done
}

# bench_vmrss PID: resident set size in KiB (VmRSS). bench_fd_count PID: open descriptors.
# bench_fd_limit PID: the process's soft descriptor limit (RLIMIT_NOFILE, "Max open files").
bench_vmrss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
bench_fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
bench_fd_limit() { awk '/^Max open files/ {print $4}' "/proc/$1/limits" 2>/dev/null; }

# ratio A B: A / B to two decimals, n/a if either is n/a or B is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f", a / b}'; }
