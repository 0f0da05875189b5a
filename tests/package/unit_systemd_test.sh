#!/usr/bin/env bash
# hamirrord@.service under a real systemd (issue 13 part 2): systemd runs as PID 1 of its own PID, mount,
# network, UTS, IPC and cgroup namespaces, in a throw-away root (an overlay over / on a tmpfs, as in
# deb_lifecycle_test.sh), and the package is installed there. hamirrord itself is replaced by a stand-in
# (fake_hamirrord.py, through a drop-in ExecStart=; everything else is the packaged unit) that starts
# a detached "module" child in the unit's cgroup, as hamirror-fs and the database are.
# Checked: `systemctl restart`, a crash of hamirrord (Restart=on-failure) and a package upgrade leave the
# child running (SIGUSR2 only; the next daemon adopts it); `systemctl stop` and the package's removal
# stop it (SIGTERM) and leave nothing in the cgroup. Then, to show the check can fail, the same restart
# with KillMode=control-group (systemd's default) does kill the child. Last, the real hamirrord under the
# unit with a small module (no replicated directory): READY=1, SAFE=/usr/bin for its scripts, the journal,
# a restart that keeps the application its start_both left running, a stop that runs its stop scripts.
# Exit 77 = skipped (not root, no systemd binary). Env: REPO, BUILD_DIR (Release build), WORK.
set -uo pipefail
REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
WORK=${WORK:-/tmp/hamirror-deploy-test}/systemd.$$
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (namespaces, overlay mount, cgroups)"; exit 77; }
[ -x /lib/systemd/systemd ] || { echo "SKIP: no /lib/systemd/systemd"; exit 77; }
fail() {
  echo "FAIL: $*" >&2
  [ -n "${sd_pid:-}" ] && { in_ns systemctl status --no-pager 'hamirrord@*' >&2; in_ns journalctl --no-pager -n 40 >&2; } 2>/dev/null
  exit 1
}
step() { printf '== %s\n' "$*"; }
cg=hamirror-unit-test.$$
# The host's cgroup layout, reproduced in the namespaces: unified (cgroup2 only) or hybrid (the named v1
# hierarchy "systemd" plus cgroup2 at unified/).
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  cgroup_dirs="/sys/fs/cgroup/$cg"
  cgroup_mounts='mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"'
elif [ -d /sys/fs/cgroup/systemd ] && [ -d /sys/fs/cgroup/unified ]; then
  cgroup_dirs="/sys/fs/cgroup/systemd/$cg /sys/fs/cgroup/unified/$cg"
  cgroup_mounts='mount -t tmpfs -o mode=0755 cgroup "$R/sys/fs/cgroup"
mkdir "$R/sys/fs/cgroup/systemd" "$R/sys/fs/cgroup/unified"
mount -t cgroup -o none,name=systemd,xattr cgroup "$R/sys/fs/cgroup/systemd"
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup/unified"'
else
  echo "SKIP: neither a unified nor a hybrid cgroup layout in /sys/fs/cgroup"
  exit 77
