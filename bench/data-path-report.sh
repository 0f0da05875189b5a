#!/usr/bin/env bash
# The data path against its goals (issue 12) in one run: every comparison script of bench/, each with
# every target side by side in interleaved rounds, hamirror on both transports, the reports gathered
# into one markdown file (OUT) that docs/benchmarks.md quotes.
#   1. sysbench oltp_write_only: local, floor, floor_fuse (a perfect synchronous mirror without and
#      behind FUSE), floor_writes, floor_writes_fuse (the same keeping hamirror's promise 1: every write
#      waits for the peer), passthrough_ll, bindfs, hamirror (/dev/fuse), hamirror_alt (FUSE over io_uring)
#   2. sysbench oltp_read_write and oltp_read_only: local, hamirror, hamirror_alt
#   3. fio: sequential 1 MiB writes; 4 KiB random writes with O_DSYNC, O_SYNC and fsync=1: local,
#      local_x2 (what each copy of a pair sharing this machine gets), bindfs, hamirror, hamirror_alt
#   4. one O_DSYNC write against this machine's floor: local, two_flushes, tcp_rt, passthrough,
#      hamirror, hamirror_alt
#   5. metadata: FILES files created, stat'ed, unlinked: local, floor, floor_fuse, passthrough_ll,
#      bindfs, hamirror, hamirror_alt
# hamirror_alt is the same hamirror-fs with --transport uring (a wrapper); the kernel's
# fuse.enable_uring is switched on for the run and restored after. On a kernel without it the ring
# target is left out and the report says so.
# Knobs (env): OUT=/var/tmp/hamirror-bench/data-path-report-<UTC time>.md STEPS="1 2 3 4 5"
#   ROUNDS=3 DURATION=30 (sysbench s) SEQ_SIZE=512M RAND_SECONDS=15 (fio) WRITES=3000 (sync-write-floor)
#   FILES=15000 (metadata; passthrough_ll keeps a descriptor per inode: stay below the descriptor limit)
#   HAMIRROR_FS=build/bin/hamirror-fs KEEP_CPUS_AWAKE=0 (1: an extra run, every target alike)
# Needs: cmake --build build --target hamirror-fs bench-mdtest; MariaDB, sysbench, fio, bindfs
# (scripts/install-deps.sh). Runtime with the defaults: about 65 min on the development VM (steps 1–4: 55 min,
# of which step 1 19 min, step 2 13 min, step 3 22 min; step 5 about 10 min). Run as root.
# Exit status: 1 if a step failed (its log is in the report), else 0. Not part of ctest.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
HAMIRROR_FS=${HAMIRROR_FS:-$REPO/build/bin/hamirror-fs}
OUT=${OUT:-/var/tmp/hamirror-bench/data-path-report-$(date -u +%Y%m%dT%H%MZ).md}
STEPS=${STEPS:-1 2 3 4 5}
export ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-30} SEQ_SIZE=${SEQ_SIZE:-512M} RAND_SECONDS=${RAND_SECONDS:-15}
export WRITES=${WRITES:-3000} FILES=${FILES:-15000} KEEP_CPUS_AWAKE=${KEEP_CPUS_AWAKE:-0} HAMIRROR_FS
die() { echo "data-path-report: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (FUSE mounts, the kernel's fuse parameter)"
[ -x "$HAMIRROR_FS" ] || die "no hamirror-fs at $HAMIRROR_FS (cmake --build build --target hamirror-fs)"
for s in $STEPS; do case $s in 1 | 2 | 3 | 4 | 5) ;; *) die "STEPS: unknown step $s (1 to 5)" ;; esac; done
mkdir -p "$(dirname "$OUT")"
tmp=$(mktemp -d /var/tmp/hamirror-report.XXXXXX)
param=/sys/module/fuse/parameters/enable_uring
old_uring=
cleanup() {
  if [ -n "$old_uring" ]; then echo "$old_uring" >"$param"; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# hamirror_alt: the ring, when this kernel has it.
ring=no
if [ -w "$param" ]; then
  old_uring=$(cat "$param")
  echo Y >"$param"
  printf '#!/bin/sh\nexec %s "$@" --transport uring\n' "$HAMIRROR_FS" >"$tmp/hamirror-fs-uring"
  chmod +x "$tmp/hamirror-fs-uring"
  export HAMIRROR_FS_ALT=$tmp/hamirror-fs-uring
  ring=yes
fi
alt() { [ "$ring" = yes ] && echo "$1"; true; }

{
  echo "# hamirror data path report, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'), hamirror-fs $HAMIRROR_FS," \
    "kernel $(uname -r), $(nproc) CPUs, load average at the start $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "hamirror: /dev/fuse; hamirror_alt: $([ "$ring" = yes ] && echo 'the same binary with --transport uring' || echo 'left out (no fuse.enable_uring on this kernel)')."
  echo "ROUNDS=$ROUNDS DURATION=$DURATION SEQ_SIZE=$SEQ_SIZE RAND_SECONDS=$RAND_SECONDS WRITES=$WRITES FILES=$FILES KEEP_CPUS_AWAKE=$KEEP_CPUS_AWAKE"
} >"$OUT"

failed=0
# step TITLE COMMAND...: runs one comparison script, appends its report (or its log's tail) to OUT.
step() {
  local title=$1 rc
  shift
  echo "$(date -u +%H:%M:%S) data-path-report: $title" >&2
  "$@" >"$tmp/out" 2>"$tmp/log" && rc=0 || rc=$?
  { echo; echo "## $title"; echo; echo "\`$(printf '%s ' "$@")\`"; echo; } >>"$OUT"
  if [ "$rc" != 0 ]; then
    failed=1
    { echo "FAILED (exit $rc):"; echo '```'; tail -30 "$tmp/log"; echo '```'; } >>"$OUT"
  fi
  cat "$tmp/out" >>"$OUT"
}

for s in $STEPS; do
  case $s in
    1) step "sysbench oltp_write_only" env SB_TEST=oltp_write_only \
         TARGETS="local floor floor_fuse floor_writes floor_writes_fuse passthrough_ll bindfs hamirror $(alt hamirror_alt)" \
         "$REPO/bench/sysbench-compare.sh" ;;
    2) for t in oltp_read_write oltp_read_only; do
         step "sysbench $t" env SB_TEST=$t TARGETS="local hamirror $(alt hamirror_alt)" "$REPO/bench/sysbench-compare.sh"
       done ;;
    3) step "fio" env TARGETS="local local_x2 bindfs hamirror $(alt hamirror_alt)" "$REPO/bench/fio-compare.sh" ;;
    4) step "one O_DSYNC write against this machine's floor" \
         env TARGETS="local two_flushes tcp_rt passthrough hamirror $(alt hamirror_alt)" "$REPO/bench/sync-write-floor.sh" ;;
    5) step "metadata" env TARGETS="local floor floor_fuse passthrough_ll bindfs hamirror $(alt hamirror_alt)" \
         "$REPO/bench/metadata-compare.sh" ;;
  esac
done
echo "$(date -u +%H:%M:%S) data-path-report: written to $OUT" >&2
exit "$failed"
