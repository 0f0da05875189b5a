# shellcheck shell=bash
# The cluster half of lab.sh (sourced by it): nodes that boot, run hamirrord and a module, lose power
# and boot again. Each node n<i> is
#   - its network namespace <prefix>-n<i> (from lab.sh up),
#   - a private mount namespace and PID namespace, held by a small init process (PID 1 inside; its
#     death kills everything in the node, as a power cut does), so the node uses the paths of a real
#     server: /var/lib/mysql, /etc/hamirror, /var/lib/hamirror, /var/log/hamirror (bind mounts of the
#     node's disk, a directory under $LAB_DISK), /run/hamirror and /run/mysqld (tmpfs: lost at power off),
#   - a cgroup v2 (when the cgroup2 hierarchy is writable) holding every process of the node, also the
#     ones `lab.sh exec` starts there: `kill` is one write to cgroup.kill.
# Lab state (PIDs, certificates, password): $LAB_STATE. Nothing is found by name; every wait is bounded.

LAB_STATE_ROOT=${HAMIRROR_LAB_STATE:-/run/hamirror-lab}
LAB_DISK_ROOT=${HAMIRROR_LAB_DISK:-/var/lib/hamirror-lab}
LAB_VIP=198.18.0.50
LAB_CLIENT=198.18.0.100
LAB_DB_USER=lab
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${HAMIRROR_BIN:-$REPO/build/bin}
NODE_PATH="$BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Mount points a node covers, and what covers them: disk:<dir under the node's disk> or tmpfs.
NODE_MOUNTS=(
  "/var/lib/mysql disk:mysql"
  "/etc/hamirror disk:etc"
  "/var/lib/hamirror disk:lib"
  "/var/log/hamirror disk:log"
  "/run/hamirror tmpfs"
  "/run/mysqld tmpfs"
)

lab_paths() {
  LAB_STATE=$LAB_STATE_ROOT/$PREFIX
  LAB_DISK=$LAB_DISK_ROOT/$PREFIX
  LAB_CG=
  local root
  # HAMIRROR_LAB_NO_CGROUP=1: behave as on a host without cgroup v2 (tests of that path).
  [ "${HAMIRROR_LAB_NO_CGROUP:-0}" = 1 ] && return 0
  root=$(findmnt -n -t cgroup2 -o TARGET 2>/dev/null | head -1)
  [ -n "$root" ] && LAB_CG=$root/hamirror-lab-$PREFIX
  return 0
}

is_cluster() { [ -f "$LAB_STATE/module" ]; }
module_name() { cat "$LAB_STATE/module"; }
node_dir() { echo "$LAB_STATE/n$1"; }
# Alive: running or sleeping; a zombie (Z) or a process being reaped (X, briefly) counts as gone.
pid_alive() {
  [ -n "$1" ] && [ -d "/proc/$1" ] || return 1
  case "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" in Z | X | '') return 1 ;; esac
}
# PID files hold "PID START-TIME": a PID reused by an unrelated process after ours died never matches,
# so lab.sh never enters or kills a stranger.
start_time() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }
write_pid() { echo "$2 $(start_time "$2")" >"$(node_dir "$1")/$3"; }
read_pid() {
  local pid st f
  f="$(node_dir "$1")/$2"
  [ -f "$f" ] || return 0
  read -r pid st <"$f" || return 0
  [ -n "$pid" ] && [ "$(start_time "$pid")" = "$st" ] && echo "$pid"
  return 0
}

# The init (PID 1) of node N, if it runs.
node_init() {
  local pid
  pid=$(read_pid "$1" init.pid)
  pid_alive "$pid" && echo "$pid"
}

# wait_until SECONDS CMD...: runs CMD every 0.2 s until it succeeds (0), fails with status 2 (given
# up: returns 2 at once) or SECONDS of wall-clock time have passed (1).
wait_until() {
  local deadline=$(($(date +%s) + $1)) i rc
  shift
  for ((i = 0; i < 100000; i++)); do
    rc=0
    "$@" || rc=$?
    [ "$rc" -eq 0 ] && return 0
    [ "$rc" -eq 2 ] && return 2
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
  return 1
}

