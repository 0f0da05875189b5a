#!/usr/bin/env bash
# gRPC's latency floor on this machine (docs/benchmarks.md, "gRPC's latency floor on this machine"):
# runs bench-grpc-floor in plaintext and over mutual TLS, with a throwaway CA and node certificate
# (scripts/hamirror-certs, naming 127.0.0.1) that are removed afterwards, once per gRPC poll strategy.
# Prints `uptime` before and after each, and bench-grpc-floor's markdown table (medians of RUNS
# interleaved runs).
#
# Knobs (env): RUNS=3 PINGS=20000 BIG_PINGS=2000 BENCH_GRPC_FLOOR=build/bin/bench-grpc-floor
#   POLL_STRATEGIES="default poll": GRPC_POLL_STRATEGY for each table; "default" leaves it unset
#   (gRPC's epoll1), "poll" is what hamirror-fs runs with
# Extra arguments go to bench-grpc-floor (e.g. --rows sync/cq,cq/cq --sizes 100,4096).
# Per-measurement key=value lines go to stderr. Runtime with the defaults: ~4 min per strategy on a
# loaded 2-vCPU VM. Not part of ctest (bench_grpc_floor_cli runs the binary briefly).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
PINGS=${PINGS:-20000}
BIG_PINGS=${BIG_PINGS:-2000}
POLL_STRATEGIES=${POLL_STRATEGIES:-default poll}
BENCH_GRPC_FLOOR=${BENCH_GRPC_FLOOR:-$REPO/build/bin/bench-grpc-floor}
if [ ! -x "$BENCH_GRPC_FLOOR" ]; then
  echo "grpc-floor.sh: $BENCH_GRPC_FLOOR not built (cmake --build build --target bench-grpc-floor)" >&2
  exit 1
fi

W=$(mktemp -d /tmp/grpc-floor.XXXXXX)
trap 'rm -rf "$W"' EXIT
sh "$REPO/scripts/hamirror-certs" --out "$W/certs" --days 1 bench=127.0.0.1 >/dev/null

rc=0
for strategy in $POLL_STRATEGIES; do
  echo "uptime before: $(uptime)"
  if [ "$strategy" = default ]; then
    env -u GRPC_POLL_STRATEGY "$BENCH_GRPC_FLOOR" --runs "$RUNS" --pings "$PINGS" --big-pings "$BIG_PINGS" \
      --tls-dir "$W/certs/bench" "$@" || rc=$?
  else
    GRPC_POLL_STRATEGY=$strategy "$BENCH_GRPC_FLOOR" --runs "$RUNS" --pings "$PINGS" --big-pings "$BIG_PINGS" \
      --tls-dir "$W/certs/bench" "$@" || rc=$?
  fi
  echo
  echo "uptime after: $(uptime)"
  echo
done
exit $rc
