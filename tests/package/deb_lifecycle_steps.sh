#!/bin/bash
# Run by deb_lifecycle_test.sh, chrooted in its throw-away root: deb_lifecycle_steps.sh OLD.deb NEW.deb
set -uo pipefail
OLD=$1 NEW=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { printf '== %s\n' "$*"; }
version_of() { dpkg-query -W -f '${Version}' "$(basename "$1")" 2>/dev/null; }
deb_version() { dpkg-deb -f "$1" Version; }
status() { dpkg-query -W -f '${db:Status-Abbrev}' hamirror 2>/dev/null | tr -d ' '; }

PAYLOAD="/usr/sbin/hamirrord /usr/sbin/hamirror-fs /usr/bin/hamirror /usr/bin/safekit /usr/bin/hamirror-certs
/lib/systemd/system/hamirrord@.service /usr/lib/hamirror/hamirrord-stop
/usr/share/hamirror/modules/mysql/conf/userconfig.xml /usr/share/hamirror/modules/mysql/bin/start_prim
/usr/share/man/man8/hamirrord.8.gz /usr/share/doc/hamirror/copyright"
installed() {  # the files, the directories, the version; the binaries run (their libraries are there)
  for f in $PAYLOAD; do [ -e "$f" ] || fail "$1: $f missing"; done
  [ "$(readlink /usr/bin/safekit)" = hamirror ] || fail "$1: /usr/bin/safekit is not a link to hamirror"
  for d in /etc/hamirror /etc/hamirror/modules /var/lib/hamirror /var/log/hamirror; do
    [ -d "$d" ] || fail "$1: directory $d missing"
  done
  [ "$(status)" = ii ] || fail "$1: dpkg status '$(status)', expected ii"
  [ "$(dpkg-query -W -f '${Version}' hamirror)" = "$2" ] || fail "$1: version $(dpkg-query -W -f '${Version}' hamirror), expected $2"
  for b in hamirrord hamirror hamirror-fs safekit; do
    "$b" --version >/dev/null || fail "$1: $b --version fails"
  done
  hamirror-certs --help >/dev/null || fail "$1: hamirror-certs --help fails"
}
removed() {
  for f in $PAYLOAD /usr/lib/hamirror; do [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$1: $f still there"; done
}

# What must never change: the data directory and everything the operator put in /etc/hamirror, listed with
# type, mode, owner, size and mtime, plus each file's checksum.
KEPT="var/lib/mysql etc/hamirror/cluster.xml etc/hamirror/modules/mysql etc/hamirror/tls etc/hamirror/mysql"
snapshot() {
  (cd / && find $KEPT -printf '%p %y %m %U:%G %s %T@ %l\n' | LC_ALL=C sort &&
    find $KEPT -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum)
}
same() { snapshot | cmp -s - /hmdeb/kept.snapshot || { snapshot | diff /hmdeb/kept.snapshot - >&2; fail "$1: the data directory or the operator's files changed"; }; }

operator_files() {  # what an operator (or Ansible) writes after installing, and a database's data
  rm -rf /var/lib/mysql
  mkdir -p /var/lib/mysql/mysql /var/lib/mysql/shop
  head -c 1048576 /dev/urandom >/var/lib/mysql/ibdata1
  head -c 65536 /dev/urandom >/var/lib/mysql/shop/orders.ibd
  echo 'fake table' >/var/lib/mysql/mysql/user.frm
  chmod 0750 /var/lib/mysql/shop
  cp -a /usr/share/hamirror/modules/mysql /etc/hamirror/modules/mysql
  sed -i 's/VIRTUAL_TO_BE_DEFINED/192.0.2.50/' /etc/hamirror/modules/mysql/conf/userconfig.xml
  printf '<cluster><lans><lan name="default"><node name="n1" addr="192.0.2.1"/><node name="n2" addr="192.0.2.2"/></lan></lans></cluster>\n' \
    >/etc/hamirror/cluster.xml
  install -m 700 -d /etc/hamirror/tls /etc/hamirror/mysql
  head -c 32 /dev/urandom >/etc/hamirror/mysql/heartbeat.key
  echo 'not a real key' >/etc/hamirror/tls/node.key
  chmod 600 /etc/hamirror/mysql/heartbeat.key /etc/hamirror/tls/node.key
  # What hamirrord and hamirror-fs write: the module's state and log.
  mkdir -p /var/lib/hamirror/mysql
  echo 'role=PRIM' >/var/lib/hamirror/mysql/node.state
  echo 'I hamirrord starting' >/var/log/hamirror/mysql.log
  sleep 0.01
  snapshot >/hmdeb/kept.snapshot
}
state_kept() {
  [ -f /var/lib/hamirror/mysql/node.state ] && [ -f /var/log/hamirror/mysql.log ] ||
    fail "$1: the module's state or log was removed"
}

old_v=$(deb_version "$OLD") new_v=$(deb_version "$NEW")
dpkg --compare-versions "$new_v" gt "$old_v" || fail "$new_v is not newer than $old_v"
[ "$(status)" = "" ] || [ "$(status)" = un ] || fail "hamirror is already known to dpkg here: '$(status)'"

###### 1. As if systemd ran: its marker directory, a fake systemctl that records each call (and whether the
###### upgrade flag was there), no policy-rc.d forbidding actions.
step "systemd present (fake systemctl)"
mkdir -p /run/systemd/system
rm -f /usr/sbin/policy-rc.d
cat >/usr/local/sbin/systemctl <<'EOF'
#!/bin/sh
flag=no; [ -f /run/hamirror/package-upgrade ] && flag=yes
echo "$* (upgrade-flag=$flag)" >>/hmdeb/systemctl.log
case "$1" in is-enabled) echo enabled ;; is-active) exit 0 ;; esac
exit 0
EOF
chmod 755 /usr/local/sbin/systemctl
calls() { cat /hmdeb/systemctl.log 2>/dev/null; }
: >/hmdeb/systemctl.log