# The only child of PID (bounded wait), e.g. what nsenter/unshare forked.
child_of() {
  local pid=$1 kids i
  for ((i = 0; i < 100; i++)); do
    kids=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null || true)
    [ -n "$kids" ] && { echo "${kids%% *}"; return 0; }
    pid_alive "$pid" || return 1
    sleep 0.05
  done
  return 1
}

# Subshell prologue: joins node N's cgroup (when there is one), so that what it execs belongs to N.
cg_join() { [ -z "$LAB_CG" ] || [ ! -d "$LAB_CG/n$1" ] || echo "$BASHPID" >"$LAB_CG/n$1/cgroup.procs"; }

# node_run N CMD...: CMD in node N's network, mount and PID namespaces, in its cgroup, with build/bin
# on PATH, in the foreground.
node_run() {
  local n=$1 init
  shift
  init=$(node_init "$n") || die "node n$n is not running (lab.sh start n$n)"
  (cg_join "$n" && exec nsenter -t "$init" -m -u -n -p --wd="$PWD" -- env PATH="$NODE_PATH" "$@")
}

# node_spawn N PIDFILE LOG CMD...: CMD in the background in node N (own session, output appended to
# LOG, a path inside the node); its host PID goes to PIDFILE.
node_spawn() {
  local n=$1 pidfile=$2 log=$3 init outer pid
  shift 3
  init=$(node_init "$n") || die "node n$n is not running"
  (cg_join "$n" && exec setsid nsenter -t "$init" -m -u -n -p -- env PATH="$NODE_PATH" \
    sh -c 'log=$1; shift; exec "$@" >>"$log" 2>&1' sh "$log" "$@") </dev/null >/dev/null 2>&1 &
  outer=$!
  disown "$outer"
  pid=$(child_of "$outer") || die "could not start $1 in n$n"
  write_pid "$n" "$pid" "$pidfile"
}

# A mount point missing on the host (e.g. /etc/hamirror) is created there (the nodes' mount
# namespaces share the host's file systems) and listed, so that the last lab's down removes it again.
make_mount_point() {
  [ -d "$1" ] && return 0
  mkdir -p "$1"
  echo "$1" >>"$LAB_STATE_ROOT/created-mount-points"
}

# After the last lab is down: the mount points labs created, if still empty. Never while another lab
# exists: removing a directory that is a mount point in another mount namespace detaches that mount.
remove_mount_points() {
  local f=$LAB_STATE_ROOT/created-mount-points d
  [ -f "$f" ] || return 0
  [ -z "$(find "$LAB_STATE_ROOT" -mindepth 1 -maxdepth 1 -type d 2>/dev/null)" ] || return 0
  sort -ru "$f" | while read -r d; do rmdir "$d" 2>/dev/null || true; done
  rm -f "$f"
}

