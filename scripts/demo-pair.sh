#!/usr/bin/env bash
# `scripts/demo.sh pair`: the data path alone, without the manager. One machine plays both servers. Two local directories, node-a (primary) and
# node-b (secondary), each with hamirror-fs mounted over it, replicating synchronously over 127.0.0.1.
# MariaDB runs with its data directory on node-a; every file it writes appears on node-b as it is
# written. At the end MariaDB is started on node-b's copy, as a failover would do.
#
#   sudo bash scripts/demo.sh pair        # installs packages, builds, runs the walk-through (fresh Debian 12)
#   SKIP_DEPS=1 SKIP_BUILD=1 bash scripts/demo.sh pair   # rerun without apt-get / cmake
#   DEMO_DIR=/var/tmp/hamirror-demo SYSBENCH_SECONDS=10
# Everything it starts is stopped by PID and every mount is undone on exit, also on failure or Ctrl-C.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root (packages, FUSE mounts, MariaDB)" >&2; exit 1; }
DEMO_DIR=${DEMO_DIR:-/var/tmp/hamirror-demo}
SYSBENCH_SECONDS=${SYSBENCH_SECONDS:-10}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "1. Installing dependencies (scripts/install-deps.sh)"
if [ "${SKIP_DEPS:-0}" = 1 ]; then echo "skipped (SKIP_DEPS=1)"; else bash scripts/install-deps.sh; fi

step "2. Building hamirror (CMake, Release, $(nproc) cores, into build/)"
if [ "${SKIP_BUILD:-0}" = 1 ]; then
  echo "skipped (SKIP_BUILD=1)"
else
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build --target hamirror-fs -j "$(nproc)"
fi
export HAMIRROR_FS=${HAMIRROR_FS:-$REPO/build/bin/hamirror-fs}
[ -x "$HAMIRROR_FS" ] || { echo "demo.sh: $HAMIRROR_FS was not built" >&2; exit 1; }
# shellcheck source=../tests/integration/mariadb-lib.sh
source "$REPO/tests/integration/mariadb-lib.sh"

PRIMARY=$DEMO_DIR/node-a
SECONDARY=$DEMO_DIR/node-b
cleanup() {
  local rc=$?
  set +e
  mdb_stop >/dev/null 2>&1
  hm_pair_stop >/dev/null 2>&1
  findmnt -n -o TARGET -l | grep "^$DEMO_DIR/" | sort -r | while read -r m; do umount -l "$m"; done
  if [ "$rc" -eq 0 ]; then rm -rf "$DEMO_DIR"; else echo "demo.sh: failed (exit $rc); logs kept in $DEMO_DIR" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# A previous demo killed hard may have left mounts behind.
for m in $(findmnt -n -o TARGET -l | grep "^$DEMO_DIR/" | sort -r || true); do umount -l "$m"; done
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"

step "3. Starting the secondary (node-b) and the primary (node-a) on 127.0.0.1"
hm_pair_start "$DEMO_DIR" "$PRIMARY" "$SECONDARY"
echo "secondary: $HAMIRROR_FS secondary --dir $SECONDARY --listen 127.0.0.1:$HM_PORT --insecure  (pid $HM_SECONDARY_PID)"
echo "primary:   $HAMIRROR_FS primary --dir $PRIMARY --peer 127.0.0.1:$HM_PORT --insecure  (pid $HM_PRIMARY_PID)"
echo "(--insecure: no TLS between the two daemons, acceptable on loopback only)"
show findmnt -o TARGET,SOURCE,FSTYPE,OPTIONS --list --mountpoint "$PRIMARY"
show findmnt -o TARGET,SOURCE,FSTYPE,OPTIONS --list --mountpoint "$SECONDARY"

step "4. MariaDB with its data directory on the primary mount (node-a/data)"
mdb_install "$PRIMARY/data" "$DEMO_DIR/run-a"
mdb_start "$PRIMARY/data" "$DEMO_DIR/run-a"
echo "mariadbd pid $MDB_PID, socket $MDB_SOCK"
show mariadb --no-defaults -S "$MDB_SOCK" -u root -t -e \
  "SELECT @@datadir, @@innodb_flush_log_at_trx_commit AS trx_commit, @@sync_binlog, @@log_bin, @@innodb_flush_method"

step "5. A table and some rows; the files arrive on node-b as MariaDB writes them"
mdb_sql "CREATE DATABASE demo; CREATE TABLE demo.orders (id INT AUTO_INCREMENT PRIMARY KEY, item VARCHAR(64),
  qty INT, at TIMESTAMP DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB"
for i in $(seq 1 200); do echo "INSERT INTO demo.orders (item, qty) VALUES ('item-$i', $i);"; done |
  mariadb --no-defaults -S "$MDB_SOCK" -u root
show mdb_sql "SELECT COUNT(*) AS rows_committed, SUM(qty) AS total_qty FROM demo.orders"
# Write the table's dirty pages into its .ibd file, so both copies of the file are complete.
mdb_sql "FLUSH TABLES demo.orders FOR EXPORT; UNLOCK TABLES"
echo "--- node-a (primary mount):"
show ls -l "$PRIMARY/data/demo"
echo "--- node-b (secondary mount, read-only to local programs):"
show ls -l "$SECONDARY/data/demo"
echo "--- checksums of the same files on both nodes:"
(cd "$PRIMARY/data" && sha256sum demo/orders.ibd demo/orders.frm binlog.000001) | sed 's/^/node-a  /'
(cd "$SECONDARY/data" && sha256sum demo/orders.ibd demo/orders.frm binlog.000001) | sed 's/^/node-b  /'
a=$(cd "$PRIMARY/data" && sha256sum demo/orders.ibd demo/orders.frm binlog.000001)
b=$(cd "$SECONDARY/data" && sha256sum demo/orders.ibd demo/orders.frm binlog.000001)
if [ "$a" = "$b" ]; then echo "identical on both nodes"; else echo "demo.sh: the copies differ" >&2; exit 1; fi

step "6. A short sysbench oltp_write_only ($SYSBENCH_SECONDS s, 4 threads, full durability) on the primary"
SB_TABLE_SIZE=${SB_TABLE_SIZE:-5000}
sb_prepare "$DEMO_DIR/sysbench-prepare.log"
tps=$(sb_run "$SYSBENCH_SECONDS" "$DEMO_DIR/sysbench-run.log")
grep -E 'transactions:|queries:|95th percentile' "$DEMO_DIR/sysbench-run.log" || true
echo "every one of these commits was on node-b's disk before MariaDB acknowledged it ($tps tps)"

step "7. Stopping MariaDB and both daemons cleanly, then starting MariaDB on node-b's copy (a failover)"
mdb_stop
echo "mariadbd stopped"
hm_pair_stop
echo "hamirror-fs primary and secondary stopped; directories unmounted"
mdb_start "$SECONDARY/data" "$DEMO_DIR/run-b"
show mdb_sql "SELECT COUNT(*) AS rows_on_node_b, SUM(qty) AS total_qty FROM demo.orders"
show mdb_sql "CHECKSUM TABLE sbtest.sbtest1"
mdb_stop
step "Demo finished: node-b had every committed row."
exit 0
