#!/usr/bin/env bash
# Start moto's S3 server on 127.0.0.1 for the restore tests: it emulates GLACIER / DEEP_ARCHIVE
# (GET answers 403 InvalidObjectState until RestoreObject, which completes at once).
# Usage: scripts/moto-start.sh DIR        (stop with scripts/moto-stop.sh DIR)
# Env:   MOTO_PORT (default: first free port from 5000), MOTO_PYTHON (default python3)
# Prints S3_ENDPOINT=, S3_ACCESS_KEY=, S3_SECRET_KEY=, S3_REGION=, MOTO_PID= lines on stdout;
# progress and errors go to stderr. moto keeps everything in memory: stopping it discards the data.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$(realpath -m "$1")
PY=${MOTO_PYTHON:-python3}

if ! "$PY" -c 'import moto.server, flask, werkzeug' >/dev/null 2>&1; then
  echo "moto-start: moto's server is not installed for $PY; install it with: $PY -m pip install 'moto[server]==5.2.1' (or set IMGBACKUP_TEST_SERVERS to leave moto out)" >&2
  exit 1
fi
command -v curl >/dev/null 2>&1 || { echo "moto-start: curl not found (apt-get install -y curl)" >&2; exit 1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -n "${MOTO_PORT:-}" ]; then
  if port_busy "$MOTO_PORT"; then
    echo "moto-start: 127.0.0.1:$MOTO_PORT is already in use; set MOTO_PORT to a free port" >&2
    exit 1
  fi
else
  MOTO_PORT=5000
  while port_busy "$MOTO_PORT"; do MOTO_PORT=$((MOTO_PORT + 1)); done
fi

mkdir -p "$DIR"
# setsid: moto must not receive the terminal's Ctrl-C before the test run has cleaned up
setsid "$PY" -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >"$DIR/moto.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$DIR/moto.pid"
ok=0
trap '[ "$ok" = 1 ] || { echo "moto-start: failed; see $DIR/moto.log" >&2; bash "$(dirname "$0")/moto-stop.sh" "$DIR"; }' EXIT
for _ in $(seq 1 150); do
  kill -0 "$pid" 2>/dev/null || { echo "moto-start: moto exited:" >&2; tail -5 "$DIR/moto.log" >&2; exit 1; }
  curl -s -o /dev/null "http://127.0.0.1:$MOTO_PORT/" && break
  sleep 0.2
done
curl -s -o /dev/null -f "http://127.0.0.1:$MOTO_PORT/" || { echo "moto-start: moto not answering on $MOTO_PORT after 30 s" >&2; exit 1; }
ok=1
echo "S3_ENDPOINT=http://127.0.0.1:$MOTO_PORT"
# moto accepts any key pair
echo "S3_ACCESS_KEY=motoaccesskey"
echo "S3_SECRET_KEY=motosecretkey"
echo "S3_REGION=us-east-1"
echo "MOTO_PID=$pid"
