#!/usr/bin/env bash
# test-python.sh — the Python client (clients/python) against private
# daemons: the examples of Modal's Sandbox docs with `import sandboxd as
# modal`, streams, stdin, errors, files, images, reconnection.  The client
# runs from the source tree (PYTHONPATH), nothing installed.
set -u
top=${srcdir:-$(dirname "$0")/..}
py=${PYTHON:-python3}
state=${SBX_STATE_DIR:-/var/lib/sandboxd}
if ! command -v "$py" >/dev/null 2>&1; then echo "SKIP: no $py"; exit 77; fi
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 9))'; then
	echo "SKIP: $("$py" --version 2>&1) is older than the client's 3.9"; exit 77
fi
if [ "$(id -u)" -ne 0 ]; then echo "SKIP: needs root (the daemon makes namespaces, cgroups, mounts)"; exit 77; fi
for image in busybox debian-slim; do
	if [ ! -f "$state/images/$image/config.json" ]; then
		echo "SKIP: no $image image in $state (run runtime/images/sbx-mkimage $image)"; exit 77
	fi
done
export SBX_DAEMON=${SBX_DAEMON:-./sandboxd} SBX_MONITOR=${SBX_MONITOR:-./sandboxd-monitor}
export PYTHONPATH="$top/clients/python${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1
exec "$py" -m unittest discover -s "$top/clients/python/tests" -v
