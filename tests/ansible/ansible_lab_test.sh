#!/usr/bin/env bash
# deploy:ansible-lab (issue 13): deploy/ansible/site.yml run from the SSH lab's client namespace against
# two bare hosts (scripts/lab/lab.sh up --ssh: own root, systemd, sshd, MariaDB installed, no hamirror):
#   0. --check --diff on the bare hosts runs through and installs nothing;
#   1. the play deploys the cluster: n1 PRIM, n2 SECOND (Ready), units enabled, MariaDB on the VIP,
#      certificate files root-only;
#   2. a second run changes nothing (changed=0);
#   3. --check --diff with a changed variable shows the change and changes nothing;
#   4. an invalid variable stops the play before any node is changed, with confcheck's file:line: reason;
#   5. a changed heartbeat timeout is rolled out one node at a time (hamirrord restarted on n1, pair
#      Ready, then n2) while the bank workload writes through the VIP: no client error, no lost commit,
#      the database server keeps running;
#   6. the package upgraded to a newer build through the play while the bank workload writes: no client
#      error, no lost commit, same database server and mount on n1; then removed and purged on n2: the
#      module stops there, /var/lib/mysql and /etc/hamirror/modules/mysql are as they were.
# Environment: REPO, BUILD_DIR (Release build for scripts/build-deb.sh), WORK, BANK, HAMIRROR_BIN,
# HAMIRROR_LAB (prefix). Needs root, systemd-nspawn, sshd, ansible, MariaDB: anything missing fails.
set -Eeuo pipefail
: "${REPO:?}" "${WORK:?}" "${BANK:?}"
export HAMIRROR_LAB=${HAMIRROR_LAB:-hmansible}
LAB="$REPO/scripts/lab/lab.sh"
# shellcheck source=scripts/lab/bank-lib.sh
. "$REPO/scripts/lab/bank-lib.sh"
. "$REPO/tests/ansible/ansible_lib.sh"

trap 'bank_stop >/dev/null 2>&1 || true; "$LAB" down >/dev/null 2>&1 || true' EXIT
trap 'exit 1' TERM INT
T0=$SECONDS

