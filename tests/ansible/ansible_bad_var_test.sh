#!/usr/bin/env bash
# deploy:ansible-bad-var (issue 13): a variable that makes an invalid configuration (a heartbeat timeout
# below twice the pulse; a VIP that is not an address) stops deploy/ansible/site.yml in its first play,
# on the controller, with confcheck's `file:line: reason`; the bare lab hosts are left exactly as they
# were (no package, no /etc/hamirror, nothing written by the play). Environment as ansible_lab_test.sh.
set -Eeuo pipefail
: "${REPO:?}" "${WORK:?}"
export HAMIRROR_LAB=${HAMIRROR_LAB:-hmansbad}
LAB="$REPO/scripts/lab/lab.sh"
# shellcheck source=scripts/lab/bank-lib.sh
. "$REPO/scripts/lab/bank-lib.sh"
. "$REPO/tests/ansible/ansible_lib.sh"
trap '"$LAB" down >/dev/null 2>&1 || true' EXIT
trap 'exit 1' TERM INT

require_tools
mkdir -p "$WORK"
rm -rf "${WORK:?}"/*
build_deb
lab_up_ssh
upper_list() { find "/var/lib/hamirror-lab/$HAMIRROR_LAB/n$1/upper" \( -path '*/var/log/journal' -o -path '*/run' \) -prune -o -print | sort; }
before1=$(upper_list 1)
before2=$(upper_list 2)

check_rejected() {  # check_rejected LOG PATTERN -e VAR=VALUE
  local log=$1 pattern=$2
  shift 2
  if run_play "$log" "$@"; then fail "the play accepted $*"; exit 1; fi
  grep -Eq "$pattern" "$log" || { tail -n 25 "$log"; fail "no confcheck '$pattern' in the output"; exit 1; }
  say "  rejected: $(grep -Eo "$pattern" "$log" | head -1)"
  grep -q 'PLAY \[Install and configure' "$log" && { fail "the play went on to the nodes"; exit 1; }
  return 0
}
say "heartbeat timeout 100 ms (pulse 300 ms)"
check_rejected "$WORK/timeout.log" 'userconfig\.xml:[0-9]+: heartbeat timeout \(100ms\) must be at least twice pulse' \
  -e hamirror_heartbeat_timeout_ms=100
say "VIP that is not an address"
check_rejected "$WORK/vip.log" "userconfig\.xml:[0-9]+: invalid value 'not-an-address' for attribute 'addr'" \
  -e hamirror_vip=not-an-address

for n in 1 2; do
  for p in /usr/sbin/hamirrord /etc/hamirror /var/cache/hamirror /var/lib/hamirror; do
    ! node_wrote n$n $p || { fail "n$n: the play made $p"; exit 1; }
  done
done
[ "$(upper_list 1)" = "$before1" ] && [ "$(upper_list 2)" = "$before2" ] ||
  { diff <(echo "$before1") <(upper_list 1) || true; fail "files of a node changed"; exit 1; }
lab_down_clean
say "PASS"
