#!/usr/bin/env bash
# bench_mdtest_cli (ctest): bench-mdtest on a temporary local directory, as bench/metadata-compare.sh
# calls it. Usage: mdtest_lite_test.sh PATH/TO/bench-mdtest
set -uo pipefail
MDTEST=$1
# shellcheck source=check_lib.sh
source "$(dirname "$0")/check_lib.sh"
has() { [[ " $1 " == *" $2 "* ]]; }    # has LINE KEY=VALUE
matches() { [[ "$1" == $2 ]]; }          # matches TEXT GLOB

mkdir "$T/a"
out=$("$MDTEST" create "$T/a" --files 2500 --per-dir 1000 --size 3); rc=$?
check "create exits 0" [ "$rc" = 0 ]
check "create reports 2500 files in 3 dirs: $out" has "$out" "files=2500"
check "create line names its phase and dirs" has "$out" "phase=create"
check "create made 3 dirs" has "$out" "dirs=3"
check "2500 files on disk" [ "$(find "$T/a" -type f | wc -l)" = 2500 ]
check "files have 3 bytes" [ "$(stat -c %s "$T/a/d00002/f0002499")" = 3 ]
check "ops_per_s reported" [ -n "$(sed -n 's/.* ops_per_s=\([0-9][0-9]*\).*/\1/p' <<<"$out")" ]

out=$("$MDTEST" stat "$T/a" --files 2500 --per-dir 1000 --size 3); rc=$?
check "stat of 2500 files: $out" [ "$rc" = 0 ]
out=$("$MDTEST" stat "$T/a" --files 2501 --per-dir 1000 --size 3); rc=$?
check "stat of a missing file fails with ENOENT: $out" [ "$rc" = 1 ]
check "stat failure says ENOENT after 2500 files" has "$out" "errno_name=ENOENT"
check "stat failure counts the files done" has "$out" "files=2500"

out=$("$MDTEST" create "$T/a" --files 10 --per-dir 1000); rc=$?
check "create over existing dir fails: $out" [ "$rc" = 1 ]
check "create failure names EEXIST" has "$out" "errno_name=EEXIST"
check "create failure says what failed" matches "$out" "*error=mkdir $T/a/d00000: File exists"

cp -a "$T/a" "$T/b"
out=$("$MDTEST" compare "$T/a" "$T/b"); rc=$?
check "copy is identical: $out" [ "$rc" = 0 ]
check "says identical=yes" [ "$out" = "identical=yes" ]
printf abc >"$T/b/d00000/f0000007" && touch -r "$T/a/d00000/f0000007" "$T/b/d00000/f0000007"
out=$("$MDTEST" compare "$T/a" "$T/b" --metadata-only); rc=$?
check "--metadata-only does not read content: $out" [ "$rc" = 0 ]
out=$("$MDTEST" compare "$T/a" "$T/b"); rc=$?
check "full compare finds the content change: $out" matches "$out" "identical=no difference=d00000/f0000007: content*"
cp -a "$T/a/d00000/f0000007" "$T/b/d00000/f0000007"
chmod 600 "$T/b/d00001/f0001500"
out=$("$MDTEST" compare "$T/a" "$T/b" --metadata-only); rc=$?
check "mode change found: $out" [ "$rc" = 1 ]
check "difference names the file" matches "$out" "identical=no difference=d00001/f0001500*"

out=$("$MDTEST" unlink "$T/a" --files 2500 --per-dir 1000); rc=$?
check "unlink exits 0: $out" [ "$rc" = 0 ]
check "unlink removed 3 dirs" has "$out" "dirs=3"
check "directory empty after unlink" [ -z "$(ls -A "$T/a")" ]

# A create that stopped right after a mkdir leaves that directory: unlink of the files made removes it.
mkdir "$T/c" && "$MDTEST" create "$T/c" --files 1001 --per-dir 1000 >/dev/null && rm "$T/c/d00001/f0001000"
out=$("$MDTEST" unlink "$T/c" --files 1000 --per-dir 1000); rc=$?
check "unlink after a partial create: $out" [ "$rc" = 0 ]
check "partial create's extra directory removed" [ -z "$(ls -A "$T/c")" ]

# --mirror: every namespace operation repeated in a second directory by the peer behind the socket.
mkdir "$T/m" "$T/m2"
out=$("$MDTEST" create "$T/m" --files 1500 --per-dir 1000 --size 5 --mirror "$T/m2"); rc=$?
check "create with --mirror exits 0: $out" [ "$rc" = 0 ]
check "the mirror holds the 1500 files" [ "$(find "$T/m2" -type f | wc -l)" = 1500 ]
check "the mirror's files have the size asked" [ "$(stat -c %s "$T/m2/d00001/f0001499")" = 5 ]
listing() { (cd "$1" && find . -printf '%y %m %P\n' -type f -printf 'size %s %P\n' | sort); }
check "the mirror has the same names, types, modes and sizes" [ "$(listing "$T/m")" = "$(listing "$T/m2")" ]
out=$("$MDTEST" unlink "$T/m" --files 1500 --per-dir 1000 --mirror "$T/m2"); rc=$?
check "unlink with --mirror exits 0: $out" [ "$rc" = 0 ]
check "the mirror is empty after unlink" [ -z "$(ls -A "$T/m2")" ]
mkdir "$T/m2/d00000"
out=$("$MDTEST" create "$T/m" --files 10 --mirror "$T/m2"); rc=$?
check "a failure on the mirror fails the phase: $out" [ "$rc" = 1 ]
check "and names the mirror's errno" matches "$out" "*errno_name=EEXIST error=mirror of $T/m/d00000: File exists"
"$MDTEST" stat "$T/m" --files 10 --mirror "$T/m2" >/dev/null 2>&1; rc=$?
check "--mirror with stat is a usage error" [ "$rc" = 64 ]

"$MDTEST" create "$T/a" >/dev/null 2>&1; rc=$?
check "missing --files is a usage error" [ "$rc" = 64 ]
"$MDTEST" compare "$T/a" "$T/b" --fast >/dev/null 2>&1; rc=$?
check "unknown compare option is a usage error" [ "$rc" = 64 ]
"$MDTEST" create "$T/a" --files 10 --per-dir 0 >/dev/null 2>&1; rc=$?
check "--per-dir 0 is a usage error" [ "$rc" = 64 ]

checks_done
