#!/usr/bin/env bash
# Network-namespace test lab for hamirror (needs root). Same layout as tests/support/netns.h NetLab:
#   <prefix>-br        holds one bridge per lan (br0, br1, ...)
#   <prefix>-n1..nN    node i: eth<k> = 198.18.k.(10+i)/24 on lan k
#   <prefix>-client    eth0 = 198.18.0.100/24 on lan 0 only
# Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking range) and exist only in these namespaces.
#
#   lab.sh up [-n NODES] [-l LANS] [-p PREFIX]   build it (fails if it already exists)
#   lab.sh down [-p PREFIX]                      delete everything it made (idempotent)
#   lab.sh cut NODE LAN | heal NODE LAN          bridge-side link of node's lan down / up
#   lab.sh loss NODE LAN PERCENT                 netem loss on node's interface (0 removes; needs sch_netem)
#   lab.sh exec NAME CMD...                      run CMD in <prefix>-NAME (NAME: n1, client, br, ...)
#   lab.sh addr NODE LAN                         print the node's address on that lan
#   lab.sh status [-p PREFIX]                    namespaces, addresses and links
# PREFIX defaults to $HAMIRROR_LAB or "hmlab".
set -Eeuo pipefail

PREFIX=${HAMIRROR_LAB:-hmlab}
NODES=2
LANS=2

die() { echo "lab.sh: $*" >&2; exit 1; }
need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root"; }
node_addr() { echo "198.18.$2.$((10 + $1))"; }
lab_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${PREFIX}-(br|client|n[0-9]+)$" || true; }
check_num() { [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be a number, got '$2'"; }

parse_opts() {
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
  local ns pid
  for ns in $(lab_namespaces); do
    # Processes still inside would keep the namespace alive after its name is gone: kill them by PID.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  # Bounded wait until the names are gone (deletion is synchronous, this only guards against races).
  for _ in $(seq 1 50); do
    [ -z "$(lab_namespaces)" ] && return 0
    sleep 0.1
  done
  die "could not delete: $(lab_namespaces | tr '\n' ' ')"
}

cmd_link() {  # cmd_link up|down NODE LAN
  need_root
  check_num node "$2"; check_num lan "$3"
  ip -n "${PREFIX}-br" link set "n${2}l${3}" "$1"
}

cmd_loss() {
  need_root
  check_num node "$1"; check_num lan "$2"; check_num percent "$3"
  local ns="${PREFIX}-n$1"
  if [ "$3" -eq 0 ]; then
    tc -n "$ns" qdisc del dev "eth$2" root 2>/dev/null || true
  else
    tc -n "$ns" qdisc replace dev "eth$2" root netem loss "$3%" || die "netem unavailable (sch_netem)?"
  fi
}

cmd_status() {
  parse_opts "$@"
  local ns
  for ns in $(lab_namespaces); do
    echo "== $ns"
    ip -n "$ns" -br addr | grep -v '^lo ' || true
  done
}

main() {
  [ $# -ge 1 ] || { sed -n '2,18p' "$0"; exit 2; }
  local cmd=$1
  shift
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    cut) [ $# -eq 2 ] || die "usage: cut NODE LAN"; cmd_link down "$@" ;;
    heal) [ $# -eq 2 ] || die "usage: heal NODE LAN"; cmd_link up "$@" ;;
    loss) [ $# -eq 3 ] || die "usage: loss NODE LAN PERCENT"; cmd_loss "$@" ;;
    exec) [ $# -ge 2 ] || die "usage: exec NAME CMD..."; local name=$1; shift; exec ip netns exec "${PREFIX}-$name" "$@" ;;
    addr) [ $# -eq 2 ] || die "usage: addr NODE LAN"; node_addr "$1" "$2" ;;
    status) cmd_status "$@" ;;
    -h | --help | help) sed -n '2,18p' "$0" ;;
    *) die "unknown command '$cmd'" ;;
  esac
}

main "$@"