fi
ns_pid="" sd_pid=""
cleanup() {
  # unshare --kill-child: killing unshare kills the namespace's PID 1 (systemd), hence all of it.
  if [ -n "$ns_pid" ]; then
    kill -KILL "$ns_pid" 2>/dev/null
    wait "$ns_pid" 2>/dev/null
  fi
  # The cgroups systemd made under ours, deepest first, once their processes are gone.
  for ((i = 0; i < 50; i++)); do
    for d in $cgroup_dirs; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null; done
    left=0
    for d in $cgroup_dirs; do [ -d "$d" ] && left=1; done
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  for d in $cgroup_dirs; do [ -d "$d" ] && echo "cleanup: $d could not be removed" >&2; done
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/debs" "$WORK/ns"

base=$(sed -n 's/^project(hamirror VERSION \([0-9][0-9.]*\).*/\1/p' "$REPO/CMakeLists.txt")
old=$("$REPO/scripts/build-deb.sh" --out "$WORK/debs") || fail "build-deb.sh"
new=$("$REPO/scripts/build-deb.sh" --out "$WORK/debs" --version "$base+test1") || fail "build-deb.sh --version"
cp "$REPO/tests/package/fake_hamirrord.py" "$WORK/debs/"

# The namespaces' own cgroup (named hierarchy and cgroup2), so that systemd's cgroups are made under it.
for d in $cgroup_dirs; do mkdir "$d" || fail "mkdir $d"; done
cat >"$WORK/ns.sh" <<EOF
set -euo pipefail
mount --make-rprivate /
mount -t tmpfs -o size=1g,mode=0755 hmsd "$WORK/ns"
mkdir "$WORK/ns/upper" "$WORK/ns/work" "$WORK/ns/root"
mount -t overlay hmsd-root -o "lowerdir=/,upperdir=$WORK/ns/upper,workdir=$WORK/ns/work" "$WORK/ns/root"
R="$WORK/ns/root"
mount -t proc proc "\$R/proc"
mount --rbind /dev "\$R/dev"
mount -t sysfs sysfs "\$R/sys"
$cgroup_mounts
mount -t tmpfs -o mode=0755 run "\$R/run"
mount -t tmpfs -o mode=1777 tmp "\$R/tmp"
mkdir -p "\$R/hmdeb"
cp "$WORK/debs/"* "\$R/hmdeb/"
install -m 755 "$WORK/debs/fake_hamirrord.py" "\$R/usr/local/sbin/fake-hamirrord"
rm -f "\$R/usr/sbin/policy-rc.d"
# Only what the test needs: no getty, no host service, no kernel module loading.
ln -sf /dev/null "\$R/etc/systemd/system/modprobe@.service"
echo n1 >"\$R/etc/hostname"
printf '[Unit]\nDescription=hamirror unit test\nDefaultDependencies=no\nWants=systemd-journald.service\n' \
  >"\$R/etc/systemd/system/hamirror-test.target"
exec chroot "\$R" /usr/bin/env -i container=hamirror-test PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  /lib/systemd/systemd --system --unit=hamirror-test.target --log-target=journal-or-kmsg
EOF
bash -c "for d in $cgroup_dirs; do echo \$\$ >\$d/cgroup.procs || exit 1; done &&
  exec unshare --cgroup --mount --pid --net --uts --ipc --fork --kill-child bash $WORK/ns.sh" >"$WORK/ns.log" 2>&1 &
ns_pid=$!

in_ns() { nsenter -t "$sd_pid" -a -r -w "$@"; }
for ((i = 0; i < 300; i++)); do
  [ -z "$sd_pid" ] && sd_pid=$(cat "/proc/$ns_pid/task/$ns_pid/children" 2>/dev/null | awk '{print $1}')
  if [ -n "$sd_pid" ]; then
    state=$(in_ns systemctl is-system-running 2>/dev/null)
    case "$state" in running | degraded) break ;; esac
  fi
  kill -0 "$ns_pid" 2>/dev/null || { cat "$WORK/ns.log" >&2; fail "the namespace ended"; }
  sleep 0.1
done
case "${state:-}" in running | degraded) ;; *) cat "$WORK/ns.log" >&2; fail "systemd did not come up (state '${state:-}')" ;; esac
step "systemd up as PID 1 of the namespaces (host pid $sd_pid)"

events() { cat "/proc/$sd_pid/root/run/hmtest/events" 2>/dev/null; }
main_pid() { in_ns systemctl show -p MainPID --value hamirrord@m.service; }
active() { [ "$(in_ns systemctl is-active hamirrord@m.service)" = active ]; }
module_pid() { events | sed -n 's/^started \([0-9]*\)$/\1/p' | tail -1; }
module_alive() {  # PID (in the namespace) still runs, in the unit's cgroup
  in_ns sh -c "grep -q 'hamirrord@m.service' /proc/$1/cgroup 2>/dev/null && [ \"\$(cut -d' ' -f3 /proc/$1/stat)\" != Z ]"
}
cgroup_empty() {  # no process of the namespace is in the unit's cgroup
  [ -z "$(in_ns sh -c 'grep -l "hamirrord@m\.service" /proc/[0-9]*/cgroup 2>/dev/null')" ]
}

step "install: the unit is loaded, nothing started"
in_ns dpkg -i "/hmdeb/$(basename "$old")" >/dev/null || fail "dpkg -i $old"
in_ns systemctl cat hamirrord@m.service >/dev/null || fail "systemd does not know hamirrord@m.service"
active && fail "the package started an instance by itself"
in_ns sh -c 'mkdir -p /etc/hamirror/modules/m/conf && touch /etc/hamirror/modules/m/conf/userconfig.xml &&
  mkdir -p /etc/systemd/system/hamirrord@.service.d &&
  printf "[Service]\nExecStart=\nExecStart=/usr/local/sbin/fake-hamirrord --module /etc/hamirror/modules/%%i\n" \
    >/etc/systemd/system/hamirrord@.service.d/stand-in.conf && systemctl daemon-reload' || fail "stand-in drop-in"

cgroup_empty || fail "a process is in hamirrord@m.service's cgroup before it started"
step "enable --now: hamirrord ready (Type=notify), its module child in the unit's cgroup"
in_ns systemctl enable --now hamirrord@m.service 2>/dev/null || fail "systemctl enable --now hamirrord@m"
active || fail "hamirrord@m is not active"
cgroup_empty && fail "cgroup_empty sees nothing in the running unit's cgroup"
child=$(module_pid)
[ -n "$child" ] || fail "the stand-in started no module: $(events)"
module_alive "$child" || fail "the module child $child is not running in the unit's cgroup"

