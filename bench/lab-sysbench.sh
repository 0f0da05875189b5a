#!/usr/bin/env bash
# sysbench through the VIP of a lab cluster against MariaDB on a plain local directory, in interleaved
# rounds of one run (issue 11, "Benchmarks"). Two targets, both reached over TCP from a client network
# namespace through a bridge namespace (the topology of scripts/lab/lab.sh):
#   lab_vip    `lab.sh up --mysql`: n1 PRIM, n2 SECOND, MariaDB on n1 over its hamirror-fs mount of
#              /var/lib/mysql (module scripts/modules/mysql: async="none", directio="all"), every write
#              replicated synchronously (TLS) to n2; sysbench in the lab's client namespace -> the VIP.
#   local_tcp  the same mariadbd options (MYSQL_OPTIONS read from the module's conf/userconfig.xml, the
#              fixed ones of its bin/start_prim) on a plain directory of the host's disk, in the node
#              namespace of a network-only lab (`lab.sh up -n 1 -l 1`): client namespace -> bridge ->
#              198.18.0.11. No FUSE, no replication, no hamirrord.
# Each target is prepared once (sysbench prepare, the same tables for every workload) and stays up for
# the whole run; every round runs each workload on both targets, the order alternating per round,
# with `sync` and SETTLE s idle before each measured run. Prints per-round tps, medians (tps and 95th
# percentile latency) and the ratio lab_vip / local_tcp of the median tps.
#
# Knobs (env): ROUNDS=3 DURATION=30 (s per run) SETTLE=10 SB_THREADS=4 SB_TABLES=4 SB_TABLE_SIZE=10000
#   WORKLOADS="oltp_write_only oltp_read_only" (any sysbench oltp_* test)
#   TARGETS="lab_vip local_tcp" KEEP_CPUS_AWAKE=0 (see bench/lib.sh) BENCH_DIR=/var/tmp/hamirror-bench
#   LAB_PREFIX=hmsbv (the cluster) LOCAL_PREFIX=hmsbl (the network of local_tcp): lab.sh prefixes, which
#   must not exist yet
# Default runtime: lab up ≈ 20 s, then 2 workloads x 2 targets x 3 rounds x ~42 s ≈ 9 min. Run as root.
# Not part of ctest. Everything it made (both labs, the local mariadbd by PID, its tmpfs, the work
# directory) is removed on exit, also on failure or Ctrl-C.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$REPO/bench/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-30}
SETTLE=${SETTLE:-10}
WORKLOADS=${WORKLOADS:-oltp_write_only oltp_read_only}
TARGETS=${TARGETS:-lab_vip local_tcp}
LAB_PREFIX=${LAB_PREFIX:-hmsbv}
LOCAL_PREFIX=${LOCAL_PREFIX:-hmsbl}
LAB=$REPO/scripts/lab/lab.sh
MODULE=$REPO/scripts/modules/mysql
[ "$(id -u)" -eq 0 ] || hm_die "run as root (network namespaces, FUSE, mariadbd --user=mysql)"
for b in sysbench mariadbd mariadb-install-db mariadb; do
  command -v "$b" >/dev/null || hm_die "$b not found (scripts/install-deps.sh installs it)"
done

lab_v() { HAMIRROR_LAB=$LAB_PREFIX "$LAB" "$@"; }
lab_l() { HAMIRROR_LAB=$LOCAL_PREFIX "$LAB" "$@"; }
lab_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qE "^$1-(br|client|n[0-9]+)$"; }

LAB_V_UP=0 LAB_L_UP=0 SB_PID=
bench_cleanup_hook() {
  [ -n "$SB_PID" ] && kill -TERM "$SB_PID" 2>/dev/null  # the run in progress (lab.sh down kills the rest)
  mdb_stop >/dev/null 2>&1
  [ "$LAB_L_UP" = 1 ] && lab_l down >/dev/null 2>&1
  [ "$LAB_V_UP" = 1 ] && lab_v down >/dev/null 2>&1
  return 0
}
bench_init labsb
chmod 0755 "$W"  # mariadbd runs as mysql and must reach its directories under W

