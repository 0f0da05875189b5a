# shellcheck shell=bash
# Shell helpers shared by bench/*.sh and scripts/demo.sh: a private MariaDB (child of the script, by
# PID, own socket, no networking, full durability), FUSE mounts (hamirror-fs pair, bindfs,
# passthrough_ll) and sysbench. Source it; it defines functions and variables only.
# Every wait is bounded; processes are stopped by the PIDs recorded here, never by name.

# mariadbd lives in /usr/sbin, which a non-login root environment may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin:/sbin ;; esac
HM_LIB_REPO=${HM_LIB_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
HAMIRROR_FS=${HAMIRROR_FS:-$HM_LIB_REPO/build/bin/hamirror-fs}
MDB_BUFFER_POOL=${MDB_BUFFER_POOL:-128M}
MDB_LOG_FILE_SIZE=${MDB_LOG_FILE_SIZE:-96M}
# Empty = MariaDB's default (O_DIRECT in 10.11).
MDB_FLUSH_METHOD=${MDB_FLUSH_METHOD:-}

hm_log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
hm_die() { hm_log "ERROR: $*"; exit 1; }

# hm_wait_pid_exit PID SECONDS: 0 once PID is gone (reaped if it is our child), 1 on timeout.
hm_wait_pid_exit() {
  local pid=$1 limit=$(( $2 * 10 )) i
  for (( i = 0; i < limit; i++ )); do
    if ! kill -0 "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null; return 0; fi
    sleep 0.1
  done
  return 1
}

# hm_stop_pid PID SECONDS: SIGTERM, bounded wait, then SIGKILL. Returns the process's exit status if
# it ended by itself (0 = clean), 137 if it had to be killed.
hm_stop_pid() {
  local pid=$1 secs=${2:-60}
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  kill -TERM "$pid" 2>/dev/null
  local i limit=$(( secs * 10 ))
  for (( i = 0; i < limit; i++ )); do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null
      return $?
    fi
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 137
}

# hm_await_mount DIR SECONDS [FSTYPE_PREFIX]: waits until DIR is a mount point (of that type).
hm_await_mount() {
  local dir=$1 limit=$(( $2 * 10 )) prefix=${3:-} i t
  for (( i = 0; i < limit; i++ )); do
    t=$(findmnt -n -o FSTYPE --mountpoint "$dir" 2>/dev/null | tail -1)
    if [ -n "$t" ] && [[ $t == "$prefix"* ]]; then return 0; fi
    sleep 0.1
  done
  return 1
}

# hm_unmount DIR: unmounts every mount on DIR (fusermount3 -u, then lazily).
hm_unmount() {
  local dir=$1 i
  for (( i = 0; i < 5; i++ )); do
    findmnt -n --mountpoint "$dir" >/dev/null 2>&1 || return 0
    fusermount3 -u "$dir" 2>/dev/null || umount "$dir" 2>/dev/null || umount -l "$dir" 2>/dev/null || true
  done
}

# --- MariaDB -------------------------------------------------------------------------------------
# mdb_install DATADIR RUNDIR
mdb_install() {
  local datadir=$1 rundir=$2
  mkdir -p "$datadir" "$rundir"
  local extra=()
  [ -n "$MDB_FLUSH_METHOD" ] && extra+=(--innodb-flush-method="$MDB_FLUSH_METHOD")
  mariadb-install-db --no-defaults --datadir="$datadir" --user=root --skip-test-db \
    --auth-root-authentication-method=socket --innodb-buffer-pool-size="$MDB_BUFFER_POOL" \
    --innodb-log-file-size="$MDB_LOG_FILE_SIZE" --tmpdir="$rundir" "${extra[@]}" >"$rundir/install-db.log" 2>&1 ||
    { tail -20 "$rundir/install-db.log" >&2; return 1; }
}

# mdb_start DATADIR RUNDIR [extra mariadbd args...]: sets MDB_PID and MDB_SOCK; waits (≤ 120 s)
# until the server answers. Runs as root (--user=root): see docs/benchmarks.md.
mdb_start() {
  local datadir=$1 rundir=$2
  shift 2
  mkdir -p "$rundir"
  MDB_SOCK=$rundir/mysqld.sock
  local args=(--no-defaults --datadir="$datadir" --socket="$MDB_SOCK" --pid-file="$rundir/mysqld.pid"
    --log-error="$rundir/error.log" --skip-networking --user=root --server-id=1 --log-bin=binlog
    --sync-binlog=1 --innodb-flush-log-at-trx-commit=1 --innodb-buffer-pool-size="$MDB_BUFFER_POOL"
    --innodb-log-file-size="$MDB_LOG_FILE_SIZE" --max-connections=200
    --tmpdir="$rundir")  # private: mariadbd deletes every "#sql*" file in its tmpdir at start-up
  [ -n "$MDB_FLUSH_METHOD" ] && args+=(--innodb-flush-method="$MDB_FLUSH_METHOD")
  mariadbd "${args[@]}" "$@" >"$rundir/mariadbd.out" 2>&1 &
  MDB_PID=$!
  local i
  for (( i = 0; i < 1200; i++ )); do
    if mariadb --no-defaults -S "$MDB_SOCK" -u root -e 'SELECT 1' >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$MDB_PID" 2>/dev/null; then
      wait "$MDB_PID" 2>/dev/null
      hm_log "mariadbd exited during start-up; error log tail:"
      tail -20 "$rundir/error.log" >&2
      MDB_PID=
      return 1
    fi
    sleep 0.1
  done
  hm_log "mariadbd did not answer within 120 s"
  tail -20 "$rundir/error.log" >&2
  return 1
}

# mdb_stop: clean shutdown of MDB_PID (≤ 120 s).
mdb_stop() {
  [ -n "${MDB_PID:-}" ] || return 0
  hm_stop_pid "$MDB_PID" 120
  local rc=$?
  MDB_PID=
  return $rc
}

# mdb_sql SQL...: runs statements as root on MDB_SOCK, tab-separated output without headers.
mdb_sql() { mariadb --no-defaults -S "$MDB_SOCK" -u root -N -B -e "$*"; }

# --- sysbench ------------------------------------------------------------------------------------
SB_TABLES=${SB_TABLES:-4}
SB_TABLE_SIZE=${SB_TABLE_SIZE:-10000}
SB_THREADS=${SB_THREADS:-4}
SB_TEST=${SB_TEST:-oltp_write_only}  # or oltp_read_write, oltp_read_only (same tables)

sb_args() {
  echo --db-driver=mysql --mysql-socket="$MDB_SOCK" --mysql-user=root --mysql-db=sbtest \
    --tables="$SB_TABLES" --table-size="$SB_TABLE_SIZE" --threads="$SB_THREADS"
}

# sb_prepare LOG
sb_prepare() {
  mdb_sql "CREATE DATABASE IF NOT EXISTS sbtest" || return 1
  # shellcheck disable=SC2046
  sysbench "$SB_TEST" $(sb_args) prepare >"$1" 2>&1 || { tail -20 "$1" >&2; return 1; }
}

# sb_run SECONDS LOG: prints the run's tps.
sb_run() {
  # shellcheck disable=SC2046
  sysbench "$SB_TEST" $(sb_args) --time="$1" --report-interval=0 run >"$2" 2>&1 ||
    { tail -20 "$2" >&2; return 1; }
  sed -n 's/.*transactions: *[0-9]* *(\([0-9.]*\) per sec.).*/\1/p' "$2" | head -1
}

# median NUMBERS...
median() {
  if [ $# -eq 0 ]; then echo n/a; return; fi
  printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'
}

# --- hamirror-fs pair on loopback ----------------------------------------------------------------
# hm_pair_start BASE [PRIMARY_DIR SECONDARY_DIR]: secondary on SECONDARY_DIR (default BASE/secondary),
# listening on a free loopback port, primary on PRIMARY_DIR (default BASE/primary); logs and the control
# socket go to BASE. Sets HM_PRIMARY_PID, HM_SECONDARY_PID, HM_PORT, HM_PRIMARY_DIR, HM_SECONDARY_DIR.
# Waits for both mounts and the primary's connection (≤ 30 s each).
hm_pair_start() {
  local base=$1
  HM_PRIMARY_DIR=${2:-$base/primary}
  HM_SECONDARY_DIR=${3:-$base/secondary}
  [ -x "$HAMIRROR_FS" ] || { hm_log "no hamirror-fs binary at $HAMIRROR_FS"; return 1; }
  mkdir -p "$base" "$HM_PRIMARY_DIR" "$HM_SECONDARY_DIR"
  HM_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # Explicit control sockets: the default path derives from the directory's basename.
  "$HAMIRROR_FS" secondary --dir "$HM_SECONDARY_DIR" --listen "127.0.0.1:$HM_PORT" \
    --control "$base/secondary.ctl" --insecure \
    >"$base/secondary.log" 2>&1 &
  HM_SECONDARY_PID=$!
  hm_await_mount "$HM_SECONDARY_DIR" 30 fuse || { tail -20 "$base/secondary.log" >&2; return 1; }
  local i
  for (( i = 0; i < 300; i++ )); do
    ss -Hltn "sport = :$HM_PORT" 2>/dev/null | grep -q . && break
    sleep 0.1
  done
  "$HAMIRROR_FS" primary --dir "$HM_PRIMARY_DIR" --peer "127.0.0.1:$HM_PORT" --control "$base/primary.ctl" \
    --insecure >"$base/primary.log" 2>&1 &
  HM_PRIMARY_PID=$!
  hm_await_mount "$HM_PRIMARY_DIR" 30 fuse || { tail -20 "$base/primary.log" >&2; return 1; }
  for (( i = 0; i < 300; i++ )); do
    ss -Htn state established "dport = :$HM_PORT" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  hm_log "primary never connected to 127.0.0.1:$HM_PORT"
  tail -20 "$base/primary.log" >&2
  return 1
}

# hm_pair_stop: primary first (SIGTERM unmounts), then the secondary. Non-zero if one did not stop
# cleanly (exit status != 0 or killed after 30 s).
hm_pair_stop() {
  local rc=0
  if [ -n "${HM_PRIMARY_PID:-}" ]; then hm_stop_pid "$HM_PRIMARY_PID" 30 || rc=1; HM_PRIMARY_PID=; fi
  [ -n "${HM_PRIMARY_DIR:-}" ] && hm_unmount "$HM_PRIMARY_DIR"
  if [ -n "${HM_SECONDARY_PID:-}" ]; then hm_stop_pid "$HM_SECONDARY_PID" 30 || rc=1; HM_SECONDARY_PID=; fi
  [ -n "${HM_SECONDARY_DIR:-}" ] && hm_unmount "$HM_SECONDARY_DIR"
  return $rc
}

# hm_vmhwm PID: peak resident set size in KiB (VmHWM).
hm_vmhwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

# --- keeping the vCPUs out of deep idle ----------------------------------------------------------
# Measured on this project's VMs (cpuidle driver haltpoll): a lone O_DSYNC writer waits ~4 ms per write
# when the vCPU halts while the disk works (the completion is noticed late), and ~0.12 ms when it does
# not. That idle exit latency would dominate every synchronous-write benchmark and favour whichever
# target keeps more threads busy. Holding a PM QoS request of 0 µs on /dev/cpu_dma_latency (what tuned's
# latency-performance profile does) makes idle CPUs poll instead of halting, for every target alike,
# without taking CPU time from anyone. The request lasts while the file stays open.
HM_QOS_FD=
hm_cpus_awake_start() {
  if [ ! -w /dev/cpu_dma_latency ]; then
    hm_log "no /dev/cpu_dma_latency: CPUs may halt when idle (sync-write latencies include wake-ups)"
    return 0
  fi
  exec {HM_QOS_FD}>/dev/cpu_dma_latency
  printf 0 >&"$HM_QOS_FD"
}
hm_cpus_awake_stop() {
  if [ -n "$HM_QOS_FD" ]; then exec {HM_QOS_FD}>&-; fi
  HM_QOS_FD=
}
