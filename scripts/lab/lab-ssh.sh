# shellcheck shell=bash
# The SSH half of lab.sh (sourced by it): `lab.sh up --ssh` gives n1 and n2 what two bare Debian servers
# reached over SSH have, for deploy/ansible (docs/deployment.md, "The SSH lab"):
#   - a root file system of its own: an overlay whose lower layer is the host's / (read-only to the node:
#     the packages installed on the host, MariaDB included, are there; hamirror is not) and whose upper
#     layer is the node's disk ($LAB_DISK/nN/upper): what the node installs or writes stays there;
#   - systemd as PID 1: systemd-nspawn boots that root in the node's network namespace, so units are
#     real units (systemctl, journalctl) and `systemctl restart hamirrord@mysql` is systemd's restart;
#   - an sshd on the node's lan-0 address with a host key made for the lab, accepting root by one
#     generated key only ($LAB_STATE/ssh/id_ed25519, known_hosts next to it);
#   - sshd enabled in the node's root whatever the host says (install-deps.sh disables the host's own);
#   - the host's /etc/hamirror, /var/lib/hamirror, /var/log/hamirror, /var/cache/hamirror hidden (whiteouts in
#     the upper layer), the lab disks ($LAB_DISK_ROOT) covered by an empty tmpfs;
#   - /var/lib/mysql: an empty directory of the node's disk; the distribution's mariadb.service is
#     disabled in the node's root as scripts/install-deps.sh does on the host (the role disables it too).
# The overlay is mounted in a private mount namespace of the node's nspawn, never on the host; the node's
# processes are in cgroups of the lab (cgroup.kill on down). Nothing is found by name.

SSH_LAB_MASK=(postgresql.service postgresql@.service e2scrub_reap.service e2scrub_all.timer
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer man-db.timer fstrim.timer logrotate.timer
  console-getty.service getty@.service systemd-networkd.service systemd-resolved.service
  systemd-networkd-wait-online.service)

is_ssh_lab() { [ -f "$LAB_STATE/ssh-lab" ]; }
ssh_dir() { echo "$LAB_STATE/ssh"; }
# The name=systemd cgroup-v1 hierarchy (hybrid hosts): nspawn and the node's systemd place the node there
# too, so the lab gives each node a directory of its own in it as well.
lab_cg_v1() {
  local root
  root=$(findmnt -rn -t cgroup -o TARGET,OPTIONS 2>/dev/null | awk '$2 ~ /name=systemd/ {print $1; exit}')
  [ -n "$root" ] && echo "$root/hamirror-lab-$PREFIX"
  return 0
}

# The node's systemd (PID 1 of the node), if it runs.
ssh_node_init() {
  local pid
  pid=$(read_pid "$1" init.pid)
  pid_alive "$pid" && echo "$pid"
}

# ssh_node_run N CMD...: CMD inside node N (its namespaces and root), environment of a root login.
ssh_node_run() {
  local n=$1 init
  shift
  init=$(ssh_node_init "$n") || die "node n$n is not running"
  nsenter -t "$init" -a -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" sh -c 'cd / && exec "$@"' sh "$@"
}

# The lab's keys: the client key root logs in with, one host key per node, known_hosts for them.
ssh_make_keys() {
  local d n
  d=$(ssh_dir)
  install -d -m 0700 "$d"
  ssh-keygen -q -t ed25519 -N '' -C "hamirror-lab-$PREFIX" -f "$d/id_ed25519"
  : >"$d/known_hosts"
  for n in 1 2; do
    ssh-keygen -q -t ed25519 -N '' -C "n$n" -f "$d/n$n-host"
    echo "$(node_addr "$n" 0) $(cut -d' ' -f1,2 "$d/n$n-host.pub")" >>"$d/known_hosts"
    echo "n$n $(cut -d' ' -f1,2 "$d/n$n-host.pub")" >>"$d/known_hosts"
  done
  chmod 0600 "$d/known_hosts"
}

