#!/usr/bin/env bash
# bench_grpc_floor_cli (ctest): bench-grpc-floor measures every client/server pair, plaintext and over
# mutual TLS (throwaway certificates from scripts/hamirror-certs), with few pings; bad usage exits 64.
# Usage: grpc_floor_test.sh PATH/TO/bench-grpc-floor PATH/TO/hamirror-certs
set -uo pipefail
BIN=$1
CERTS=$2
# shellcheck source=check_lib.sh
source "$(dirname "$0")/check_lib.sh"

sh "$CERTS" --out "$T/certs" --days 1 bench=127.0.0.1 >/dev/null || { echo "FAILED: hamirror-certs"; exit 1; }

"$BIN" --runs 1 --pings 20 --big-pings 20 --sizes 100,65536 --tls-dir "$T/certs/bench" >"$T/out" 2>"$T/err"
rc=$?
cat "$T/out"
check "exit 0 (stderr: $(grep -m1 error= "$T/err"))" [ "$rc" = 0 ]
# 7 default pairs x 2 sizes, plaintext; TLS for the 6 gRPC pairs.
rows=$(grep -c '^| [a-zA-Z]' "$T/out")
check "26 result rows plus the header, got $rows" [ "$rows" = 27 ]
for label in "plain TCP socket" "sync / sync" "sync / async CQ" "sync + acks thread / async CQ" \
  "async CQ / async CQ" "callback / async CQ" "callback / callback"; do
  check "row $label, 100 B and 64 KiB" [ "$(grep -c "^| $label | no | \(100 B\|64 KiB\) |" "$T/out")" = 2 ]
done
check "TLS rows" [ "$(grep -c '^| .* | yes | ' "$T/out")" = 12 ]
check "every measurement has latencies and both sides' context switches" \
  [ "$(grep -c 'p50_ns=[1-9].* server_cs=[0-9]' "$T/err")" = 26 ]
check "no measurement failed" [ "$(grep -c 'error=' "$T/err")" = 0 ]
check "p50 in µs is a positive number on every row" \
  [ "$(awk -F'|' 'NR > 4 && $5 + 0 > 0' "$T/out" | wc -l)" = 26 ]

"$BIN" --rows tcp/cq >/dev/null 2>&1
check "a bad pair exits 64" [ $? = 64 ]
"$BIN" --no-plain >/dev/null 2>&1
check "--no-plain without --tls-dir exits 64" [ $? = 64 ]
"$BIN" --tls-dir "$T/nowhere" >/dev/null 2>&1
check "a missing TLS directory exits 64" [ $? = 64 ]
"$BIN" --pings 5 >/dev/null 2>&1
check "too few pings exits 64" [ $? = 64 ]

checks_done
