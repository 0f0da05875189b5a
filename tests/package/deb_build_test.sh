#!/usr/bin/env bash
# scripts/build-deb.sh makes hamirror_<version>_amd64.deb: the files of the layout (docs/deployment.md),
# the unit as agreed (Type=notify, KillMode=process, the ExecStop), Depends computed by dpkg-shlibdeps
# (the runtime libraries) plus the commands run at run time, and no lintian error.
# Env: REPO (source tree), BUILD_DIR (a Release build), WORK (scratch dir).
set -uo pipefail
REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
WORK=${WORK:-/tmp/hamirror-deploy-test}/build.$$
fail() { echo "FAIL: $*" >&2; exit 1; }
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"

base=$(sed -n 's/^project(hamirror VERSION \([0-9][0-9.]*\).*/\1/p' "$REPO/CMakeLists.txt")
deb=$("$REPO/scripts/build-deb.sh" --out "$WORK") || fail "build-deb.sh failed"
[ "$deb" = "$WORK/hamirror_${base}_amd64.deb" ] || fail "build-deb.sh printed '$deb', expected $WORK/hamirror_${base}_amd64.deb"
[ -f "$deb" ] || fail "no $deb"
"$REPO/scripts/build-deb.sh" --bogus >/dev/null 2>&1; [ $? -eq 64 ] || fail "an unknown option is not a usage error"

echo "== content"
dpkg-deb -c "$deb" | awk '{ print $1 " " $6 ($7 == "->" ? " -> " $8 : "") }' >"$WORK/list"
cat "$WORK/list"
has() { grep -qx -- "$1" "$WORK/list" || fail "the package has no '$1'"; }
for f in usr/sbin/hamirrord usr/sbin/hamirror-fs usr/bin/hamirror usr/bin/hamirror-certs \
  usr/lib/hamirror/hamirrord-stop; do
  has "-rwxr-xr-x ./$f"
done
has "lrwxrwxrwx ./usr/bin/safekit -> hamirror"
for f in lib/systemd/system/hamirrord@.service usr/share/doc/hamirror/copyright usr/share/doc/hamirror/changelog.gz \
  usr/share/doc/hamirror/deployment.md usr/share/man/man1/hamirror.1.gz usr/share/man/man1/hamirror-certs.1.gz \
  usr/share/man/man8/hamirrord.8.gz usr/share/man/man8/hamirror-fs.8.gz \
  usr/share/hamirror/modules/mysql/conf/userconfig.xml usr/share/hamirror/modules/mysql/bin/mysql-common.sh; do
  has "-rw-r--r-- ./$f"
done
for f in start_prim stop_prim; do has "-rwxr-xr-x ./usr/share/hamirror/modules/mysql/bin/$f"; done
for d in etc/hamirror etc/hamirror/modules var/lib/hamirror var/log/hamirror; do has "drwxr-xr-x ./$d/"; done
# The module template is scripts/modules/mysql, file for file.
(cd "$REPO/scripts/modules" && find mysql -type f | sort) >"$WORK/module.src"
sed -n 's|^-[^ ]* ./usr/share/hamirror/modules/||p' "$WORK/list" | sort >"$WORK/module.deb"
diff "$WORK/module.src" "$WORK/module.deb" || fail "the packaged module differs from scripts/modules/mysql"
dpkg-deb -c "$deb" | awk '$2 != "root/root" { bad = 1; print } END { exit bad }' || fail "files not owned by root"
# Nothing in /etc is a conffile: the operator's files are not the package's.
dpkg-deb -I "$deb" conffiles >/dev/null 2>&1 && fail "the package has conffiles"

echo "== control"
dpkg-deb -f "$deb"
[ "$(dpkg-deb -f "$deb" Package)" = hamirror ] || fail "Package"
[ "$(dpkg-deb -f "$deb" Version)" = "$base" ] || fail "Version is not $base"
[ "$(dpkg-deb -f "$deb" Architecture)" = amd64 ] || fail "Architecture"
depends=$(dpkg-deb -f "$deb" Depends)
names=$(tr ',' '\n' <<<"$depends" | sed 's/(.*)//; s/|.*//; s/ //g')
for p in libc6 libstdc++6 libfuse3-3 libgrpc++1.51 libprotobuf32 liburing2 libpugixml1v5 libsystemd0 \
  libnl-route-3-200 libxxhash0 libssl3 fuse3 openssl iputils-ping; do
  grep -qxF "$p" <<<"$names" || fail "Depends lacks $p: $depends"
done
# Every dependency is a package this Debian knows (no build-only -dev package, no typo).
for p in $names; do
  case $p in *-dev) fail "Depends names a development package: $p" ;; esac
  apt-cache show "$p" >/dev/null 2>&1 || dpkg -s "$p" >/dev/null 2>&1 || fail "Depends names an unknown package: $p"
done
for s in postinst prerm postrm; do
  dpkg-deb -I "$deb" "$s" >"$WORK/$s" || fail "no $s"
  sh -n "$WORK/$s" || fail "$s: syntax"
done
grep -q 'deb-systemd-invoke try-restart' "$WORK/postinst" || fail "postinst does not restart the instances on upgrade"

echo "== unit"
mkdir "$WORK/x"
dpkg-deb -x "$deb" "$WORK/x"
unit="$WORK/x/lib/systemd/system/hamirrord@.service"
cat "$unit"
for line in 'Type=notify' 'ExecStart=/usr/sbin/hamirrord --module /etc/hamirror/modules/%i' \
  'ExecStop=/usr/lib/hamirror/hamirrord-stop %i $MAINPID' 'KillMode=process' 'Restart=on-failure' \
  'StandardError=journal' 'WantedBy=multi-user.target'; do
  grep -qxF -- "$line" "$unit" || fail "the unit has no '$line'"
done
sh -n "$WORK/x/usr/lib/hamirror/hamirrord-stop" || fail "hamirrord-stop: syntax"
for page in "$WORK"/x/usr/share/man/man*/*.gz; do
  [ -L "$page" ] && continue
  warnings=$(zcat "$page" | groff -man -ww -z -Tutf8 2>&1) || fail "groff $page"
  [ -z "$warnings" ] || fail "$(basename "$page"): $warnings"
done

echo "== lintian"
command -v lintian >/dev/null || fail "lintian not installed (scripts/install-deps.sh)"
lintian --no-tag-display-limit "$deb" >"$WORK/lintian" 2>"$WORK/lintian.err"
cat "$WORK/lintian"
grep -v 'running with root privileges is not recommended' "$WORK/lintian.err" >&2
grep -q '^E: ' "$WORK/lintian" && fail "lintian reports errors"
grep -q '^E: ' "$WORK/lintian.err" && fail "lintian failed"
echo PASS