# Commands run in the node's private mount namespace before its systemd boots: the overlay root and
# the files that make it host n<N> (name, machine id, sshd, disabled units).
ssh_root_script() {
  local n=$1 d=$LAB_DISK/n$1 s u mid
  s=$(ssh_dir)
  mid=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  cat <<EOF
set -e
mount -t overlay hmlab-n$n -o lowerdir=/,upperdir=$d/upper,workdir=$d/work $d/root
r=$d/root
echo n$n >\$r/etc/hostname
echo $mid >\$r/etc/machine-id
printf '127.0.0.1 localhost\n$(node_addr 1 0) n1\n$(node_addr 2 0) n2\n$LAB_CLIENT client\n' >\$r/etc/hosts
install -d -m 0755 \$r/etc/ssh/sshd_config.d \$r/etc/ssh/hamirror-lab
install -m 0600 $s/n$n-host \$r/etc/ssh/hamirror-lab/host_ed25519_key
install -m 0644 $s/id_ed25519.pub \$r/etc/ssh/hamirror-lab/authorized_keys
cat >\$r/etc/ssh/sshd_config.d/hamirror-lab.conf <<'CONF'
# hamirror SSH lab (scripts/lab/lab-ssh.sh): this address, this host key, root by the lab's key only.
ListenAddress $(node_addr "$n" 0)
HostKey /etc/ssh/hamirror-lab/host_ed25519_key
AuthorizedKeysFile /etc/ssh/hamirror-lab/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
CONF
rm -f \$r/etc/systemd/system/multi-user.target.wants/mariadb.service
# hamirror's own paths as the host has them (other labs' mount points, test records) are not the node's.
rm -rf \$r/etc/hamirror \$r/var/lib/hamirror \$r/var/log/hamirror \$r/var/cache/hamirror
mkdir -p \$r/etc/systemd/system/multi-user.target.wants
ln -sfn /lib/systemd/system/ssh.service \$r/etc/systemd/system/multi-user.target.wants/ssh.service
EOF
  for u in "${SSH_LAB_MASK[@]}"; do echo "ln -sfn /dev/null \$r/etc/systemd/system/$u"; done
  # nspawn keeps per-machine state under /run/systemd/nspawn: a tmpfs of this namespace, not the host's.
  echo "mount -t tmpfs -o mode=0755,size=1m hmlab-nspawn /run/systemd/nspawn"
}

# Boot node N: private mount namespace, overlay root, systemd-nspawn --boot in the node's network
# namespace; waits (<= 60 s) until its sshd answers.
ssh_node_boot() {
  local n=$1 d=$LAB_DISK/n$1 ns="${PREFIX}-n$1" dir outer init cg1
  dir=$(node_dir "$n")
  mkdir -p "$dir"
  install -d -m 0755 "$d/upper" "$d/work" "$d/root" "$d/mysql"
  ssh_root_script "$n" >"$dir/boot.sh"
  cg1=$(lab_cg_v1)
  [ -z "$LAB_CG" ] || mkdir -p "$LAB_CG/n$n"
  [ -z "$cg1" ] || mkdir -p "$cg1/n$n"
  [ -d /run/systemd/nspawn ] || make_mount_point /run/systemd/nspawn
  # --keep-unit --register=no: no systemd on the host to ask for a scope; the node stays in the lab's
  # cgroups. --capability=all: the node's root may add the VIP, mount FUSE, set ARP, as a server's does.
  (cg_join "$n" && { [ -z "$cg1" ] || echo "$BASHPID" >"$cg1/n$n/cgroup.procs"; } &&
    exec setsid unshare --mount --propagation private -- sh -c '. "$1"; shift; exec "$@"' sh "$dir/boot.sh" \
      systemd-nspawn --quiet --directory="$d/root" --boot --register=no --keep-unit \
      --machine="${PREFIX}-n$n" --hostname="n$n" --network-namespace-path="/run/netns/$ns" \
      --capability=all --bind=/dev/fuse --bind="$d/mysql:/var/lib/mysql" --tmpfs="$LAB_DISK_ROOT:mode=0700" \
      --console=passive) \
    </dev/null >>"$dir/console.log" 2>&1 &
  outer=$!
  disown "$outer"
  write_pid "$n" "$outer" nspawn.pid
  # PID 1 of the node: nspawn's child once it has booted (the first child may be nspawn's helper).
  node_booted() {
    local kid
    pid_alive "$2" || return 2
    for kid in $(cat "/proc/$2/task/$2/children" 2>/dev/null); do
      [ "$(cat "/proc/$kid/comm" 2>/dev/null)" = systemd ] && { write_pid "$1" "$kid" init.pid; return 0; }
    done
    return 1
  }
  wait_until 30 node_booted "$n" "$outer" ||
    die "node n$n: systemd did not start; console: $(tail -n 20 "$dir/console.log")"
  init=$(ssh_node_init "$n")
  sshd_up() {
    timeout 5 ip netns exec "${PREFIX}-client" ssh -n -F none -o BatchMode=yes -o ConnectTimeout=2 \
      -o UserKnownHostsFile="$(ssh_dir)/known_hosts" -o StrictHostKeyChecking=yes -i "$(ssh_dir)/id_ed25519" \
      "root@$(node_addr "$1" 0)" true 2>/dev/null
  }
  wait_until 60 sshd_up "$n" || die "node n$n (systemd $init): no sshd on $(node_addr "$n" 0) after 60 s; console: $(tail -n 20 "$dir/console.log")"
}

