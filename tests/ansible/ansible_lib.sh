# shellcheck shell=bash
# Shared by the deploy:ansible-* tests: the SSH lab, the package, running the playbook from the client
# namespace, and what a node looks like. Source after bank-lib.sh (say, fail, lab), with REPO, WORK, LAB.

INVENTORY="$REPO/deploy/ansible/inventory.lab.ini"
PLAYBOOK="$REPO/deploy/ansible/site.yml"

require_tools() {
  [ "$(id -u)" -eq 0 ] || { fail "needs root (namespaces, systemd-nspawn)"; exit 1; }
  local t
  for t in ansible-playbook systemd-nspawn ssh ssh-keygen mariadbd dpkg-deb; do
    PATH=$PATH:/usr/sbin:/sbin command -v "$t" >/dev/null || { fail "$t missing (scripts/install-deps.sh)"; exit 1; }
  done
  [ -x /usr/sbin/sshd ] || { fail "sshd missing (openssh-server; scripts/install-deps.sh)"; exit 1; }
  [ ! -e /usr/sbin/hamirrord ] ||
    { fail "hamirror is installed on this host: the lab's hosts (overlays of /) would not be bare"; exit 1; }
}

# DEB: the package, built from this tree (scripts/build-deb.sh) into $WORK/deb.
build_deb() {
  say "scripts/build-deb.sh"
  "$REPO/scripts/build-deb.sh" --out "$WORK/deb" >"$WORK/build-deb.log" 2>&1 ||
    { tail -n 20 "$WORK/build-deb.log"; fail "scripts/build-deb.sh failed"; exit 1; }
  DEB=$(find "$WORK/deb" -name 'hamirror_*_amd64.deb' | sort | tail -1)
  [ -n "$DEB" ] || { fail "no package in $WORK/deb"; exit 1; }
}

lab_up_ssh() {
  lab down >/dev/null 2>&1 || true  # a lab left by an aborted run
  say "lab.sh up --ssh"
  lab up --ssh >"$WORK/lab-up.log" 2>&1 || { cat "$WORK/lab-up.log"; fail "lab.sh up --ssh failed"; exit 1; }
  local n
  for n in n1 n2; do
    [ "$(lab exec $n hostname)" = "$n" ] || { fail "$n: wrong host name"; exit 1; }
    lab exec $n test ! -e /usr/sbin/hamirrord || { fail "$n is not bare: hamirrord installed"; exit 1; }
    lab exec $n test ! -e /etc/hamirror/cluster.xml || { fail "$n is not bare: cluster.xml"; exit 1; }
  done
}

# run_play LOG [ansible-playbook args]: site.yml on the lab from the client namespace; output in LOG.
run_play() {
  local log=$1
  shift
  say "ansible-playbook site.yml $*"
  local t0=$SECONDS rc=0
  ANSIBLE_NOCOLOR=1 ANSIBLE_HOME="$WORK/ansible-home" ANSIBLE_SSH_CONTROL_PATH_DIR="$WORK/ansible-cp" \
    "$LAB" exec client ansible-playbook -i "$INVENTORY" "$PLAYBOOK" -e "hamirror_package_file=$DEB" "$@" \
    >"$log" 2>&1 || rc=$?
  say "  exit $rc after $((SECONDS - t0)) s"
  return $rc
}

recap() { sed -n '/^PLAY RECAP/,/^$/p' "$1"; }

# expect_changed LOG N: every host's recap says changed=N, failed=0.
expect_changed() {
  local lines
  lines=$(recap "$1" | grep -E '^n[12] ')
  [ "$(grep -c . <<<"$lines")" -eq 2 ] || { recap "$1"; fail "no recap for both hosts"; exit 1; }
  if grep -vqE "changed=$2 .*failed=0 " <<<"$lines"; then
    recap "$1"
    grep -E '^changed: ' -B3 "$1" | head -40
    fail "expected changed=$2 on both hosts"
    exit 1
  fi
}

# node_wrote NODE PATH: PATH exists in what node NODE (n1, n2) wrote: its overlay's upper layer (the
# merged view also shows the host's own files), not as a whiteout (a 0/0 character device: the lab hides
# the host's /var/lib/hamirror and the like that way).
node_wrote() {
  local f="/var/lib/hamirror-lab/$HAMIRROR_LAB/$1/upper$2"
  [ -e "$f" ] && ! [ -c "$f" ]
}

# What the play may change on the nodes: the configuration files and the installed package.
node_sums() {
  local n
  for n in n1 n2; do
    lab exec $n sh -c 'sha256sum /etc/hamirror/cluster.xml /etc/hamirror/modules/mysql/conf/userconfig.xml \
      /etc/hamirror/tls/* /etc/hamirror/mysql/heartbeat.key 2>&1; dpkg-query -W hamirror 2>&1' || true
  done
}
unit_pids() {
  local n
  for n in n1 n2; do lab exec $n systemctl show -p MainPID --value hamirrord@mysql.service; done
}

# A database user for the clients (the role creates none), through n1's socket; exports VIP and MYSQL_*.
create_db_user() {
  export VIP=198.18.0.50 MYSQL_USER=lab MYSQL_PASSWORD
  MYSQL_PASSWORD=$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
  lab exec n1 mariadb --no-defaults -S /run/mysqld/mysqld.sock -u root -e \
    "CREATE USER '$MYSQL_USER'@'%' IDENTIFIED BY '$MYSQL_PASSWORD'; GRANT ALL ON *.* TO '$MYSQL_USER'@'%';" ||
    { fail "could not create the database user on n1"; exit 1; }
}
sql_vip() {
  lab exec client mariadb --no-defaults -h "$VIP" -P 3306 -u "$MYSQL_USER" -p"$MYSQL_PASSWORD" \
    --connect-timeout=5 -N -B -e "$1"
}

# lab.sh down, then nothing of the lab may be left.
lab_down_clean() {
  lab down >/dev/null || { fail "lab.sh down failed"; exit 1; }
  local left
  left=$(ip netns list | awk '{print $1}' | grep -E "^${HAMIRROR_LAB}-" || true)
  [ -z "$left" ] || { fail "namespaces left: $left"; exit 1; }
  [ ! -e "/run/hamirror-lab/$HAMIRROR_LAB" ] || { fail "lab state left"; exit 1; }
  [ ! -e "/var/lib/hamirror-lab/$HAMIRROR_LAB" ] || { fail "lab disks left"; exit 1; }
  left=$(find /sys/fs/cgroup -maxdepth 2 -name "hamirror-lab-$HAMIRROR_LAB" 2>/dev/null || true)
  [ -z "$left" ] || { fail "cgroups left: $left"; exit 1; }
}