step "install $old_v"
dpkg -i "$OLD" || fail "dpkg -i $OLD"
installed "install" "$old_v"
calls | grep -q 'daemon-reload' || fail "install: no daemon-reload: $(calls)"
calls | grep -q 'restart' && fail "install: restarted something on a first install: $(calls)"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify --man=no hamirrord@mysql.service || fail "systemd-analyze verify hamirrord@mysql.service"
fi
grep -qx 'ExecStart=/usr/sbin/hamirrord --module /etc/hamirror/modules/%i' /lib/systemd/system/hamirrord@.service ||
  fail "the unit's ExecStart"
operator_files
mkdir -p /etc/systemd/system/multi-user.target.wants
ln -s /lib/systemd/system/hamirrord@.service /etc/systemd/system/multi-user.target.wants/hamirrord@mysql.service

step "upgrade to $new_v: running instances restarted (detached, the flag set), not stopped"
: >/hmdeb/systemctl.log
dpkg -i "$NEW" || fail "dpkg -i $NEW (upgrade)"
installed "upgrade" "$new_v"
calls | grep -qF "try-restart hamirrord@*.service (upgrade-flag=yes)" ||
  fail "upgrade: no try-restart of the instances while the upgrade flag was set: $(calls)"
calls | grep -qw stop && fail "upgrade: something was stopped: $(calls)"
[ -e /run/hamirror/package-upgrade ] && fail "upgrade: the flag outlived the upgrade"
same "upgrade"
state_kept "upgrade"

step "remove: the instances stopped, the payload gone, state, logs and operator files kept"
: >/hmdeb/systemctl.log
dpkg -r hamirror || fail "dpkg -r"
removed "remove"
[ "$(status)" = rc ] || fail "remove: dpkg status '$(status)', expected rc"
calls | grep -qF "stop hamirrord@*.service" || fail "remove: the instances were not stopped: $(calls)"
same "remove"
state_kept "remove"
[ -L /etc/systemd/system/multi-user.target.wants/hamirrord@mysql.service ] || fail "remove: the enablement link went"

step "purge: state, logs and the enablement link gone; data and operator files kept"
dpkg -P hamirror || fail "dpkg -P"
[ -e /var/log/hamirror ] && fail "purge: /var/log/hamirror still there"
[ -e /var/lib/hamirror ] && fail "purge: /var/lib/hamirror still there"
[ -L /etc/systemd/system/multi-user.target.wants/hamirrord@mysql.service ] && fail "purge: the enablement link is still there"
same "purge"
[ -z "$(status)" ] || [ "$(status)" = un ] || fail "purge: dpkg still knows hamirror: '$(status)'"

###### 2. No systemd: the maintainer scripts must not need it.
step "no systemd: install, upgrade, purge"
rm -rf /run/systemd /usr/local/sbin/systemctl /hmdeb/systemctl.log
dpkg -i "$OLD" || fail "dpkg -i $OLD without systemd"
installed "install without systemd" "$old_v"
mkdir -p /var/lib/hamirror/mysql /var/log/hamirror
echo 'role=SECOND' >/var/lib/hamirror/mysql/node.state
echo 'I hamirrord starting' >/var/log/hamirror/mysql.log
dpkg -i "$NEW" || fail "dpkg -i $NEW (upgrade) without systemd"
installed "upgrade without systemd" "$new_v"
state_kept "upgrade without systemd"
same "upgrade without systemd"
[ -e /hmdeb/systemctl.log ] && fail "systemctl was called without systemd"

step "purge with a directory mounted under /var/lib/hamirror: left as it is"
mkdir -p /var/lib/hamirror/mysql/data
mount --bind /var/lib/mysql /var/lib/hamirror/mysql/data || fail "bind mount"
dpkg -P hamirror 2>/hmdeb/purge.err || { cat /hmdeb/purge.err >&2; fail "dpkg -P with a mount"; }
cat /hmdeb/purge.err
grep -q '/var/lib/hamirror (or a directory in it) is a mount point: not removed' /hmdeb/purge.err ||
  fail "purge did not say why /var/lib/hamirror stays"
[ -f /var/lib/hamirror/mysql/node.state ] || fail "purge removed in /var/lib/hamirror despite the mount"
umount /var/lib/hamirror/mysql/data
[ -e /var/log/hamirror ] && fail "purge: /var/log/hamirror still there"
removed "purge with a mount"
same "purge with a mount"
echo "steps done"
