#!/usr/bin/env bash
# Network-namespace test lab for hamirror (needs root). Same layout as tests/support/netns.h NetLab:
#   <prefix>-br        holds one bridge per lan (br0, br1, ...)
#   <prefix>-n1..nN    node i: eth<k> = 198.18.k.(10+i)/24 on lan k
#   <prefix>-client    eth0 = 198.18.0.100/24 on lan 0 only
# Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking range) and exist only in these namespaces.
#
#   lab.sh up [-n NODES] [-l LANS] [-p PREFIX]   build the network only (fails if it already exists)
#   lab.sh up --mysql [-p PREFIX]                a two-node cluster: n1 PRIM, n2 SECOND, MariaDB on the VIP
#   lab.sh up --module DIR [-p PREFIX]           the same with any module directory
#   lab.sh up --ssh [-p PREFIX]                  two bare hosts n1, n2 (own root, systemd, sshd on lan 0,
#                                                MariaDB installed, no hamirror) for deploy/ansible
#   lab.sh down [-p PREFIX]                      delete everything it made (idempotent)
#   lab.sh env                                   VIP=, N1=, N2=, CLIENT=, MYSQL_PORT=, MYSQL_USER=, MYSQL_PASSWORD=
#                                                (SSH lab: VIP=, N1=, N2=, CLIENT=, SSH_DIR=)
#   lab.sh kill NODE                             power cut: every process of NODE (n1, n2) killed at once
#   lab.sh start NODE                            boot NODE again: hamirrord, `hamirror start`
#   lab.sh restartd NODE [--crash]               restart NODE's hamirrord leaving the module running: SIGUSR2
#                                                (hand over, exit), then a new hamirrord that adopts the module;
#                                                --crash: SIGKILL instead (no hand-over: the crash path)
#   lab.sh wait NODE STATE [SECONDS]             until NODE is STATE (stop|wait|alone|prim|second) ready
#   lab.sh state NODE                            "<state> <sub_state>" (e.g. "prim ready"), "unreachable", "off"
#   lab.sh holder                                the nodes holding the VIP now, one per line (none: empty)
#   lab.sh cut NODE LAN | heal NODE LAN          bridge-side link of node's lan down / up (NODE: 1 or n1)
#   lab.sh loss NODE LAN PERCENT                 drop PERCENT of the frames the node sends on LAN (0 removes)
#   lab.sh delay MS [LAN]                        delay traffic between nodes on LAN (default 0) by MS, each way
#   lab.sh linkstats NODE LAN                    linkem's counters on that link (from_node, delayed, dropped...)
#   lab.sh exec NAME CMD...                      run CMD in <prefix>-NAME (NAME: n1, client, br, ...); in a
#                                                cluster, n1/n2 = the node's network, mount and PID namespaces
#   lab.sh addr NODE LAN                         print the node's address on that lan
#   lab.sh status [-p PREFIX]                    namespaces, addresses, links, cluster states
# PREFIX defaults to $HAMIRROR_LAB or "hmlab". Cluster: docs/quickstart.md; lab state in
# /run/hamirror-lab/PREFIX, node disks in /var/lib/hamirror-lab/PREFIX (both removed by down).
set -Eeuo pipefail

PREFIX=${HAMIRROR_LAB:-hmlab}
NODES=2
LANS=2

die() {
  # While `up` builds a cluster, any failure reports the nodes' logs and removes everything.
  if [ "${LAB_SETTING_UP:-0}" = 1 ]; then LAB_SETTING_UP=0; cluster_fail "$*"; fi
  echo "lab.sh: $*" >&2
  exit 1
}
# shellcheck source=lab-cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/lab-cluster.sh"
# shellcheck source=lab-ssh.sh
source "$(dirname "${BASH_SOURCE[0]}")/lab-ssh.sh"
need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root"; }
node_addr() { echo "198.18.$2.$((10 + $1))"; }
lab_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${PREFIX}-(br|client|n[0-9]+)$" || true; }
check_num() { [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be a number, got '$2'"; }

parse_opts() {
  OPTIND=1
  while getopts "n:l:p:" opt; do
    case $opt in
      n) check_num nodes "$OPTARG"; NODES=$OPTARG ;;
      l) check_num lans "$OPTARG"; LANS=$OPTARG ;;
      p) PREFIX=$OPTARG ;;
      *) die "unknown option" ;;
    esac
  done
  [ "$NODES" -ge 1 ] && [ "$NODES" -le 200 ] || die "1..200 nodes"
  [ "$LANS" -ge 1 ] && [ "$LANS" -le 8 ] || die "1..8 lans"
  [[ "$PREFIX" =~ ^[A-Za-z0-9_.-]{1,40}$ ]] || die "bad prefix '$PREFIX'"
}

