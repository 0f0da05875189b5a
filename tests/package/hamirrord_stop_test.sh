#!/usr/bin/env bash
# deploy/systemd/hamirrord-stop, the ExecStop of hamirrord@.service, against a fake systemctl (first on
# PATH; it answers list-jobs and is-system-running from files) and a stand-in for hamirrord that records
# the signals it gets. Restart job or fresh upgrade flag: SIGUSR2 and nothing else, even when the daemon
# ignores it (then SIGKILL, never SIGTERM: a SIGTERM would stop the module). Anything else, and any
# shutdown: SIGTERM. The script returns only once the daemon is gone.
set -uo pipefail
STOP=${STOP_SCRIPT:?STOP_SCRIPT=path of hamirrord-stop}
tmp=$(mktemp -d)
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill -KILL "$daemon_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir "$tmp/bin"
cat >"$tmp/bin/systemctl" <<'FAKE'
#!/bin/sh
echo "$*" >>"$FAKE_DIR/calls"
case "$1" in
  list-jobs) cat "$FAKE_DIR/jobs" 2>/dev/null ;;
  is-system-running) cat "$FAKE_DIR/system" 2>/dev/null || echo running ;;
  *) echo "fake systemctl: unexpected $*" >&2; exit 1 ;;
esac
FAKE
chmod +x "$tmp/bin/systemctl"
export PATH="$tmp/bin:$PATH" FAKE_DIR=$tmp HAMIRROR_UPGRADE_FLAG=$tmp/package-upgrade

# start_daemon IGNORE: a stand-in for hamirrord writing each signal it gets to $tmp/signals; it exits 0.3 s
# after a handled one. IGNORE: signals it ignores (e.g. "USR2").
start_daemon() {
  rm -f "$tmp/signals" "$tmp/ready"
  bash -c '
    for s in USR2 TERM; do
      case " $1 " in *" $s "*) trap "echo $s-ignored >>'"$tmp"'/signals" "$s" ;;
        *) trap "echo $s >>'"$tmp"'/signals; sleep 0.3; exit 0" "$s" ;; esac
    done
    touch '"$tmp"'/ready
    for ((i = 0; i < 600; i++)); do sleep 0.1 & wait $!; done' daemon "${1:-}" &
  daemon_pid=$!
  for ((i = 0; i < 100; i++)); do [ -f "$tmp/ready" ] && return 0; sleep 0.05; done
  fail "the stand-in daemon did not start"
}
gone() { ! kill -0 "$daemon_pid" 2>/dev/null; }

# case NAME JOBS SYSTEM EXPECTED_SIGNALS [IGNORE]: runs hamirrord-stop mysql PID; checks its exit status
# (0), that the daemon is gone when it returns, and the signals the daemon recorded.
check() {
  local name=$1 jobs=$2 system=$3 want=$4 ignore=${5:-}
  printf '%s' "$jobs" >"$tmp/jobs"
  echo "$system" >"$tmp/system"
  start_daemon "$ignore"
  HAMIRROR_DETACH_WAIT=2 "$STOP" mysql "$daemon_pid" 2>"$tmp/err"
  local rc=$?
  cat "$tmp/err"
  [ "$rc" -eq 0 ] || fail "$name: hamirrord-stop exited $rc"
  gone || fail "$name: hamirrord-stop returned while the daemon still runs"
  wait "$daemon_pid" 2>/dev/null
  daemon_pid=""
  local got
  got=$(tr '\n' ' ' <"$tmp/signals" 2>/dev/null | sed 's/ $//')
  [ "$got" = "$want" ] || fail "$name: the daemon got '$got', expected '$want'"
  echo "ok: $name: $want"
}

restart_job=$'41 hamirrord@mysql.service restart running\n'
rm -f "$HAMIRROR_UPGRADE_FLAG"
check "systemctl restart" "$restart_job" running USR2
check "try-restart job" $'7 hamirrord@mysql.service try-restart running\n' running USR2
check "systemctl stop" $'42 hamirrord@mysql.service stop running\n' running TERM
check "no job listed" "" running TERM
check "another instance restarts" $'43 hamirrord@other.service restart running\n' running TERM
check "a unit whose name contains ours" $'44 xhamirrord@mysql.service restart running\n' running TERM
check "restart job during shutdown" "$restart_job" stopping TERM
check "restart, the daemon ignores SIGUSR2: SIGKILL, no SIGTERM" "$restart_job" running USR2-ignored USR2
touch "$HAMIRROR_UPGRADE_FLAG"
check "stop during a package upgrade" $'45 hamirrord@mysql.service stop running\n' running USR2
touch -d '-2 hours' "$HAMIRROR_UPGRADE_FLAG"
check "a stale upgrade flag (2 h old)" $'46 hamirrord@mysql.service stop running\n' running TERM
rm -f "$HAMIRROR_UPGRADE_FLAG"

# The main process already gone (systemd gives no $MAINPID): nothing to do.
"$STOP" mysql || fail "no MAINPID: exit $?"
echo "ok: no MAINPID"
# A daemon that outlives SIGTERM past the bound: exit 1 (systemd takes over), nothing else sent.
printf '' >"$tmp/jobs"
start_daemon TERM
HAMIRROR_STOP_WAIT=1 "$STOP" mysql "$daemon_pid" 2>/dev/null && fail "stop past its bound: exit 0"
gone && fail "stop past its bound: the daemon was killed"
[ "$(cat "$tmp/signals")" = TERM-ignored ] || fail "stop past its bound: signals '$(cat "$tmp/signals")'"
echo "ok: stop bounded"
"$STOP" 2>/dev/null; [ $? -eq 64 ] || fail "no module: not a usage error"
"$STOP" mysql 12x 2>/dev/null; [ $? -eq 64 ] || fail "bad pid: not a usage error"
echo "PASS"