# The module's server options, from conf/userconfig.xml (<var name="MYSQL_OPTIONS" value="..."/>).
MODULE_OPTIONS=$(sed -n 's/.*<var name="MYSQL_OPTIONS" value="\([^"]*\)".*/\1/p' "$MODULE/conf/userconfig.xml")
[ -n "$MODULE_OPTIONS" ] || hm_die "no MYSQL_OPTIONS in $MODULE/conf/userconfig.xml"
MODULE_PORT=$(sed -n 's/.*<macro name="PORT" value="\([0-9]*\)".*/\1/p' "$MODULE/conf/userconfig.xml")

# --- the targets ----------------------------------------------------------------------------------
# Connection of each target as seen from its client namespace: HOST[t] PORT[t] USER[t] PASS[t].
declare -A HOST PORT USER PASS

# lab_vip: the cluster; its connection from `lab.sh env` (parsed, not eval'd).
setup_lab_vip() {
  lab_exists "$LAB_PREFIX" && hm_die "lab '$LAB_PREFIX' exists already (another run?); remove it: HAMIRROR_LAB=$LAB_PREFIX $LAB down"
  LAB_V_UP=1
  hm_log "lab_vip: lab.sh up --mysql (prefix $LAB_PREFIX)"
  lab_v up --mysql >"$W/lab-up.log" 2>&1 || { cat "$W/lab-up.log" >&2; hm_die "lab.sh up --mysql failed"; }
  local k v
  while IFS='=' read -r k v; do
    case $k in
      VIP) HOST[lab_vip]=$v ;;
      MYSQL_PORT) PORT[lab_vip]=$v ;;
      MYSQL_USER) USER[lab_vip]=$v ;;
      MYSQL_PASSWORD) PASS[lab_vip]=$v ;;
    esac
  done < <(lab_v env)
  [ -n "${HOST[lab_vip]:-}" ] && [ -n "${PASS[lab_vip]:-}" ] || hm_die "lab.sh env gave no VIP or password"
  lab_replicating || hm_die "lab_vip: not n1 PRIM / n2 SECOND after up"
}

# True while the lab is what lab_vip measures: n1 PRIM and n2 SECOND (ready), the VIP on n1 only.
lab_replicating() {
  [ "$(lab_v state n1)" = "prim ready" ] && [ "$(lab_v state n2)" = "second ready" ] &&
    [ "$(lab_v holder | tr '\n' ' ')" = "n1 " ]
}

# lab_await_replicating WHAT: true at once if the lab is n1 PRIM / n2 SECOND; else logs the states and
# the end of both nodes' module logs (a pair that changed state between runs is a finding), then waits
# (<= 180 s) for the pair to be back.
lab_await_replicating() {
  lab_replicating && return 0
  hm_log "$1: the lab is $(lab_v state n1) / $(lab_v state n2), not n1 PRIM / n2 SECOND; end of the module logs:"
  local n i
  for n in n1 n2; do lab_v exec "$n" tail -n 12 /var/log/hamirror/mysql.log 2>&1 | sed "s/^/  $n: /" >&2 || true; done
  for ((i = 0; i < 90; i++)); do
    lab_replicating && { hm_log "$1: n1 PRIM / n2 SECOND again after $((i * 2)) s"; return 0; }
    sleep 2
  done
  return 1
}