attach() {  # attach NS PORT LAN ADDR
  local ns=$1 port=$2 lan=$3 addr=$4 br="${PREFIX}-br"
  ip -n "$br" link add "$port" type veth peer name "eth$lan" netns "$ns"
  ip -n "$br" link set "$port" master "br$lan" up
  ip -n "$ns" addr add "$addr/24" dev "eth$lan"
  ip -n "$ns" link set "eth$lan" up
}

cmd_up() {
  parse_opts "$@"
  need_root
  [ -z "$(lab_namespaces)" ] || die "lab '$PREFIX' already exists; run: $0 down -p $PREFIX"
  # Anything failing half-way is undone: never leave a half-built lab behind.
  trap 'echo "lab.sh: setup failed, tearing down" >&2; cmd_down -p "$PREFIX"' ERR
  local br="${PREFIX}-br"
  ip netns add "$br"
  ip -n "$br" link set lo up
  for ((lan = 0; lan < LANS; lan++)); do
    ip -n "$br" link add "br$lan" type bridge stp_state 0 forward_delay 0
    ip -n "$br" link set "br$lan" up
  done
  for ((i = 1; i <= NODES; i++)); do
    local ns="${PREFIX}-n$i"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    for ((lan = 0; lan < LANS; lan++)); do attach "$ns" "n${i}l${lan}" "$lan" "$(node_addr "$i" "$lan")"; done
  done
  ip netns add "${PREFIX}-client"
  ip -n "${PREFIX}-client" link set lo up
  attach "${PREFIX}-client" c0 0 198.18.0.100
  trap - ERR
  echo "lab '$PREFIX' up: $NODES nodes, $LANS lans, client 198.18.0.100"
}

cmd_down() {
  parse_opts "$@"
  need_root
  down_cluster
  local ns pid
  for ns in $(lab_namespaces); do
    # Processes still inside would keep the namespace alive after its name is gone: kill them by PID.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  # Bounded wait until the names are gone (deletion is synchronous, this only guards against races).
  for _ in $(seq 1 50); do
    if [ -z "$(lab_namespaces)" ]; then
      echo "lab '$PREFIX' down: no namespace, process or mount of it left"
      return 0
    fi
    sleep 0.1
  done
  die "could not delete: $(lab_namespaces | tr '\n' ' ')"
}

