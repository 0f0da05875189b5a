#!/usr/bin/env bash
# Builds the Debian package hamirror_<version>_amd64.deb (docs/deployment.md "The package").
#
#   scripts/build-deb.sh [--version V] [--out DIR]
#
# --version: the package's version (default: CMake's project version); it only labels the package, the
# binaries report the project version. --out: where the .deb goes (default build/deb/).
# BUILD_DIR (default build/): a Release build, configured here if absent; only the packaged targets are
# built, so a build directory that is up to date is reused as it is.
# Needs: cmake, ninja, dpkg-dev (dpkg-shlibdeps), gzip. No root needed (dpkg-deb --root-owner-group).
set -euo pipefail
umask 022
REPO=$(cd "$(dirname "$0")/.." && pwd)
PROG="build-deb.sh"
die() { echo "$PROG: $*" >&2; exit 1; }
usage() { echo "usage: $PROG [--version V] [--out DIR]   (env BUILD_DIR: the Release build, default build/)"; }

version="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --version | --out)
      [ $# -ge 2 ] || { usage >&2; exit 64; }
      if [ "$1" = --version ]; then version=$2; else out=$2; fi
      shift 2 ;;
    *) echo "$PROG: unknown argument '$1'" >&2; usage >&2; exit 64 ;;
  esac
done
if [ -z "$version" ]; then
  version=$(sed -n 's/^project(hamirror VERSION \([0-9][0-9.]*\).*/\1/p' "$REPO/CMakeLists.txt")
  [ -n "$version" ] || die "no project(hamirror VERSION x.y.z) in CMakeLists.txt"
fi
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "'$version' is not a Debian version"
build=$(realpath -m "${BUILD_DIR:-$REPO/build}")
out=$(realpath -m "${out:-$REPO/build/deb}")
for tool in cmake dpkg-deb dpkg-shlibdeps gzip; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs it)"
done

# 1. A Release build of the packaged targets.
if [ ! -f "$build/CMakeCache.txt" ]; then
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  cmake -S "$REPO" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" >/dev/null ||
    die "configuring $build failed"
fi
cache_value() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }
[ "$(cache_value CMAKE_BUILD_TYPE)" = Release ] ||
  die "$build is a '$(cache_value CMAKE_BUILD_TYPE)' build: the package is made from a Release build (set BUILD_DIR)"
[ -z "$(cache_value HAMIRROR_SANITIZE)" ] ||
  die "$build is a sanitizer build (HAMIRROR_SANITIZE=$(cache_value HAMIRROR_SANITIZE)): set BUILD_DIR to a Release build"
cmake --build "$build" --target hamirrord hamirror hamirror-fs hamirror-certs >&2 ||
  die "building in $build failed"

# 2. The tree of the package, from the install() rules (deploy/install.cmake).
work=$(mktemp -d "$build/deb-work.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage="$work/root"
mkdir -p "$stage/DEBIAN" "$out"
DESTDIR="$stage" cmake --install "$build" --prefix /usr --strip --component hamirror >/dev/null ||
  die "cmake --install failed"
doc="$stage/usr/share/doc/hamirror"
install -m 644 "$REPO/deploy/debian/copyright" "$doc/copyright"
date=$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)}")
sed -e "s/@VERSION@/$version/" -e "s/@DATE@/$date/" "$REPO/deploy/debian/changelog.in" | gzip -9n >"$doc/changelog.gz"
chmod 644 "$doc/changelog.gz"
find "$stage/usr/share/man" -type f -name '*.[0-9]' -exec gzip -9n {} +
ln -s hamirror.1.gz "$stage/usr/share/man/man1/safekit.1.gz"

# 3. Depends: the shared libraries of the binaries (dpkg-shlibdeps), plus the commands run at run time:
# fusermount3 and /dev/fuse's setup (fuse3), openssl (hamirror-certs), ping (<ping> checker, split-brain
# witness).
mkdir -p "$work/shlibs/debian"
printf 'Source: hamirror\n\nPackage: hamirror\nArchitecture: amd64\n' >"$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O -e"$stage/usr/sbin/hamirrord" -e"$stage/usr/sbin/hamirror-fs" \
  -e"$stage/usr/bin/hamirror" 2>"$work/shlibdeps.err") || { cat "$work/shlibdeps.err" >&2; die "dpkg-shlibdeps failed"; }
shlibs=${shlibs#shlibs:Depends=}
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no library"
depends="$shlibs, fuse3, openssl, iputils-ping"

# 4. Control files.
size=$(du -sk --apparent-size --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$size/" -e "s/@DEPENDS@/$depends/" \
  "$REPO/deploy/debian/control.in" >"$stage/DEBIAN/control"
for script in postinst prerm postrm; do install -m 755 "$REPO/deploy/debian/$script" "$stage/DEBIAN/$script"; done
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0r md5sum) \
  >"$stage/DEBIAN/md5sums"
chmod 644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"

deb="$out/hamirror_${version}_amd64.deb"
dpkg-deb --build --root-owner-group -Zxz "$stage" "$deb" >/dev/null || die "dpkg-deb --build failed"
echo "$deb"