# local_tcp: mariadbd as bin/start_prim starts it (no option file, the module's options, --user=mysql,
# tmpdir/socket/pid on a tmpfs as /run/mysqld is on a node), in the node namespace of a network-only lab.
setup_local_tcp() {
  lab_exists "$LOCAL_PREFIX" && hm_die "lab '$LOCAL_PREFIX' exists already (another run?); remove it: HAMIRROR_LAB=$LOCAL_PREFIX $LAB down"
  LAB_L_UP=1
  lab_l up -n 1 -l 1 >"$W/local-up.log" 2>&1 || { cat "$W/local-up.log" >&2; hm_die "lab.sh up -n 1 -l 1 failed"; }
  local data=$W/data run=$W/run log=$W/mysql-server.err ns=$LOCAL_PREFIX-n1
  mkdir -p "$run"
  mount -t tmpfs -o mode=0755,size=64m tmpfs "$run"
  chown mysql "$run"
  touch "$log" && chown mysql "$log"
  mariadb-install-db --no-defaults --datadir="$data" --user=mysql --auth-root-authentication-method=socket \
    --skip-test-db --tmpdir="$run" >"$W/install-db.log" 2>&1 || { tail -20 "$W/install-db.log" >&2; hm_die "mariadb-install-db failed"; }
  MDB_SOCK=$run/mysqld.sock
  # shellcheck disable=SC2086 # MODULE_OPTIONS is a list of options, as start_prim passes it
  ip netns exec "$ns" mariadbd --no-defaults --datadir="$data" --socket="$MDB_SOCK" --pid-file="$run/mysqld.pid" \
    --port="$MODULE_PORT" --user=mysql --log-error="$log" --tmpdir="$run" $MODULE_OPTIONS </dev/null >>"$log" 2>&1 &
  MDB_PID=$!  # ip netns exec execs mariadbd: this is the server's PID, our child
  local i
  for ((i = 0; i < 1200; i++)); do
    mariadb --no-defaults -S "$MDB_SOCK" -u root -e 'SELECT 1' >/dev/null 2>&1 && break
    kill -0 "$MDB_PID" 2>/dev/null || { tail -20 "$log" >&2; MDB_PID=; hm_die "local mariadbd exited during start-up"; }
    sleep 0.1
  done
  [ "$i" -lt 1200 ] || { tail -20 "$log" >&2; hm_die "local mariadbd did not answer within 120 s"; }
  [ "$(cat "/proc/$MDB_PID/comm")" = mariadbd ] || hm_die "PID $MDB_PID is not mariadbd"
  HOST[local_tcp]=$(lab_l addr n1 0) PORT[local_tcp]=$MODULE_PORT USER[local_tcp]=bench
  PASS[local_tcp]=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  mdb_sql "CREATE USER 'bench'@'%' IDENTIFIED BY '${PASS[local_tcp]}'; GRANT ALL PRIVILEGES ON *.* TO 'bench'@'%'"
}

# client_exec TARGET CMD...: CMD in the target's client namespace.
client_exec() {
  local t=$1
  shift
  if [ "$t" = lab_vip ]; then lab_v exec client "$@"; else lab_l exec client "$@"; fi
}

sb_tcp_args() {
  local t=$1
  echo --db-driver=mysql --mysql-host="${HOST[$t]}" --mysql-port="${PORT[$t]}" --mysql-user="${USER[$t]}" \
    --mysql-password="${PASS[$t]}" --mysql-db=sbtest --tables="$SB_TABLES" --table-size="$SB_TABLE_SIZE" \
    --threads="$SB_THREADS"
}

# prepare TARGET: database sbtest and its tables, over TCP from the client namespace.
prepare() {
  local t=$1
  client_exec "$t" mariadb --no-defaults -h "${HOST[$t]}" -P "${PORT[$t]}" -u "${USER[$t]}" -p"${PASS[$t]}" \
    -e 'CREATE DATABASE IF NOT EXISTS sbtest' || hm_die "$t: CREATE DATABASE failed"
  # shellcheck disable=SC2046
  client_exec "$t" sysbench oltp_write_only $(sb_tcp_args "$t") prepare >"$W/prepare-$t.log" 2>&1 ||
    { tail -20 "$W/prepare-$t.log" >&2; hm_die "$t: sysbench prepare failed"; }
}

# server_vars TARGET: the durability settings the server runs with, asked over the benchmark's path.
server_vars() {
  local t=$1
  client_exec "$t" mariadb --no-defaults -h "${HOST[$t]}" -P "${PORT[$t]}" -u "${USER[$t]}" -p"${PASS[$t]}" -N -B \
    -e "SELECT CONCAT('innodb_flush_log_at_trx_commit=', @@innodb_flush_log_at_trx_commit, ' sync_binlog=', @@sync_binlog,
        ' log_bin=', @@log_bin, ' innodb_flush_method=', @@innodb_flush_method, ' innodb_buffer_pool_size=',
        @@innodb_buffer_pool_size, ' innodb_log_file_size=', @@innodb_log_file_size, ' hostname=', @@hostname)"
}