step "systemctl restart: SIGUSR2 only, the module child kept and adopted"
m1=$(main_pid)
in_ns systemctl restart hamirrord@m.service || fail "systemctl restart"
active || fail "not active after restart"
[ "$(main_pid)" != "$m1" ] || fail "restart: the main pid did not change"
module_alive "$child" || fail "restart killed the module child: $(events)"
events | grep -qx TERM && fail "restart sent SIGTERM (that stops the module): $(events)"
events | grep -qx USR2 || fail "restart did not send SIGUSR2: $(events)"
events | grep -qx "adopted $child" || fail "the new daemon did not adopt $child: $(events)"

step "hamirrord crashes (SIGKILL): restarted by systemd, the module child kept"
m2=$(main_pid)
in_ns kill -KILL "$m2"
for ((i = 0; i < 150; i++)); do
  m3=$(main_pid)
  [ -n "$m3" ] && [ "$m3" != 0 ] && [ "$m3" != "$m2" ] && active && break
  sleep 0.1
done
[ "$m3" != "$m2" ] && active || fail "hamirrord was not restarted after its crash"
module_alive "$child" || fail "the crash restart killed the module child"
[ "$(events | grep -c "^adopted $child$")" -ge 2 ] || fail "the restarted daemon did not adopt $child: $(events)"

step "package upgrade: the running instance restarted (SIGUSR2), the module child kept"
usr2_before=$(events | grep -cx USR2)
in_ns dpkg -i "/hmdeb/$(basename "$new")" >/dev/null || fail "dpkg -i $new (upgrade)"
[ "$(in_ns dpkg-query -W -f '${Version}' hamirror)" = "$(dpkg-deb -f "$new" Version)" ] || fail "upgrade: version"
active || fail "not active after the upgrade"
[ "$(events | grep -cx USR2)" -gt "$usr2_before" ] || fail "the upgrade did not restart the instance: $(events)"
events | grep -qx TERM && fail "the upgrade sent SIGTERM: $(events)"
module_alive "$child" || fail "the upgrade killed the module child"
in_ns test -e /run/hamirror/package-upgrade && fail "the upgrade flag outlived the upgrade"

step "systemctl stop: SIGTERM, the module stopped, nothing left in the cgroup"
in_ns systemctl stop hamirrord@m.service || fail "systemctl stop"
events | grep -qx TERM || fail "stop did not send SIGTERM: $(events)"
in_ns sh -c "[ -d /proc/$child ] && [ \"\$(cut -d' ' -f3 /proc/$child/stat)\" != Z ]" && fail "stop left the module child $child"
active && fail "still active after stop"
cgroup_empty || fail "processes left in the unit's cgroup after stop"

step "package removal: the running instance stops its module"
in_ns systemctl start hamirrord@m.service || fail "start again"
child2=$(module_pid)
[ -n "$child2" ] && [ "$child2" != "$child" ] && module_alive "$child2" || fail "no new module child: $(events)"
terms=$(events | grep -cx TERM)
in_ns dpkg -r hamirror >/dev/null || fail "dpkg -r"
[ "$(events | grep -cx TERM)" -gt "$terms" ] || fail "removal did not stop the instance (SIGTERM): $(events)"
module_alive "$child2" && fail "removal left the module child running"
active && fail "still active after removal"

step "control: the same restart with KillMode=control-group kills the module child"
in_ns dpkg -i "/hmdeb/$(basename "$new")" >/dev/null || fail "reinstall"
in_ns sh -c 'printf "[Service]\nKillMode=control-group\n" >/etc/systemd/system/hamirrord@.service.d/killmode.conf &&
  systemctl daemon-reload && systemctl start hamirrord@m.service' || fail "control setup"
child3=$(module_pid)
module_alive "$child3" || fail "control: no module child"
in_ns systemctl restart hamirrord@m.service || fail "control: restart"
for ((i = 0; i < 50; i++)); do module_alive "$child3" || break; sleep 0.1; done
module_alive "$child3" && fail "control: KillMode=control-group did not kill the child (the checks above prove nothing)"
in_ns systemctl stop hamirrord@m.service

# The real hamirrord of the package, module t on node n1 (the namespace's host name): READY=1 reaches
# systemd, the module's scripts get SAFE=/usr/bin (where hamirror and safekit are), `hamirror` answers,
# the journal has hamirrord's lines, a restart leaves the application running, stop runs the stop scripts.
step "the real hamirrord: start, SAFE, journal, restart keeps the application, stop"
in_ns sh -c 'rm -rf /etc/systemd/system/hamirrord@.service.d && systemctl daemon-reload &&
  mkdir -p /etc/hamirror/modules/t/conf /etc/hamirror/modules/t/bin /etc/hamirror/t &&
  head -c 32 /dev/urandom >/etc/hamirror/t/heartbeat.key && chmod 600 /etc/hamirror/t/heartbeat.key' ||
  fail "module t"