require_tools
[ -x "$BANK" ] || { fail "$BANK missing (bank-client)"; exit 1; }
mkdir -p "$WORK"
rm -rf "${WORK:?}"/*
build_deb
lab_up_ssh

say "0. --check --diff on the bare hosts: succeeds, installs nothing"
run_play "$WORK/check-bare.log" --check --diff || { tail -n 40 "$WORK/check-bare.log"; fail "--check on bare hosts failed"; exit 1; }
for n in n1 n2; do
  for p in /usr/sbin/hamirrord /etc/hamirror /var/cache/hamirror /var/lib/hamirror; do
    ! node_wrote $n $p || { fail "$n: --check made $p"; exit 1; }
  done
done

say "1. deploy from bare hosts"
run_play "$WORK/deploy.log" || { tail -n 60 "$WORK/deploy.log"; fail "the play failed"; exit 1; }
recap "$WORK/deploy.log"
pair=$(wait_pair_ready 60) || exit 1
[ "$pair" = n1 ] || { fail "n1 is not the primary ($pair is)"; exit 1; }
lab exec n1 hamirror state -lq && rc=0 || rc=$?
[ $rc -eq 3 ] || { fail "n1: state -lq $rc, not 3 (PRIM)"; exit 1; }
lab exec n2 hamirror state -lq && rc=0 || rc=$?
[ $rc -eq 4 ] || { fail "n2: state -lq $rc, not 4 (SECOND)"; exit 1; }
for n in n1 n2; do
  [ "$(lab exec $n systemctl is-enabled hamirrord@mysql.service)" = enabled ] || { fail "$n: unit not enabled"; exit 1; }
  [ "$(lab exec $n systemctl is-active hamirrord@mysql.service)" = active ] || { fail "$n: unit not active"; exit 1; }
  modes=$(lab exec $n stat -c '%n %a %U' /etc/hamirror/tls /etc/hamirror/tls/ca.pem /etc/hamirror/tls/node.pem \
    /etc/hamirror/tls/node.key /etc/hamirror/mysql /etc/hamirror/mysql/heartbeat.key | tr '\n' ';')
  want="/etc/hamirror/tls 700 root;/etc/hamirror/tls/ca.pem 644 root;/etc/hamirror/tls/node.pem 644 root;"
  want+="/etc/hamirror/tls/node.key 600 root;/etc/hamirror/mysql 700 root;/etc/hamirror/mysql/heartbeat.key 600 root;"
  [ "$modes" = "$want" ] || { fail "$n: certificate files: $modes (want $want)"; exit 1; }
  lab exec $n test ! -e /etc/hamirror/tls/ca.key || { fail "$n holds the CA key"; exit 1; }
done
# The peers check each other's certificate: the replication link is up only if they passed.
lab exec n1 hamirror state -v | grep -q 'peer connected' || { fail "n1: replication link not up"; exit 1; }
# Certificate expiry in `state -v` (hamirror-certs --days 3650 by default).
for n in n1 n2; do
  lab exec $n hamirror state -v | grep -Eq "^tls /etc/hamirror/tls/node.pem: CN=$n, expires .* \(in 36(49|50) days\)$" ||
    { lab exec $n hamirror state -v; fail "$n: state -v shows no certificate expiry"; exit 1; }
done
create_db_user
export MYSQL_PORT=3306
sql_vip 'SELECT @@hostname' | grep -qx n1 || { fail "MariaDB on the VIP is not n1's"; exit 1; }
say "deployed in $((SECONDS - T0)) s: n1 PRIM, n2 SECOND, MariaDB on $VIP"

say "2. second run: no change"
run_play "$WORK/second.log" || { tail -n 40 "$WORK/second.log"; fail "second run failed"; exit 1; }
expect_changed "$WORK/second.log" 0

say "3. --check --diff with a changed heartbeat timeout: shown, not made"
sum_before=$(node_sums)
run_play "$WORK/check.log" --check --diff -e hamirror_heartbeat_timeout_ms=2500 ||
  { tail -n 40 "$WORK/check.log"; fail "--check --diff failed"; exit 1; }
grep -q '^+  <heart pulse="300" timeout="2500"' "$WORK/check.log" || { fail "--diff does not show the new timeout"; exit 1; }
[ "$(node_sums)" = "$sum_before" ] || { fail "--check changed a node"; exit 1; }

say "4. invalid variable on the running cluster: stopped before any node is changed"
pids_before=$(unit_pids)
if run_play "$WORK/bad.log" -e hamirror_vip=not-an-address; then fail "the play accepted hamirror_vip=not-an-address"; exit 1; fi
grep -Eq "userconfig.xml:[0-9]+: invalid value 'not-an-address' for attribute 'addr'" "$WORK/bad.log" ||
  { tail -n 20 "$WORK/bad.log"; fail "no confcheck file:line: reason in the output"; exit 1; }
grep -q 'PLAY \[Install and configure' "$WORK/bad.log" && { fail "the play went on to the nodes"; exit 1; }
[ "$(node_sums)" = "$sum_before" ] || { fail "the bad run changed a node"; exit 1; }
[ "$(unit_pids)" = "$pids_before" ] || { fail "the bad run restarted hamirrord"; exit 1; }

say "5. heartbeat timeout 1500 -> 2000 ms, one node at a time, under the bank workload"
bank_setup
: >"$WORK/bank.log"
db_pid=$(lab exec n1 systemctl show -p MainPID --value hamirrord@mysql.service)
server_before=$(lab exec n1 sh -c 'cat /run/mysqld/mysqld.pid')
mount_before=$(lab exec n1 findmnt -n -o SOURCE,FSTYPE,ID /var/lib/mysql)
[[ $mount_before == *fuse* ]] || { fail "n1: /var/lib/mysql is not hamirror-fs' mount: $mount_before"; exit 1; }
bank_start 4
run_play "$WORK/rollout.log" -e hamirror_heartbeat_timeout_ms=2000 ||
  { tail -n 60 "$WORK/rollout.log"; bank_stop || true; fail "the rollout failed"; exit 1; }
sleep 2  # commits after the rollout too
bank_stop || exit 1
summary=$(bank_summary)
say "bank: $summary"
bank_verify || exit 1
# The database kept running behind the VIP: no client saw an error or lost its connection.
[[ $summary == *" in_doubt=0 failed=0 reconnects=0 "* ]] ||
  { fail "the clients saw the restarts: $summary"; exit 1; }
recap "$WORK/rollout.log"
# Order: n1 restarted and the pair Ready, then n2 restarted and the pair Ready.
order=$(awk '
  /^TASK \[hamirror : Restart hamirrord/ {t = "restart"; next}
  /^TASK \[hamirror : State of the pair\]/ {t = "ready"; next}
  /^TASK/ {t = ""; next}
  t == "restart" && /^changed: \[n[12]\]/ {match($0, /n[12]/); printf "restart-%s ", substr($0, RSTART, 2)}
  t == "ready" && /^ok: \[n[12]\]/ {match($0, /n[12]/); printf "ready-%s ", substr($0, RSTART, 2)}' "$WORK/rollout.log")
# (The first play's wait also reports; the rollout's sequence is what follows the first restart.)
seq=${order#*restart-n1 }
[ "restart-n1 $seq" = "restart-n1 ready-n1 restart-n2 ready-n2 " ] ||
  { fail "rollout order: '$order' (want restart-n1 ready-n1 restart-n2 ready-n2)"; exit 1; }
for n in n1 n2; do
  lab exec $n grep -q 'timeout="2000"' /etc/hamirror/modules/mysql/conf/userconfig.xml ||
    { fail "$n: userconfig.xml without the new timeout"; exit 1; }
done
[ "$(lab exec n1 systemctl show -p MainPID --value hamirrord@mysql.service)" != "$db_pid" ] ||
  { fail "hamirrord on n1 was not restarted"; exit 1; }
[ "$(lab exec n1 sh -c 'cat /run/mysqld/mysqld.pid')" = "$server_before" ] ||
  { fail "the database server on n1 was restarted (pid $server_before before)"; exit 1; }
[ "$(lab exec n1 findmnt -n -o SOURCE,FSTYPE,ID /var/lib/mysql)" = "$mount_before" ] ||
  { fail "n1: the mount of /var/lib/mysql changed during the rollout"; exit 1; }
wait_pair_ready 60 >/dev/null || exit 1
say "rolled out; total $((SECONDS - T0)) s"

say "6. package upgrade on the running cluster under the bank workload, then remove and purge on n2"
ver=$(dpkg-deb -f "$DEB" Version)
"$REPO/scripts/build-deb.sh" --version "$ver+upgrade1" --out "$WORK/deb-new" >"$WORK/build-deb-new.log" 2>&1 ||
  { tail -n 20 "$WORK/build-deb-new.log"; fail "scripts/build-deb.sh --version $ver+upgrade1 failed"; exit 1; }
DEB_NEW="$WORK/deb-new/hamirror_${ver}+upgrade1_amd64.deb"
[ -f "$DEB_NEW" ] || { fail "no $DEB_NEW"; exit 1; }
server_before=$(lab exec n1 sh -c 'cat /run/mysqld/mysqld.pid')
mount_before=$(lab exec n1 findmnt -n -o SOURCE,FSTYPE,ID /var/lib/mysql)
bank_start 4
# The package's upgrade restarts hamirrord@mysql (hamirrord-stop: SIGUSR2, the module adopted).
run_play "$WORK/upgrade.log" -e "hamirror_package_file=$DEB_NEW" ||
  { tail -n 60 "$WORK/upgrade.log"; bank_stop || true; fail "the upgrade play failed"; exit 1; }
sleep 2  # commits after the upgrade too
bank_stop || exit 1
summary=$(bank_summary)
say "bank during the upgrade: $summary"
bank_verify || exit 1
[[ $summary == *" in_doubt=0 failed=0 reconnects=0 "* ]] || { fail "the clients saw the upgrade: $summary"; exit 1; }
for n in n1 n2; do
  [ "$(lab exec $n dpkg-query -W -f '${Version}' hamirror)" = "$ver+upgrade1" ] ||
    { fail "$n: hamirror not upgraded to $ver+upgrade1"; exit 1; }
done
[ "$(lab exec n1 sh -c 'cat /run/mysqld/mysqld.pid')" = "$server_before" ] ||
  { fail "the database server on n1 was restarted by the upgrade"; exit 1; }
[ "$(lab exec n1 findmnt -n -o SOURCE,FSTYPE,ID /var/lib/mysql)" = "$mount_before" ] ||
  { fail "n1: the mount of /var/lib/mysql changed during the upgrade"; exit 1; }
[ "$(wait_pair_ready 60)" = n1 ] || exit 1
# Remove, then purge, on the secondary: the module stops there (n1 serves alone), the replicated
# directory and the operator's module directory stay as they were.
files_before=$(lab exec n2 sh -c 'cd /var/lib/mysql && find . -printf "%y %P\n" | sort')
grep -q '^d bank$' <<<"$files_before" || { fail "n2: no bank database in /var/lib/mysql before the removal"; exit 1; }
module_before=$(lab exec n2 sh -c 'cd /etc/hamirror/modules/mysql && find . -type f -exec sha256sum {} + | sort')
for step in "-r" "-P"; do
  lab exec n2 dpkg "$step" hamirror >"$WORK/dpkg$step.log" 2>&1 || { cat "$WORK/dpkg$step.log"; fail "n2: dpkg $step hamirror"; exit 1; }
  lab exec n2 test ! -e /usr/sbin/hamirrord || { fail "n2: hamirrord left after dpkg $step"; exit 1; }
  [ "$(lab exec n2 findmnt -n -o FSTYPE /var/lib/mysql || true)" != fuse.hamirror ] ||
    { fail "n2: /var/lib/mysql still a hamirror mount after dpkg $step"; exit 1; }
  [ "$(lab exec n2 sh -c 'cd /var/lib/mysql && find . -printf "%y %P\n" | sort')" = "$files_before" ] ||
    { fail "n2: /var/lib/mysql changed by dpkg $step"; exit 1; }
  [ "$(lab exec n2 sh -c 'cd /etc/hamirror/modules/mysql && find . -type f -exec sha256sum {} + | sort')" = "$module_before" ] ||
    { fail "n2: /etc/hamirror/modules/mysql changed by dpkg $step"; exit 1; }
done
lab exec n2 test ! -e /var/lib/hamirror || { fail "n2: /var/lib/hamirror left after purge"; exit 1; }
st=$(lab exec n1 hamirror state -lq && echo 0 || echo $?)
[ "$st" = 2 ] || [ "$st" = 3 ] || { fail "n1 is not serving after n2's removal (state -lq $st)"; exit 1; }
sql_vip 'SELECT COUNT(*) FROM bank.accounts' >/dev/null || { fail "MariaDB on the VIP does not answer after n2's removal"; exit 1; }
say "upgraded under load ($ver -> $ver+upgrade1), removed and purged on n2: data and module directories unchanged"

lab_down_clean
say "PASS"