# --- the rounds -----------------------------------------------------------------------------------
declare -A TPS P95 ROUND_TPS
# run_one WORKLOAD TARGET ROUND: one measured run; records its tps and 95th percentile latency.
run_one() {
  local w=$1 t=$2 r=$3 log=$W/run-$1-$2-$3.log tps p95
  if [ "$t" = lab_vip ] && ! lab_await_replicating "round $r $w $t"; then
    hm_log "round $r $w $t: skipped: the lab is not n1 PRIM / n2 SECOND ($(lab_v state n1) / $(lab_v state n2))"
    return 1
  fi
  sync
  sleep "$SETTLE"
  # In the background: `wait` returns at once on a signal, so Ctrl-C does not wait for the run's end.
  # shellcheck disable=SC2046
  client_exec "$t" sysbench "$w" $(sb_tcp_args "$t") --time="$DURATION" --report-interval=0 run >"$log" 2>&1 &
  SB_PID=$!
  if ! wait "$SB_PID"; then
    SB_PID=
    tail -20 "$log" >&2
    hm_log "round $r $w $t: sysbench failed"
    return 1
  fi
  tps=$(sed -n 's/.*transactions: *[0-9]* *(\([0-9.]*\) per sec.).*/\1/p' "$log" | head -1)
  SB_PID=
  p95=$(awk '/95th percentile:/ {print $3; exit}' "$log")
  if [ "$t" = lab_vip ] && ! lab_replicating; then
    hm_log "round $r $w $t: $tps tps, not counted: the pair changed state during the run"
    return 1
  fi
  TPS[$w/$t]="${TPS[$w/$t]:-} $tps"
  P95[$w/$t]="${P95[$w/$t]:-} $p95"
  ROUND_TPS[$r/$w/$t]=$tps
  hm_log "round $r $w $t: $tps tps, p95 $p95 ms"
}

active=()
for t in $TARGETS; do
  case $t in
    lab_vip | local_tcp) active+=("$t") ;;
    *) hm_die "unknown target $t (lab_vip, local_tcp)" ;;
  esac
done
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
START_TIME=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for t in "${active[@]}"; do "setup_$t"; done
for t in "${active[@]}"; do prepare "$t"; done
declare -A VARS
for t in "${active[@]}"; do VARS[$t]=$(server_vars "$t"); hm_log "$t: ${VARS[$t]}"; done
hm_log "lab sysbench: targets=${active[*]} workloads=$WORKLOADS rounds=$ROUNDS duration=${DURATION}s threads=$SB_THREADS tables=$SB_TABLES x $SB_TABLE_SIZE rows, work dir $W"

[ "$KEEP_CPUS_AWAKE" = 1 ] && hm_cpus_awake_start
n=${#active[@]}
for ((r = 1; r <= ROUNDS; r++)); do
  for w in $WORKLOADS; do
    for ((i = 0; i < n; i++)); do run_one "$w" "${active[$(((i + r - 1) % n))]}" "$r" || true; done
  done
done
END_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the report ------------------------------------------------------------------------------------
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$REPO" diff --quiet HEAD 2>/dev/null || commit="$commit (+ uncommitted changes)"
echo
echo "## lab sysbench, $START_TIME to $(date -u +%H:%M:%SZ), commit $commit, $(uname -r), MariaDB $(mariadbd --version | awk '{print $3}'), sysbench $(sysbench --version | awk '{print $2}')"
echo "threads=$SB_THREADS tables=$SB_TABLES table_size=$SB_TABLE_SIZE duration=${DURATION}s rounds=$ROUNDS settle=${SETTLE}s keep_cpus_awake=$KEEP_CPUS_AWAKE"
echo "load average at start: $START_LOAD, at end: $END_LOAD"
echo "server options (both): --no-defaults --port=$MODULE_PORT --user=mysql $MODULE_OPTIONS"
for t in "${active[@]}"; do echo "$t server: ${VARS[$t]}"; done
for w in $WORKLOADS; do
  echo
  echo "### $w"
  echo
  echo "| target | tps per round | median tps | median p95 latency (ms) |"
  echo "|---|---|---|---|"
  for t in "${active[@]}"; do
    # shellcheck disable=SC2086
    echo "| $t | $(echo ${TPS[$w/$t]:-none} | sed 's/ / \/ /g') | $(median ${TPS[$w/$t]:-}) | $(median ${P95[$w/$t]:-}) |"
  done
  if [ -n "${TPS[$w/lab_vip]:-}" ] && [ -n "${TPS[$w/local_tcp]:-}" ]; then
    per_round=
    for ((r = 1; r <= ROUNDS; r++)); do
      per_round="$per_round / $(ratio "${ROUND_TPS[$r/$w/lab_vip]:-n/a}" "${ROUND_TPS[$r/$w/local_tcp]:-n/a}")"
    done
    echo
    # shellcheck disable=SC2086
    echo "ratio lab_vip / local_tcp of the median tps: $(ratio "$(median ${TPS[$w/lab_vip]})" "$(median ${TPS[$w/local_tcp]})") (per round: ${per_round# / })"
  fi
done
exit 0