# Power on node N: links up, init with its namespaces, the disk and tmpfs mounts.
node_power_on() {
  local n=$1 ns="${PREFIX}-n$1" dir outer init m
  dir=$(node_dir "$n")
  mkdir -p "$dir"
  [ -z "$(node_init "$n")" ] || die "node n$n is already running"
  for m in $(ip -n "$ns" -o link show | awk -F': ' '$2 ~ /^eth/ {sub(/@.*/, "", $2); print $2}'); do
    ip -n "$ns" link set "$m" up
  done
  if [ -n "$LAB_CG" ]; then
    mkdir -p "$LAB_CG/n$n"
    [ -z "$(cat "$LAB_CG/n$n/cgroup.procs")" ] || die "cgroup of n$n still holds processes"
  fi
  # PID 1 of the node: reaps orphans (bash does), exits on SIGTERM; its death ends the PID namespace.
  (cg_join "$n" && exec setsid nsenter --net="/run/netns/$ns" -- unshare --mount --pid --uts --fork \
    --mount-proc --propagation private -- bash -c 'trap "exit 0" TERM; while :; do sleep 3600 & wait $!; done') \
    </dev/null >/dev/null 2>&1 &
  outer=$!
  disown "$outer"
  init=$(child_of "$outer") || die "node n$n: could not start its init"
  write_pid "$n" "$outer" unshare.pid
  write_pid "$n" "$init" init.pid
  # Never mount over the host's paths or rename the host: the init must be in namespaces of its own.
  local k
  for k in mnt uts pid; do
    [ "$(readlink "/proc/$init/ns/$k")" != "$(readlink "/proc/$$/ns/$k")" ] ||
      die "node n$n: its init $init shares the host's $k namespace"
  done
  # The new mount namespace starts as a copy of the host's, FUSE mounts of other programs included: a
  # copy would keep such a file system alive after its owner unmounts it, so they are detached here.
  local script="hostname n$n; findmnt -rn -o TARGET,FSTYPE 2>/dev/null |
    awk '\$2 ~ /^fuse/ {print \$1}' | sort -r | while read -r t; do umount -l \"\$t\" 2>/dev/null || true; done; set -e"
  for m in "${NODE_MOUNTS[@]}"; do
    set -- $m
    make_mount_point "$1"
    if [ "$2" = tmpfs ]; then
      script+="; mount -t tmpfs -o mode=0755,size=64m tmpfs $1"
    else
      mkdir -p "$LAB_DISK/n$n/${2#disk:}"
      script+="; mount --bind $LAB_DISK/n$n/${2#disk:} $1"
    fi
  done
  nsenter -t "$init" -m -u -p -- sh -c "$script" || die "node n$n: mounts failed"
}

# Start hamirrord on node N and wait (<= 20 s) until it answers.
node_start_daemon() {
  local n=$1 mod pid
  mod=$(module_name)
  node_spawn "$n" hamirrord.pid /var/log/hamirror/hamirrord.out \
    hamirrord --module "/etc/hamirror/modules/$mod" --node "n$n" --fs-bin "$BIN/hamirror-fs"
  pid=$(read_pid "$n" hamirrord.pid)
  # (Any failure means "not yet": `hamirror state` exits 2 while the admin socket is not up, which
  # wait_until would take for "give up".)
  daemon_answers() { node_run "$1" hamirror state >/dev/null 2>&1 || return 1; }
  if ! wait_until 20 daemon_answers "$n"; then
    echo "lab.sh: hamirrord on n$n does not answer; its output:" >&2
    node_run "$n" tail -n 30 /var/log/hamirror/hamirrord.out >&2 || true
    pid_alive "$pid" || die "hamirrord on n$n exited"
    die "hamirrord on n$n (pid $pid) does not answer within 20 s"
  fi
}

# Restart hamirrord on node N leaving the module running (SIGUSR2; docs/operations.md "Restarting
# hamirrord"): the old daemon hands the module over and exits, a new one adopts it (its log says so, or
# why it took the crash path). Prints how long no hamirrord ran (ms). LAB_RESTARTD_HOOK, if set, runs
# (with the node number) between the exit and the new start: tests use it to spoil the record.
node_restart_daemon() {  # node_restart_daemon N [--crash]
  local n=$1 pid t0 t1 sig=USR2
  [ "${2:-}" != --crash ] || sig=KILL
  pid=$(read_pid "$n" hamirrord.pid)
  pid_alive "$pid" || die "hamirrord on n$n is not running (lab.sh start n$n)"
  t0=$(date +%s%N)
  kill "-$sig" "$pid"
  # The daemon waits (<= 60 s) for a state it can hand over (no transition under way). Polled every
  # 20 ms: the new daemon must adopt the module within the lease (>= ~675 ms with the stock timings).
  local i deadline=$((SECONDS + 70)) exited=0
  for ((i = 0; i < 10000; i++)); do
    if ! pid_alive "$pid"; then exited=1; break; fi
    [ $SECONDS -lt $deadline ] || die "hamirrord on n$n (pid $pid) still runs 70 s after SIG$sig"
    sleep 0.02
  done
  [ "$exited" = 1 ] || die "hamirrord on n$n (pid $pid) did not exit after SIG$sig"
  [ -z "${LAB_RESTARTD_HOOK:-}" ] || "$LAB_RESTARTD_HOOK" "$n"
  node_start_daemon "$n"
  t1=$(date +%s%N)
  echo "n$n: SIG$sig to hamirrord pid $pid, exited; a new hamirrord answers $(((t1 - t0) / 1000000)) ms after the signal (its log says whether it adopted the module)"
}

