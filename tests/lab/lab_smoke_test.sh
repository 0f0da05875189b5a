#!/usr/bin/env bash
# Smoke test of scripts/lab/lab.sh's cluster (ctest label "lab", root, MariaDB): `up --mysql` gives
# n1 PRIM / n2 SECOND with MariaDB on the VIP; a row written through the VIP from the client namespace
# is served by n2 after n1's power cut; n1 boots back as SECOND; `down` leaves no namespace, mount,
# process, cgroup or directory behind. Exit 77 = skipped (not root, no MariaDB).
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
LAB="$REPO/scripts/lab/lab.sh"
export HAMIRROR_LAB=${HAMIRROR_LAB:-hmsmoke$$}
PATH=$PATH:/usr/sbin:/sbin
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null || { echo "SKIP: no MariaDB"; exit 77; }

fail() { echo "FAIL: $*" >&2; "$LAB" status >&2 2>&1 || true; exit 1; }
step() { printf '== %s\n' "$*"; }
cleanup() { "$LAB" down >/dev/null 2>&1 || true; }
trap cleanup EXIT

step "up --mysql"
"$LAB" up --mysql || fail "lab.sh up --mysql"

step "env"
env_out=$("$LAB" env) || fail "lab.sh env"
echo "$env_out"
for k in VIP N1 N2 MYSQL_PORT MYSQL_USER MYSQL_PASSWORD; do
  grep -qE "^$k=[^[:space:]]+$" <<<"$env_out" || fail "env has no $k="
done
eval "$env_out"
sql() {  # sql STATEMENTS: through the VIP, from the client namespace
  "$LAB" exec client mariadb --no-defaults -h "$VIP" -P "$MYSQL_PORT" -u "$MYSQL_USER" -p"$MYSQL_PASSWORD" \
    --connect-timeout=2 -N -B -e "$1"
}

step "states: n1 PRIM (state -lq 3), n2 SECOND (4)"
"$LAB" exec n1 hamirror state -lq; [ $? -eq 3 ] || fail "n1 is not PRIM"
"$LAB" exec n2 hamirror state -lq; [ $? -eq 4 ] || fail "n2 is not SECOND"

step "the installed module passes confcheck on both nodes"
for n in n1 n2; do
  "$LAB" exec $n hamirror confcheck /etc/hamirror/modules/mysql || fail "confcheck on $n"
done

step "a row through the VIP"
token="smoke-$$-$RANDOM"
sql "CREATE DATABASE smoke; CREATE TABLE smoke.t (id INT PRIMARY KEY, v VARCHAR(64)) ENGINE=InnoDB;
     INSERT INTO smoke.t VALUES (1, '$token')" || fail "write through the VIP"
[ "$(sql 'SELECT @@hostname')" = n1 ] || fail "the VIP is not served by n1"

step "n2's /var/lib/mysql holds the replicated files"
listing=$("$LAB" exec n2 ls /var/lib/mysql) || fail "exec n2 ls"
for f in ibdata1 mysql smoke; do grep -qx "$f" <<<"$listing" || fail "n2's /var/lib/mysql has no $f: $listing"; done
"$LAB" exec n2 ls /var/lib/mysql/smoke | grep -qx t.ibd || fail "n2 has no smoke/t.ibd"

step "kill n1: n2 serves the row on the VIP"
start=$(date +%s%N)
"$LAB" kill n1 || fail "lab.sh kill n1"
served=
for ((i = 0; i < 300; i++)); do
  got=$(sql "SELECT v FROM smoke.t WHERE id = 1" 2>/dev/null) && [ "$got" = "$token" ] && { served=1; break; }
  [ $(( ($(date +%s%N) - start) / 1000000000 )) -lt 60 ] || break
  sleep 0.2
done
[ -n "$served" ] || fail "the row is not served on the VIP within 60 s of the kill"
echo "served by $(sql 'SELECT @@hostname') $(( ($(date +%s%N) - start) / 1000000 )) ms after the kill"
[ "$(sql 'SELECT @@hostname')" = n2 ] || fail "the VIP is not served by n2"
"$LAB" exec n1 true 2>/dev/null && fail "n1 still runs processes after kill"

step "start n1: back as SECOND"
"$LAB" start n1 || fail "lab.sh start n1"
"$LAB" wait n1 second 120 || fail "n1 is not SECOND (Ready) within 120 s"
"$LAB" exec n2 hamirror state -lq; [ $? -eq 3 ] || fail "n2 is not PRIM once n1 is back"

step "down leaves nothing behind"
state=/run/hamirror-lab/$HAMIRROR_LAB
# Each recorded process as PID:start-time (a PID reused meanwhile by another process is not ours).
# (A zombie has no start time here: it is dead, only not yet reaped by whoever adopted it.)
starttime() { awk '$3 != "Z" {print $22}' "/proc/$1/stat" 2>/dev/null; }
procs=
for p in $(awk '{print $1}' "$state"/n*/*.pid 2>/dev/null); do procs+=" $p:$(starttime "$p")"; done
[ -n "$procs" ] || fail "no PIDs recorded in $state"
cg=$(findmnt -n -t cgroup2 -o TARGET | head -1)
"$LAB" down || fail "lab.sh down"
"$LAB" down || fail "lab.sh down is not idempotent"
for ps in $procs; do
  [ "$(starttime "${ps%%:*}")" != "${ps#*:}" ] || fail "process ${ps%%:*} survives down: $(cat "/proc/${ps%%:*}/cmdline" | tr '\0' ' ')"
done
left=$(ip netns list | awk '{print $1}' | grep -E "^$HAMIRROR_LAB-" || true)
[ -z "$left" ] || fail "namespaces left: $left"
[ ! -e "$state" ] || fail "$state left"
[ ! -e "/var/lib/hamirror-lab/$HAMIRROR_LAB" ] || fail "/var/lib/hamirror-lab/$HAMIRROR_LAB left"
[ -z "$cg" ] || [ ! -e "$cg/hamirror-lab-$HAMIRROR_LAB" ] || fail "cgroup $cg/hamirror-lab-$HAMIRROR_LAB left"
! grep -q "hamirror-lab/$HAMIRROR_LAB" /proc/self/mountinfo || fail "mounts of the lab left on the host"
trap - EXIT
echo "PASS"
