# The small harness of the bench tools' ctest scripts (bench/*_test.sh): a scratch directory T removed
# on exit, `check DESCRIPTION COMMAND...` counting failures, and `checks_done` ending the script.
# shellcheck shell=bash
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
check() {  # check DESCRIPTION COMMAND...: counts a failure if COMMAND fails
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; fails=$((fails + 1)); fi
}
checks_done() {  # exits 1 if a check failed
  [ "$fails" = 0 ] || { echo "$fails check(s) failed"; exit 1; }
  echo "all checks passed"
}