cmd_link() {  # cmd_link up|down NODE LAN
  need_root
  local node=${2#n}
  check_num node "$node"; check_num lan "$3"
  ip -n "${PREFIX}-br" link set "n${node}l${3}" "$1"
}

# Delay and loss come from scripts/lab/linkem.py (user space: many kernels lack sch_netem), one per
# node link that has any, in the bridge namespace: the link's bridge-side end n<N>l<L> is taken off
# the bridge and linkem forwards between it and a veth lk<N>l<L> whose other end lb<N>l<L> is on the
# bridge. Settings live in the lab state (loss per node link, one delay for the lab); each change
# rewrites the link's linkem settings file and signals it (SIGHUP); a link with neither goes back on
# the bridge directly. linkem drops (loss) frames from the node, and delays IPv4 frames from the node
# to the other nodes' addresses on that lan (the client's traffic is not delayed).
linkem_dir() { echo "${LAB_STATE_ROOT:-/run/hamirror-lab}/$PREFIX/linkem"; }

linkem_stop() {  # linkem_stop NODE LAN: link back on the bridge, forwarder gone
  local node=$1 lan=$2 br="${PREFIX}-br" dir pid
  dir=$(linkem_dir)
  # The link goes back on the bridge first (two quick commands): deleting a veth can take seconds on a
  # loaded machine, and the heartbeats must not notice any of it.
  ip -n "$br" link set "lb${node}l${lan}" down 2>/dev/null || true
  ip -n "$br" link set "n${node}l${lan}" promisc off master "br$lan" 2>/dev/null || true
  pid=$(cat "$dir/n$node-$lan.pid" 2>/dev/null || true)
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/n$node-$lan.pid" "$dir/n$node-$lan.conf" "$dir/n$node-$lan.stats"
  ip -n "$br" link del "lk${node}l${lan}" 2>/dev/null || true
}

linkem_start() {  # linkem_start NODE LAN: the forwarder on the node's link (settings file written)
  local node=$1 lan=$2 br="${PREFIX}-br" dir pid
  dir=$(linkem_dir)
  # Everything slow (the veth pair, the forwarder's start) happens while the link is still bridged;
  # the switch itself is two quick commands.
  ip -n "$br" link add "lk${node}l${lan}" type veth peer name "lb${node}l${lan}"
  ip -n "$br" link set "lb${node}l${lan}" master "br$lan"
  ip -n "$br" link set "lk${node}l${lan}" promisc on up
  # A wire does not pause: linkem runs before the lab's busy daemons and databases (nice -10).
  setsid nice -n -10 ip netns exec "$br" python3 "$REPO/scripts/lab/linkem.py" "n${node}l${lan}" "lk${node}l${lan}" \
    "$dir/n$node-$lan.conf" "$dir/n$node-$lan.stats" </dev/null >>"$dir/linkem.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/n$node-$lan.pid"
  local i
  for ((i = 0; i < 50; i++)); do [ -s "$dir/n$node-$lan.stats" ] && break; sleep 0.1; done
  if [ ! -s "$dir/n$node-$lan.stats" ]; then
    linkem_stop "$node" "$lan"
    die "linkem on n$node lan $lan did not start: $(tail -3 "$dir/linkem.log")"
  fi
  ip -n "$br" link set "n${node}l${lan}" nomaster promisc on
  ip -n "$br" link set "lb${node}l${lan}" up
}

apply_linkem() {  # apply_linkem NODE LAN
  local node=$1 lan=$2 dir loss=0 delay=0 delay_lan=-1 j addrs=
  dir=$(linkem_dir)
  mkdir -p "$dir"
  [ -f "$dir/loss-n$node-$lan" ] && loss=$(cat "$dir/loss-n$node-$lan")
  [ -f "$dir/delay" ] && read -r delay delay_lan <"$dir/delay"
  [ "$delay_lan" = "$lan" ] || delay=0
  if [ "$loss" -eq 0 ] && [ "$delay" -eq 0 ]; then
    linkem_stop "$node" "$lan"
    return 0
  fi
  for ((j = 1; j <= $(node_count); j++)); do
    [ "$j" -eq "$node" ] || addrs+="${addrs:+,}$(node_addr "$j" "$lan")"
  done
  echo "$delay $loss $addrs" >"$dir/n$node-$lan.conf"
  local pid
  pid=$(cat "$dir/n$node-$lan.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -HUP "$pid"
  else
    linkem_start "$node" "$lan"
  fi
}

node_count() { ip netns list 2>/dev/null | awk '{print $1}' | grep -cE "^${PREFIX}-n[0-9]+$" || true; }

cmd_loss() {
  need_root
  local node=${1#n}
  check_num node "$node"; check_num lan "$2"; check_num percent "$3"
  ip netns list | awk '{print $1}' | grep -qx "${PREFIX}-n$node" || die "no node n$node in lab '$PREFIX'"
  [ "$3" -le 100 ] || die "percent must be 0..100"
  mkdir -p "$(linkem_dir)"
  echo "$3" >"$(linkem_dir)/loss-n$node-$2"
  apply_linkem "$node" "$2"
}

cmd_delay() {  # cmd_delay MS [LAN]
  need_root
  local ms=$1 lan=${2:-0} old_lan=-1 j
  check_num ms "$ms"; check_num lan "$lan"
  [ -n "$(lab_namespaces)" ] || die "lab '$PREFIX' does not exist"
  mkdir -p "$(linkem_dir)"
  [ -f "$(linkem_dir)/delay" ] && read -r _ old_lan <"$(linkem_dir)/delay"
  echo "$ms $lan" >"$(linkem_dir)/delay"
  for ((j = 1; j <= $(node_count); j++)); do
    apply_linkem "$j" "$lan"
    if [ "$old_lan" -ge 0 ] && [ "$old_lan" != "$lan" ]; then apply_linkem "$j" "$old_lan"; fi
  done
  echo "delay ${ms} ms each way between nodes on lan $lan"
}

cmd_linkstats() {  # cmd_linkstats NODE LAN: linkem's counters, or nothing when the link has none
  local node=${1#n}
  check_num node "$node"; check_num lan "$2"
  cat "$(linkem_dir)/n$node-$2.stats" 2>/dev/null || true
}

cmd_status() {
  parse_opts "$@"
  local ns n
  for ns in $(lab_namespaces); do
    echo "== $ns"
    ip -n "$ns" -br addr | grep -v '^lo ' || true
  done
  lab_paths
  if is_ssh_lab; then
    for n in 1 2; do
      if [ -n "$(ssh_node_init "$n")" ]; then echo "n$n: running (systemd $(ssh_node_init "$n")), ssh root@$(node_addr "$n" 0)"
      else echo "n$n: not running"; fi
    done
  fi
  if is_cluster; then
    for n in 1 2; do
      if [ -n "$(node_init "$n")" ]; then echo "n$n: running, module $(module_name): $(node_state "$n")"
      else echo "n$n: powered off"; fi
    done
  fi
}

cmd_restartd() {
  need_root
  lab_paths
  is_cluster || die "lab '$PREFIX' runs no cluster"
  check_node "$1"
  [ $# -eq 1 ] || [ "$2" = --crash ] || die "usage: restartd NODE [--crash]"
  node_restart_daemon "${1#n}" "${2:-}"
}

cmd_up_any() {
  case ${1:-} in
    --mysql) shift; cmd_up_cluster "$REPO/scripts/modules/mysql" 1 "$@" ;;
    --ssh) shift; cmd_up_ssh "$@" ;;
    --module) [ $# -ge 2 ] || die "usage: up --module DIR"; local dir=$2; shift 2; cmd_up_cluster "$dir" 0 "$@" ;;
    *) cmd_up "$@" ;;
  esac
}

cmd_exec() {
  local name=$1
  shift
  lab_paths
  if is_ssh_lab && [[ "$name" =~ ^n[12]$ ]]; then
    ssh_node_run "${name#n}" "$@"
    exit $?
  fi
  # The SSH lab's key and known hosts, for deploy/ansible/inventory.lab.ini (run from the client).
  is_ssh_lab && export HAMIRROR_LAB_SSH="$LAB_STATE/ssh"
  if is_cluster && [[ "$name" =~ ^n[12]$ ]]; then
    node_run "${name#n}" "$@"
    exit $?
  fi
  exec ip netns exec "${PREFIX}-$name" env PATH="$NODE_PATH" "$@"
}

usage() { awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; }

main() {
  [ $# -ge 1 ] || { usage; exit 2; }
  local cmd=$1
  shift
  case $cmd in
    up) cmd_up_any "$@" ;;
    down) cmd_down "$@" ;;
    env) [ $# -eq 0 ] || die "usage: env"; cmd_env ;;
    kill) [ $# -eq 1 ] || die "usage: kill NODE"; cmd_kill "$1" ;;
    start) [ $# -eq 1 ] || die "usage: start NODE"; cmd_start "$1" ;;
    restartd) [ $# -ge 1 ] && [ $# -le 2 ] || die "usage: restartd NODE [--crash]"; cmd_restartd "$@" ;;
    state) [ $# -eq 1 ] || die "usage: state NODE"; cmd_state "$1" ;;
    holder) [ $# -eq 0 ] || die "usage: holder"; cmd_holder ;;
    wait) [ $# -ge 2 ] && [ $# -le 3 ] || die "usage: wait NODE STATE [SECONDS]"; cmd_wait "$@" ;;
    cut) [ $# -eq 2 ] || die "usage: cut NODE LAN"; cmd_link down "$@" ;;
    heal) [ $# -eq 2 ] || die "usage: heal NODE LAN"; cmd_link up "$@" ;;
    loss) [ $# -eq 3 ] || die "usage: loss NODE LAN PERCENT"; cmd_loss "$@" ;;
    delay) [ $# -ge 1 ] && [ $# -le 2 ] || die "usage: delay MS [LAN]"; cmd_delay "$@" ;;
    linkstats) [ $# -eq 2 ] || die "usage: linkstats NODE LAN"; cmd_linkstats "$@" ;;
    exec) [ $# -ge 2 ] || die "usage: exec NAME CMD..."; cmd_exec "$@" ;;
    addr) [ $# -eq 2 ] || die "usage: addr NODE LAN"; node_addr "${1#n}" "$2" ;;
    status) cmd_status "$@" ;;
    -h | --help | help) usage ;;
    *) die "unknown command '$cmd'" ;;
  esac
}

main "$@"
