#!/usr/bin/env bash
# The package's life on a node (issue 13): install, upgrade to a newer build, remove, purge, in an isolated
# root: own mount and PID namespaces, an overlay whose lower layer is / (read only) and whose upper layer
# is a tmpfs, chrooted into. The host's own root is never written (dpkg's database included).
# After each step: the binaries, unit and directories are present or gone as they should be, and the
# data directory (/var/lib/mysql) and the operator's files (/etc/hamirror: cluster.xml, the module,
# certificates) are byte-identical to before. Twice: once as if systemd ran (/run/systemd/system and a
# fake systemctl that records what the maintainer scripts ask), once without systemd, where they must
# succeed too. The steps are tests/package/deb_lifecycle_steps.sh. Exit 77 = skipped (not root).
# Env: REPO (source tree), BUILD_DIR (the Release build scripts/build-deb.sh uses), WORK (scratch dir).
set -uo pipefail
REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
WORK=${WORK:-/tmp/hamirror-deploy-test}/lifecycle.$$
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (namespaces, overlay mount, chroot)"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
ns_pid=""
cleanup() {
  # The namespace's PID 1 takes every process and mount of it along when killed.
  [ -n "$ns_pid" ] && kill -KILL "$ns_pid" 2>/dev/null && wait "$ns_pid" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/debs" "$WORK/ns"

base=$(sed -n 's/^project(hamirror VERSION \([0-9][0-9.]*\).*/\1/p' "$REPO/CMakeLists.txt")
old=$("$REPO/scripts/build-deb.sh" --out "$WORK/debs") || fail "build-deb.sh"
new=$("$REPO/scripts/build-deb.sh" --out "$WORK/debs" --version "$base+test1") || fail "build-deb.sh --version"
[ -f "$old" ] && [ -f "$new" ] || fail "no package: '$old' '$new'"
cp "$REPO/tests/package/deb_lifecycle_steps.sh" "$WORK/debs/steps.sh"

# In the namespaces: the overlay root, /proc of the new PID namespace, /dev and /sys of the host, a
# fresh /run and /tmp (so the host's systemd is never reached), then the steps, chrooted.
cat >"$WORK/ns.sh" <<EOF
set -euo pipefail
mount --make-rprivate /
mount -t tmpfs -o size=1g,mode=0755 hmdeb "$WORK/ns"
mkdir "$WORK/ns/upper" "$WORK/ns/work" "$WORK/ns/root"
mount -t overlay hmdeb-root -o "lowerdir=/,upperdir=$WORK/ns/upper,workdir=$WORK/ns/work" "$WORK/ns/root"
R="$WORK/ns/root"
mount -t proc proc "\$R/proc"
mount --rbind /dev "\$R/dev"
mount --rbind /sys "\$R/sys"
mount -t tmpfs -o mode=0755 run "\$R/run"
mount -t tmpfs -o mode=1777 tmp "\$R/tmp"
mkdir -p "\$R/hmdeb"
cp "$WORK/debs/"* "\$R/hmdeb/"
exec chroot "\$R" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root LC_ALL=C /bin/bash /hmdeb/steps.sh "/hmdeb/$(basename "$old")" "/hmdeb/$(basename "$new")"
EOF
# --kill-child: when unshare dies (cleanup kills it), the namespace's PID 1 dies, and every process of it.
unshare --mount --pid --fork --kill-child bash "$WORK/ns.sh" &
ns_pid=$!
for ((i = 0; i < 6000; i++)); do kill -0 "$ns_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$ns_pid" 2>/dev/null && fail "the steps did not end within 600 s"
wait "$ns_pid"
rc=$?
ns_pid=""
[ "$rc" -eq 0 ] || fail "the steps in the isolated root failed (exit $rc)"
echo PASS
