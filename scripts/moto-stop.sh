#!/usr/bin/env bash
# Stop the moto server scripts/moto-start.sh started in DIR, by its PID file only (never by name),
# and only if that PID is still a python running moto.server. Does not delete DIR.
# Usage: scripts/moto-stop.sh DIR
set -u
[ $# -ge 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$(realpath -m "$1")
f=$DIR/moto.pid
[ -f "$f" ] || exit 0
pid=$(cat "$f")
rm -f "$f"
alive() { # a zombie (state Z) is not alive: PID 1 in a container may never reap it
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}
alive "$pid" || exit 0
# a stale PID file must not make us kill an unrelated process that reused the PID
if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'moto.server'; then
  echo "moto-stop: PID $pid in $f is not moto.server; not killing" >&2
  exit 0
fi
kill -TERM "$pid" 2>/dev/null
for _ in $(seq 1 50); do alive "$pid" || exit 0; sleep 0.1; done
echo "moto-stop: moto ($pid) did not exit on TERM, SIGKILL" >&2
kill -KILL "$pid" 2>/dev/null
exit 0
