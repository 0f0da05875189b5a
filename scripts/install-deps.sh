#!/usr/bin/env bash
# Installs every Debian 12 package hamirror needs to build, test, benchmark and run the demo.
# Idempotent: apt-get skips what is already installed. Must run as root.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: must run as root (apt-get install)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang-format git
  # libraries (design card)
  libfuse3-dev fuse3 liburing-dev
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc
  libpugixml-dev catch2 libxxhash-dev libcli11-dev libnl-route-3-dev libnl-3-dev
  libsystemd-dev libssl-dev openssl
  # runtime and test tools
  iproute2 iputils-ping iputils-arping attr acl procps psmisc netcat-openbsd python3 util-linux
  mariadb-server mariadb-client libmariadb-dev sysbench fio bindfs rsync socat
  # the Debian package and its unit (scripts/build-deb.sh, docs/deployment.md; systemd as a test PID 1)
  dpkg-dev lintian systemd
  # profiling the data path (docs/benchmarks.md, "Data-path tuning")
  linux-perf
  # deploy/ansible and its SSH lab (docs/deployment.md, "Ansible", "The SSH lab")
  ansible ansible-lint openssh-server openssh-client systemd-container
)
# openssh-server is for the SSH lab's hosts (their own sshd, in their own root): a host that had no
# sshd before does not get one listening because of this script.
had_sshd=0
dpkg -s openssh-server >/dev/null 2>&1 && had_sshd=1
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
# MariaDB's package may start a system instance; hamirror's tests run their own instances.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mariadb 2>/dev/null; then
  systemctl stop mariadb || true
  systemctl disable mariadb >/dev/null 2>&1 || true
fi
if [ "$had_sshd" = 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now ssh.service >/dev/null 2>&1 || true
fi
modprobe fuse 2>/dev/null || true
echo "install-deps.sh: all packages present"
