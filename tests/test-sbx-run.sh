#!/usr/bin/env bash
# test-sbx-run.sh — the sbx-run tool end to end, as a user runs it: output,
# returncodes, its own errors, exec mode, limits.
set -u
sbx_run=${SBX_RUN:-./sbx-run}
state=${SBX_STATE_DIR:-/var/lib/sandboxd}
if [ "$(id -u)" -ne 0 ]; then echo "SKIP: needs root (namespaces, cgroups, mounts)"; exit 77; fi
if [ ! -f "$state/images/busybox/config.json" ]; then
	echo "SKIP: no busybox image in $state (run runtime/images/sbx-mkimage busybox)"; exit 77
fi
run_dir=$(mktemp -d /run/sbx-run-test.XXXXXX)
chmod 0711 "$run_dir"
trap 'rm -rf "$run_dir"' EXIT
failed=0
sbx() { "$sbx_run" --run-dir "$run_dir" --image busybox "$@"; }
check() { # check NAME WANT GOT
	if [ "$2" = "$3" ]; then echo "ok   $1"; else echo "FAIL $1: want [$2], got [$3]"; failed=1; fi
}

check "output" "hello" "$(sbx -- echo hello)"
sbx -- sh -c 'exit 7'; check "returncode" 7 $?
sbx -- sh -c 'kill -TERM $$'; check "signal returncode" 143 $?
check "the tool's own argv reaches the sandbox intact" "a b c" "$(sbx -- sh -c 'echo "$@"' sh a b c)"
check "env and workdir" "bar /tmp" "$(sbx --env FOO=bar --workdir /tmp -- sh -c 'echo $FOO $(pwd)')"
check "user" "1000:2000" "$(sbx --user 1000:2000 -- sh -c 'echo $(id -u):$(id -g)')"
check "exec mode" "2" "$(sbx --exec -- sh -c 'echo $$')"
sbx --memory 32 -- sh -c 'x=a; while :; do x=$x$x; done' 2>/dev/null; check "oom returncode" 137 $?
sbx --memory 12k -- true 2>/dev/null; check "bad number is the tool's error" 125 $?
sbx -- /no/such/program 2>/dev/null; check "missing program is the tool's error" 125 $?
"$sbx_run" --run-dir "$run_dir" --image no-such-image -- true 2>/dev/null; check "unknown image" 125 $?
left=$(find "$run_dir/sandboxes" -mindepth 1 2>/dev/null | wc -l)
check "nothing left in the run dir" 0 "$left"
check "no cgroup left" 0 "$(find /sys/fs/cgroup -maxdepth 6 -type d -name sbx-run 2>/dev/null | wc -l)"
exit $failed
