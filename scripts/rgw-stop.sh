#!/usr/bin/env bash
# Stop the daemons scripts/rgw-start.sh started in DIR (rgw, osd, mon), by PID file only, so that
# other Ceph processes on the machine are never touched. Does not delete DIR.
# Usage: scripts/rgw-stop.sh [--discard] DIR
#   --discard: the caller deletes DIR next, so skip the graceful shutdown (~5 s) and SIGKILL at once.
set -u
discard=0
if [ "${1:-}" = --discard ]; then discard=1; shift; fi
[ $# -ge 1 ] || { echo "usage: $0 [--discard] DIR" >&2; exit 2; }
DIR=$(realpath -m "$1")

# The daemons double-fork, so they are children of PID 1; in containers whose PID 1 doesn't reap,
# a dead daemon stays a zombie that `kill -0` still reports as alive.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}
wait_gone() { # pid, tries of 0.2 s
  for _ in $(seq 1 "$2"); do alive "$1" || return 0; sleep 0.2; done
  ! alive "$1"
}

for name in client.rgw osd.0 mon.a; do
  f=$DIR/run/$name.pid
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  rm -f "$f"
  alive "$pid" || continue
  # a stale PID file must not make us kill an unrelated process that reused the PID
  case $name in client.rgw) want=radosgw ;; osd.0) want=ceph-osd ;; *) want=ceph-mon ;; esac
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
  [ "$comm" = "$want" ] || { echo "rgw-stop: PID $pid in $f is '$comm', not $want; not killing" >&2; continue; }
  if [ "$discard" = 1 ]; then
    kill -KILL "$pid" 2>/dev/null
    # don't let the caller delete DIR under a daemon that is still writing into it
    wait_gone "$pid" 50 || echo "rgw-stop: $name ($pid) still alive after SIGKILL" >&2
    continue
  fi
  kill -TERM "$pid"
  # radosgw is stateless but its SIGTERM shutdown takes ~7-12 s (background threads); give it 2 s.
  # osd/mon get 60 s: memstore only persists (writes its data out) on a clean TERM shutdown.
  n=300; [ "$name" = client.rgw ] && n=10
  if ! wait_gone "$pid" "$n"; then
    echo "rgw-stop: $name ($pid) did not exit, SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null
  fi
done