T="/proc/$sd_pid/root/etc/hamirror"
cat >"$T/cluster.xml" <<'XML'
<cluster><lans><lan name="default">
  <node name="n1" addr="127.0.0.1"/><node name="n2" addr="127.0.0.2"/>
</lan></lans></cluster>
XML
cat >"$T/modules/t/conf/userconfig.xml" <<'XML'
<safe>
<service mode="mirror" boot="on">
  <heart><heartbeat name="default"/></heart>
</service>
</safe>
XML
cat >"$T/modules/t/bin/start_both" <<'SCRIPT'
#!/bin/sh
# The application: detached, in the unit's cgroup, as a database started by start_prim would be.
echo "$SAFE" >/run/hmtest/safe
"$SAFE/safekit" printi "start_both: application starting"
setsid sleep 3600 </dev/null >/dev/null 2>&1 &
echo $! >/run/hmtest/app.pid
SCRIPT
cat >"$T/modules/t/bin/stop_both" <<'SCRIPT'
#!/bin/sh
[ -s /run/hmtest/app.pid ] && kill "$(cat /run/hmtest/app.pid)"
rm -f /run/hmtest/app.pid
SCRIPT
chmod 755 "$T/modules/t/bin/start_both" "$T/modules/t/bin/stop_both"
in_ns hamirror confcheck /etc/hamirror/modules/t >/dev/null ||
  fail "confcheck of module t: $(in_ns hamirror confcheck /etc/hamirror/modules/t 2>&1)"
in_ns systemctl start hamirrord@t.service || fail "systemctl start hamirrord@t (real hamirrord)"
[ "$(in_ns systemctl is-active hamirrord@t.service)" = active ] || fail "hamirrord@t is not active"
app=""
for ((i = 0; i < 300; i++)); do
  app=$(cat "/proc/$sd_pid/root/run/hmtest/app.pid" 2>/dev/null) && [ -n "$app" ] && break
  sleep 0.1
done
[ -n "$app" ] || fail "start_both did not run: $(in_ns tail -20 /var/log/hamirror/t.log)"
safe=$(cat "/proc/$sd_pid/root/run/hmtest/safe")
[ "$safe" = /usr/bin ] || fail "the scripts' SAFE is '$safe', not /usr/bin"
in_ns grep -q 'start_both: application starting' /var/log/hamirror/t.log ||
  fail "\$SAFE/safekit printi did not reach the module log"
in_ns hamirror -m t state -lq
lq=$?
[ "$lq" -ge 1 ] && [ "$lq" -le 4 ] || fail "hamirror -m t state -lq: $lq (not a started state)"
in_ns journalctl -u hamirrord@t.service --no-pager | grep -q 'hamirrord starting: module t, node n1' ||
  fail "hamirrord's lines are not in the journal"
app_running() { in_ns sh -c "[ \"\$(cut -d' ' -f3 /proc/$app/stat 2>/dev/null)\" = S ]"; }
in_ns systemctl restart hamirrord@t.service || fail "systemctl restart hamirrord@t"
[ "$(in_ns systemctl is-active hamirrord@t.service)" = active ] || fail "hamirrord@t is not active after restart"
app_running || fail "the restart killed the application"
in_ns systemctl stop hamirrord@t.service || fail "systemctl stop hamirrord@t"
[ "$(in_ns systemctl is-active hamirrord@t.service)" = inactive ] ||
  fail "hamirrord@t is $(in_ns systemctl is-active hamirrord@t.service) after stop, not inactive"
in_ns test -e /run/hamirror/t.sock && fail "the admin socket outlived the stop"
in_ns grep -q 'stop_both' /var/log/hamirror/t.log || fail "stop did not run the stop scripts"

step "an instance without its module fails at once, with hamirrord's reason, and is not restarted (exit 78)"
in_ns systemctl start hamirrord@nope.service 2>/dev/null && fail "hamirrord@nope started"
[ "$(in_ns systemctl is-failed hamirrord@nope.service)" = failed ] || fail "hamirrord@nope is not failed"
in_ns journalctl -u hamirrord@nope.service --no-pager | grep -q '/etc/hamirror/modules/nope: module directory does not exist' ||
  fail "the journal does not say why hamirrord@nope failed"
[ "$(in_ns systemctl show -p ExecMainStatus --value hamirrord@nope.service)" = 78 ] || fail "hamirrord@nope: not exit 78"
sleep 3  # RestartSec=2: a restart, if any, would have happened by now
[ "$(in_ns systemctl show -p NRestarts --value hamirrord@nope.service)" = 0 ] || fail "hamirrord@nope was restarted"
echo PASS
