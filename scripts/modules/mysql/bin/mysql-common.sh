# shellcheck shell=bash
# Shared by start_prim and stop_prim (sourced). Settings come from the <var>s of conf/userconfig.xml;
# the defaults below are for running a script by hand.
MYSQL_SERVER=${MYSQL_SERVER:-mariadbd}
MYSQL_FLAVOR=${MYSQL_FLAVOR:-mariadb}
MYSQL_PORT=${MYSQL_PORT:-3306}
MYSQL_DATADIR=${MYSQL_DATADIR:-/var/lib/mysql}
MYSQL_RUNDIR=${MYSQL_RUNDIR:-/run/mysqld}
MYSQL_LOG_ERROR=${MYSQL_LOG_ERROR:-/var/log/hamirror/mysql-server.err}
MYSQL_OS_USER=${MYSQL_OS_USER:-mysql}
MYSQL_DEFAULTS_FILE=${MYSQL_DEFAULTS_FILE:-}
MYSQL_OPTIONS=${MYSQL_OPTIONS:-}
MYSQL_START_TIMEOUT=${MYSQL_START_TIMEOUT:-240}
MYSQL_STOP_TIMEOUT=${MYSQL_STOP_TIMEOUT:-240}
MYSQL_SOCKET=$MYSQL_RUNDIR/mysqld.sock
MYSQL_PIDFILE=$MYSQL_RUNDIR/mysqld.pid
# The server binaries live in /usr/sbin, which a daemon's environment may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin:/sbin ;; esac

# Into the module log (hamirror log); $SAFE is first on PATH for module scripts.
log_i() { hamirror printi "$*" 2>/dev/null || echo "I $*"; }
log_w() { hamirror printw "$*" 2>/dev/null || echo "W $*"; }
log_e() { hamirror printe "$*" 2>/dev/null || echo "E $*"; }

defaults_opt() {
  if [ -n "$MYSQL_DEFAULTS_FILE" ]; then echo "--defaults-file=$MYSQL_DEFAULTS_FILE"; else echo --no-defaults; fi
}

# True while PID runs (a zombie no longer serves: it counts as gone).
alive() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

# PIDs of this module's server: the pid file's, plus any process named MYSQL_SERVER whose command line
# names our data directory (a server whose pid file was lost). Never a server of another data directory.
server_pids() {
  local pid comm
  {
    [ -s "$MYSQL_PIDFILE" ] && cat "$MYSQL_PIDFILE"
    for d in /proc/[0-9]*; do
      pid=${d#/proc/}
      comm=$(cat "$d/comm" 2>/dev/null) || continue
      [ "$comm" = "$(basename "$MYSQL_SERVER")" ] || continue
      tr '\0' ' ' <"$d/cmdline" 2>/dev/null | grep -q -- "--datadir=$MYSQL_DATADIR " && echo "$pid"
    done
  } | sort -un | while read -r pid; do alive "$pid" && echo "$pid"; done
}

# wait_gone SECONDS PID...: 0 once none of them runs.
wait_gone() {
  local limit=$(($1 * 10)) i p left
  shift
  for ((i = 0; i < limit; i++)); do
    left=0
    for p in "$@"; do alive "$p" && left=1; done
    [ "$left" = 0 ] && return 0
    sleep 0.1
  done
  return 1
}