cmd_up_ssh() {
  for b in systemd-nspawn ssh ssh-keygen nsenter unshare setsid findmnt; do
    command -v "$b" >/dev/null || die "$b not found (scripts/install-deps.sh installs it)"
  done
  [ -x /usr/sbin/sshd ] || die "/usr/sbin/sshd not found (openssh-server; scripts/install-deps.sh)"
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
  grep -qw overlay /proc/filesystems || die "no overlay file system in this kernel"
  cmd_up -n 2 -l 1 "$@"
  lab_paths
  trap 'ssh_lab_fail "setup failed (line $LINENO)"' ERR
  trap 'ssh_lab_fail "interrupted"' INT TERM
  [ ! -e "$LAB_STATE" ] || rm -rf "$LAB_STATE"
  [ ! -e "$LAB_DISK" ] || rm -rf "$LAB_DISK"
  mkdir -p "$LAB_STATE" "$LAB_DISK"
  touch "$LAB_STATE/ssh-lab"
  if [ -n "$LAB_CG" ]; then mkdir -p "$LAB_CG" || LAB_CG=; fi
  ssh_make_keys
  local n
  for n in 1 2; do ssh_node_boot "$n"; done
  trap - ERR INT TERM
  echo "lab '$PREFIX' up: n1 $(node_addr 1 0), n2 $(node_addr 2 0): bare hosts (systemd, sshd), client $LAB_CLIENT"
  echo "ssh key $(ssh_dir)/id_ed25519, known hosts $(ssh_dir)/known_hosts"
  echo "ansible: $0 exec client ansible-playbook -i deploy/ansible/inventory.lab.ini deploy/ansible/site.yml"
}

ssh_lab_fail() {
  trap - ERR INT TERM
  echo "lab.sh: $*" >&2
  local n
  for n in 1 2; do
    [ -f "$(node_dir "$n")/console.log" ] || continue
    echo "--- n$n console (end)" >&2
    tail -n 15 "$(node_dir "$n")/console.log" >&2 || true
  done
  echo "lab.sh: tearing the lab down" >&2
  cmd_down -p "$PREFIX" >&2 || true
  exit 1
}

# rm_cgroup DIR: every process in DIR and below killed, then the directories removed, deepest first.
rm_cgroup() {
  local dir=$1
  [ -d "$dir" ] || return 0
  if [ -f "$dir/cgroup.kill" ]; then echo 1 >"$dir/cgroup.kill" 2>/dev/null || true; fi
  local procs pid
  for _ in $(seq 1 50); do
    procs=$(find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null || true)
    [ -z "$procs" ] && break
    for pid in $procs; do kill -KILL "$pid" 2>/dev/null || true; done
    sleep 0.1
  done
  # A killed task leaves cgroup.procs before the kernel lets its cgroup go (rmdir: EBUSY until it is
  # reaped): retry, bounded.
  for _ in $(seq 1 50); do
    find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ -d "$dir" ] || break
    sleep 0.1
  done
  [ ! -d "$dir" ] || echo "lab.sh: could not remove cgroup $dir" >&2
}

# Everything of the SSH nodes: processes (their cgroups killed), the nspawn state, the disks.
down_ssh_nodes() {
  local n pid cg1
  cg1=$(lab_cg_v1)
  for n in 1 2; do
    for pid in $(read_pid "$n" init.pid) $(read_pid "$n" nspawn.pid); do kill -KILL "$pid" 2>/dev/null || true; done
    [ -z "$LAB_CG" ] || rm_cgroup "$LAB_CG/n$n"
    [ -z "$cg1" ] || rm_cgroup "$cg1/n$n"
  done
  [ -z "$cg1" ] || rmdir "$cg1" 2>/dev/null || true
}