# Power cut on node N: every process of the node dies at once, then its links go down (no ARP answer
# for an address it held). The mount namespace, its FUSE mount and tmpfs vanish with the last process.
node_power_off() {
  local n=$1 ns="${PREFIX}-n$1" init outer m
  init=$(node_init "$n" || true)
  outer=$(read_pid "$n" unshare.pid)
  if [ -n "$LAB_CG" ] && [ -f "$LAB_CG/n$n/cgroup.kill" ]; then
    echo 1 >"$LAB_CG/n$n/cgroup.kill"
  fi
  # Without a cgroup (and for the init's parent): the death of PID 1 kills the whole PID namespace.
  [ -z "$init" ] || kill -KILL "$init" 2>/dev/null || true
  [ -z "$outer" ] || kill -KILL "$outer" 2>/dev/null || true
  for m in $(ip -n "$ns" -o link show 2>/dev/null | awk -F': ' '$2 ~ /^eth/ {sub(/@.*/, "", $2); print $2}'); do
    ip -n "$ns" link set "$m" down
  done
  node_gone() {
    ! pid_alive "$init" && ! pid_alive "$outer" &&
      { [ -z "$LAB_CG" ] || [ ! -f "$LAB_CG/n$1/cgroup.procs" ] || [ -z "$(cat "$LAB_CG/n$1/cgroup.procs")" ]; }
  }
  wait_until 10 node_gone "$n" || { echo "lab.sh: node n$n: processes survive the power cut" >&2; return 1; }
  rm -f "$(node_dir "$n")"/*.pid
}

# node_state N: "<state> <sub_state>" of the module on node N ("unreachable" when hamirrord does not
# answer), from `hamirror state --json`.
node_state() {
  node_run "$1" hamirror state --json 2>/dev/null |
    python3 -c 'import json,sys; l=json.load(sys.stdin)["local"]; print(l["state"], l["sub_state"])' 2>/dev/null ||
    echo unreachable
}

# wait_state N STATE SECONDS: until node N is STATE (stop, wait, alone, prim, second) and ready.
# Gives up at once (status 2) when the module stopped (STOP is left only by a command: a start script
# failed, maxloop reached, ...) or hamirrord is gone.
wait_state() {
  state_is() {
    local s
    s=$(node_state "$1")
    [ "$s" = "$2 ready" ] && return 0
    [ "$2" != stop ] && [ "$s" = "stop ready" ] && return 2
    [ "$s" = unreachable ] && [ -z "$(node_init "$1")" ] && return 2
    return 1
  }
  wait_until "$3" state_is "$1" "$2"
}

# The end of node N's logs, for a failure report.
node_logs() {
  local n=$1 mod
  mod=$(module_name)
  [ -n "$(node_init "$n")" ] || { echo "--- n$n: not running"; return 0; }
  echo "--- n$n: state: $(node_state "$n")"
  echo "--- n$n: /var/log/hamirror/$mod.log (end)"
  node_run "$n" tail -n 25 "/var/log/hamirror/$mod.log" 2>/dev/null || true
  echo "--- n$n: /var/log/hamirror/hamirrord.out (end)"
  node_run "$n" tail -n 10 /var/log/hamirror/hamirrord.out 2>/dev/null || true
  if node_run "$n" test -s /var/log/hamirror/mysql-server.err 2>/dev/null; then
    echo "--- n$n: /var/log/hamirror/mysql-server.err (end)"
    node_run "$n" tail -n 15 /var/log/hamirror/mysql-server.err 2>/dev/null || true
  fi
}

# The module as installed on the nodes: VIRTUAL_TO_BE_DEFINED -> the lab's VIP, and the commented
# witness line (arg="WITNESS_TO_BE_DEFINED") made active with the client's address.
install_module() {
  local src=$1 dst=$2
  mkdir -p "$dst"
  cp -r "$src/." "$dst/"
  sed -i -e "s/VIRTUAL_TO_BE_DEFINED/$LAB_VIP/g" \
    -e "s|^\( *\)<splitbrain \(.*\)arg=\"WITNESS_TO_BE_DEFINED\"\(.*\)$|\1--><splitbrain \2arg=\"$LAB_CLIENT\"\3<!--|" \
    "$dst/conf/userconfig.xml"
}

write_cluster_xml() {
  cat >"$1" <<EOF
<cluster>
  <lans>
    <lan name="default">
      <node name="n1" addr="$(node_addr 1 0)"/>
      <node name="n2" addr="$(node_addr 2 0)"/>
    </lan>
  </lans>
</cluster>
EOF
}

# Each node's /etc/hamirror: cluster.xml, tls/, <module>/heartbeat.key, modules/<module>.
prepare_disks() {
  local module_src=$1 mod n etc
  mod=$(module_name)
  write_cluster_xml "$LAB_STATE/cluster.xml"
  "$BIN/hamirror-certs" --out "$LAB_STATE/pki" --cluster "$LAB_STATE/cluster.xml" >/dev/null ||
    die "hamirror-certs failed"
  for n in 1 2; do
    etc=$LAB_DISK/n$n/etc
    install -d -m 0755 "$etc" "$LAB_DISK/n$n/mysql" "$LAB_DISK/n$n/lib" "$LAB_DISK/n$n/log"
    cp "$LAB_STATE/cluster.xml" "$etc/cluster.xml"
    install -d -m 0700 "$etc/tls"
    cp "$LAB_STATE/pki/n$n/"* "$etc/tls/"
    install -m 0600 -D "$LAB_STATE/pki/heartbeat.key" "$etc/$mod/heartbeat.key"
    install_module "$module_src" "$etc/modules/$mod"
  done
}

cluster_fail() {
  LAB_SETTING_UP=0
  echo "lab.sh: $*" >&2
  for n in 1 2; do node_logs "$n" >&2 || true; done
  echo "lab.sh: tearing the lab down" >&2
  trap - ERR
  cmd_down -p "$PREFIX" >&2 || true
  exit 1
}

# First start: start on both, prim on n1, second on n2; PRIM/SECOND ready.
first_start() {
  local n out
  for n in 1 2; do
    out=$(node_run "$n" hamirror start 2>&1) || cluster_fail "hamirror start on n$n refused: $out"
  done
  for n in 1 2; do wait_state "$n" wait 30 || cluster_fail "n$n did not reach WAIT (Ready): it is $(node_state "$n") (limit 30 s)"; done
  out=$(node_run 1 hamirror prim 2>&1) || cluster_fail "hamirror prim on n1 refused: $out"
  # n2 may have joined on its own once n1 serves: `second` is then refused as "is SECOND".
  out=$(node_run 2 hamirror second 2>&1) || [[ $out == *"is SECOND"* ]] || cluster_fail "hamirror second on n2: $out"
  wait_state 1 prim 180 || cluster_fail "n1 did not reach PRIM (Ready): it is $(node_state 1) (limit 180 s)"
  wait_state 2 second 180 || cluster_fail "n2 did not reach SECOND (Ready): it is $(node_state 2) (limit 180 s)"
}

db_password() { cat "$LAB_STATE/mysql_password"; }

# The database user of the lab: all privileges, from anywhere (the client namespace).
create_db_user() {
  local pw sql
  pw=$(db_password)
  sql="CREATE USER IF NOT EXISTS '$LAB_DB_USER'@'%' IDENTIFIED BY '$pw';"
  sql+=" GRANT ALL PRIVILEGES ON *.* TO '$LAB_DB_USER'@'%' WITH GRANT OPTION;"
  node_run 1 mariadb --no-defaults -S /run/mysqld/mysqld.sock -u root -e "$sql" ||
    cluster_fail "could not create the database user on n1"
  vip_serves() {
    ip netns exec "${PREFIX}-client" mariadb --no-defaults -h "$LAB_VIP" -P 3306 -u "$LAB_DB_USER" -p"$pw" \
      --connect-timeout=2 -N -e 'SELECT 1' >/dev/null 2>&1
  }
  wait_until 30 vip_serves || cluster_fail "MariaDB does not answer on $LAB_VIP:3306 from the client"
}

cmd_up_cluster() {  # cmd_up_cluster MODULE_DIR MYSQL(0|1) [lab options]
  local module_src=$1 mysql=$2
  shift 2
  [ -f "$module_src/conf/userconfig.xml" ] || die "$module_src/conf/userconfig.xml: no such file"
  module_src=$(cd "$module_src" && pwd)
  for b in hamirrord hamirror hamirror-fs hamirror-certs; do
    [ -x "$BIN/$b" ] || die "$BIN/$b not built (cmake --build build)"
  done
  local tools=(nsenter unshare setsid findmnt python3 openssl)
  [ "$mysql" = 0 ] || tools+=(mariadbd mariadb-install-db mariadb mysqladmin)
  for b in "${tools[@]}"; do
    PATH=$NODE_PATH command -v "$b" >/dev/null || die "$b not found (scripts/install-deps.sh installs it)"
  done
  cmd_up -n 2 -l 1 "$@"
  lab_paths
  trap 'cluster_fail "setup failed (line $LINENO)"' ERR
  trap 'cluster_fail "interrupted"' INT TERM
  LAB_SETTING_UP=1
  [ ! -e "$LAB_STATE" ] || rm -rf "$LAB_STATE"
  [ ! -e "$LAB_DISK" ] || rm -rf "$LAB_DISK"
  mkdir -p "$LAB_STATE" "$LAB_DISK"
  basename "$module_src" >"$LAB_STATE/module"
  echo "$mysql" >"$LAB_STATE/mysql"
  head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$LAB_STATE/mysql_password"
  if [ -n "$LAB_CG" ]; then mkdir -p "$LAB_CG" || LAB_CG=; fi
  [ -n "$LAB_CG" ] || echo "lab.sh: no writable cgroup2 hierarchy: a node's processes are tracked by its PID namespace only" >&2
  prepare_disks "$module_src"
  for n in 1 2; do node_power_on "$n"; done
  for n in 1 2; do node_start_daemon "$n"; done
  first_start
  [ "$mysql" = 0 ] || create_db_user
  LAB_SETTING_UP=0
  trap - ERR INT TERM
  echo "lab '$PREFIX' up: n1 PRIM, n2 SECOND, module $(module_name), VIP $LAB_VIP"
  [ "$mysql" = 0 ] || echo "MariaDB on $LAB_VIP:3306 (lab.sh env: user and password)"
}

cmd_env() {
  lab_paths
  if is_ssh_lab; then
    printf 'VIP=%s\nN1=%s\nN2=%s\nCLIENT=%s\nSSH_DIR=%s\n' "$LAB_VIP" "$(node_addr 1 0)" "$(node_addr 2 0)" \
      "$LAB_CLIENT" "$LAB_STATE/ssh"
    return 0
  fi
  is_cluster || die "lab '$PREFIX' runs no cluster (lab.sh up --mysql)"
  echo "VIP=$LAB_VIP"
  echo "N1=$(node_addr 1 0)"
  echo "N2=$(node_addr 2 0)"
  echo "CLIENT=$LAB_CLIENT"
  if [ "$(cat "$LAB_STATE/mysql")" = 1 ]; then
    echo "MYSQL_PORT=3306"
    echo "MYSQL_USER=$LAB_DB_USER"
    echo "MYSQL_PASSWORD=$(db_password)"
  fi
}

check_node() { [[ "$1" =~ ^n[12]$ ]] || die "NODE must be n1 or n2, got '$1'"; }

cmd_kill() {
  need_root
  lab_paths
  is_cluster || die "lab '$PREFIX' runs no cluster"
  check_node "$1"
  node_power_off "${1#n}" || die "$1: power cut incomplete"
  echo "$1: power cut (every process killed, links down)"
}

# Boot node N again: namespaces, mounts, hamirrord, `hamirror start` (the module rejoins as its
# configuration says; with defaultprim="alone" it becomes SECOND after the resync if its peer serves).
cmd_start() {
  need_root
  lab_paths
  is_cluster || die "lab '$PREFIX' runs no cluster"
  check_node "$1"
  local n=${1#n} out
  node_power_on "$n"
  node_start_daemon "$n"
  # A module with <service boot="on"> started itself.
  if [ "$(node_state "$n")" = "stop ready" ] || [ "$(node_state "$n")" = "stop transient" ]; then
    out=$(node_run "$n" hamirror start 2>&1) || die "hamirror start on $1: $out"
  fi
  echo "$1: booted, hamirrord started, module started ($(node_state "$n"))"
}

cmd_wait() {  # cmd_wait NODE STATE [SECONDS]
  lab_paths
  check_node "$1"
  [[ "$2" =~ ^(stop|wait|alone|prim|second)$ ]] || die "STATE: stop, wait, alone, prim or second"
  local secs=${3:-120}
  check_num seconds "$secs"
  wait_state "${1#n}" "$2" "$secs" || { node_logs "${1#n}" >&2; die "$1 is $(node_state "${1#n}"), not $2 ready after $secs s"; }
  echo "$1: $2 (ready)"
}

cmd_state() {
  lab_paths
  is_cluster || die "lab '$PREFIX' runs no cluster"
  check_node "$1"
  if [ -z "$(node_init "${1#n}")" ]; then echo off; else node_state "${1#n}"; fi
}

# Who holds the VIP, read from the nodes' interfaces (not from what hamirrord says).
cmd_holder() {
  lab_paths
  is_cluster || die "lab '$PREFIX' runs no cluster"
  local n
  for n in 1 2; do
    ip -n "${PREFIX}-n$n" -o addr show 2>/dev/null | grep -q " $LAB_VIP/" && echo "n$n"
  done
  return 0
}

# Everything of the cluster: nodes powered off, cgroups, state and disk directories.
down_cluster() {
  lab_paths
  local n
  [ ! -f "$LAB_STATE/ssh-lab" ] || down_ssh_nodes
  if [ -d "$LAB_STATE" ]; then
    for n in 1 2; do [ ! -d "$(node_dir "$n")" ] || node_power_off "$n" || true; done
  fi
  if [ -n "$LAB_CG" ] && [ -d "$LAB_CG" ]; then
    for n in "$LAB_CG"/n*; do
      [ -d "$n" ] || continue
      [ ! -f "$n/cgroup.kill" ] || echo 1 >"$n/cgroup.kill"
      cg_empty() { [ -z "$(cat "$1/cgroup.procs" 2>/dev/null)" ]; }
      wait_until 10 cg_empty "$n" || echo "lab.sh: processes left in $n" >&2
      rmdir "$n" 2>/dev/null || true
    done
    rmdir "$LAB_CG" 2>/dev/null || true
  fi
  rm -rf "$LAB_STATE" "$LAB_DISK"
  remove_mount_points
  rmdir "$LAB_STATE_ROOT" "$LAB_DISK_ROOT" 2>/dev/null || true
}
