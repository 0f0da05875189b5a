#!/usr/bin/env bash
# hamirror demo: a two-server MariaDB cluster on this machine (network namespaces), clients on a virtual
# IP, failures you cause yourself. docs/quickstart.md walks through it step by step.
#
#   sudo scripts/demo.sh          # installs packages, builds, starts the cluster, prints the guide
#   sudo scripts/demo.sh guide    # prints the guide again
#   sudo scripts/demo.sh down     # removes everything the demo made
#   sudo scripts/demo.sh pair     # the data path alone: a replicated pair of directories (no manager)
#   SKIP_DEPS=1 SKIP_BUILD=1 scripts/demo.sh   # without apt-get / cmake
# The cluster is scripts/lab/lab.sh's default lab ("hmlab"), so the guide's lab.sh commands need no option.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
LAB=scripts/lab/lab.sh
export HAMIRROR_LAB=hmlab

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

guide() {
  local vip user pw
  eval "$("$LAB" env)"
  vip=$VIP user=$MYSQL_USER pw=$MYSQL_PASSWORD
  cat <<GUIDE

The cluster runs: two nodes n1 ($N1, primary) and n2 ($N2, secondary) on one machine, MariaDB's
/var/lib/mysql replicated synchronously from n1 to n2, MariaDB reachable on the virtual IP $vip.
Each node has its own network, mount and process namespaces: inside, paths are those of a real server.

1. Connect to MariaDB on the VIP from the client namespace ($CLIENT), write something:
     $LAB exec client mariadb -h $vip -u $user -p$pw
     > CREATE DATABASE demo; CREATE TABLE demo.t (id INT PRIMARY KEY, v TEXT);
     > INSERT INTO demo.t VALUES (1, 'written on n1'); SELECT @@hostname;

2. Both nodes, as each sees the pair (state, data, VIP, heartbeats, replication):
     $LAB exec n1 hamirror state -v
     $LAB exec n2 ls -l /var/lib/mysql/demo          # the replicated files on the secondary

3. A failover: cut n1's power (every process of n1 killed at once):
     $LAB kill n1
     $LAB exec n2 hamirror state -v                  # n2 ALONE, holds the VIP; "last failover" says how long
     $LAB exec client mariadb -h $vip -u $user -p$pw -e 'SELECT @@hostname, v FROM demo.t'

4. n1 comes back: boots, resynchronises what it missed, becomes SECOND:
     $LAB start n1
     $LAB exec n1 hamirror state -w                  # watch the resync (Ctrl-C to leave); or: $LAB wait n1 second

5. Swap back (a planned move: MariaDB stops cleanly on n2 and starts on n1):
     $LAB exec n2 hamirror swap
     $LAB wait n1 prim
     $LAB exec client mariadb -h $vip -u $user -p$pw -e 'SELECT @@hostname'

Logs: $LAB exec n1 hamirror log (module log), $LAB exec n1 cat /var/log/hamirror/mysql-server.err (MariaDB).
Everything else: $LAB help, docs/quickstart.md.

6. Remove everything (namespaces, processes, mounts, data):
     scripts/demo.sh down
GUIDE
}

[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root (namespaces, FUSE mounts, MariaDB)" >&2; exit 1; }
case ${1:-up} in
  pair) shift; exec bash "$REPO/scripts/demo-pair.sh" "$@" ;;
  down) exec "$LAB" down ;;
  guide) guide; exit 0 ;;
  up) ;;
  *) echo "usage: scripts/demo.sh [up|guide|down|pair]" >&2; exit 64 ;;
esac

step "1. Installing dependencies (scripts/install-deps.sh)"
if [ "${SKIP_DEPS:-0}" = 1 ]; then echo "skipped (SKIP_DEPS=1)"; else bash scripts/install-deps.sh; fi

step "2. Building hamirror (CMake, Release, into build/)"
if [ "${SKIP_BUILD:-0}" = 1 ]; then
  echo "skipped (SKIP_BUILD=1)"
else
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build --target hamirrord hamirror hamirror-fs hamirror-certs -j "$(nproc)"
fi

step "3. Starting the cluster: $LAB up --mysql (certificates, both nodes, MariaDB on the VIP)"
if [ -n "$(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$HAMIRROR_LAB-" || true)" ]; then
  echo "a demo cluster already runs (scripts/demo.sh down removes it); its guide:"
else
  "$LAB" up --mysql
fi
guide
