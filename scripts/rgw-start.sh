#!/usr/bin/env bash
# Start a minimal single-node Ceph (1 mon, 1 osd, no mgr) + radosgw bound to 127.0.0.1, as a real S3
# for the integration tests. Adapted from the measured recipe in the team's shared ceph-rgw notes;
# this copy is self-contained (no reference to it at runtime).
# Usage: scripts/rgw-start.sh DIR        (stop with scripts/rgw-stop.sh DIR)
# Env:   RGW_PORT (7480), MON_PORT (3300), OSD_STORE (memstore|bluestore, default memstore),
#        MEMSTORE_BYTES (2 GiB), BLUESTORE_BYTES (10 GiB), S3_ACCESS_KEY, S3_SECRET_KEY
# Prints S3_ENDPOINT=, S3_ACCESS_KEY=, S3_SECRET_KEY=, S3_REGION=, CEPH_PIDS= lines on stdout;
# progress goes to stderr. Re-running on an existing DIR restarts the daemons on the existing data
# (memstore only keeps data across a clean rgw-stop.sh).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$(realpath -m "$1")
RGW_PORT=${RGW_PORT:-7480}
MON_PORT=${MON_PORT:-3300}
# memstore: first start 2.6-2.8 s vs 6.1-6.6 s for bluestore (its mkfs alone is ~2.4 s; measured
# on 2 cores), and the tests store well under 1 GB. It keeps ~2x the stored bytes in RAM, so use
# bluestore for big manual experiments.
OSD_STORE=${OSD_STORE:-memstore}
# Capacity the OSD reports; allocated lazily, so a ceiling, not a reservation (RSS ~2x stored).
# Once full, the OSD blocks writes and S3 requests hang rather than fail. rgw frees deleted data
# past an object's first 4 MiB (all of a multipart object) only after its 2 h GC delay, so
# deleted bytes count too.
MEMSTORE_BYTES=${MEMSTORE_BYTES:-2147483648}
BLUESTORE_BYTES=${BLUESTORE_BYTES:-10737418240}
AK=${S3_ACCESS_KEY:-testaccesskey}
SK=${S3_SECRET_KEY:-testsecretkey}
CONF=$DIR/ceph.conf
T0=$EPOCHREALTIME
log() { awk -v a="$EPOCHREALTIME" -v b="$T0" -v m="$*" 'BEGIN{printf "[%6.2fs] rgw-start: %s\n", a-b, m}' >&2; }
CEPH=(ceph -c "$CONF" --connect-timeout 10)
HERE=$(cd "$(dirname "$0")" && pwd)

for cmd in radosgw ceph-mon ceph-osd ceph radosgw-admin monmaptool ceph-authtool uuidgen curl; do
  command -v "$cmd" >/dev/null 2>&1 \
    || { echo "rgw-start: '$cmd' not found; run: bash scripts/rgw-install.sh" >&2; exit 1; }
done
case $OSD_STORE in memstore | bluestore) ;; *) echo "rgw-start: OSD_STORE must be memstore or bluestore" >&2; exit 2 ;; esac
# admin sockets live in DIR/run, and unix socket paths are limited to 107 bytes
sock="$DIR/run/client.rgw.asok"
[ "${#sock}" -le 107 ] || { echo "rgw-start: DIR path too long for unix sockets ($sock); use a shorter DIR" >&2; exit 2; }

# A daemon already listening on our ports would make the readiness probes below succeed against
# someone else's cluster (same default keys), and the tests would silently run there.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$RGW_PORT" "$MON_PORT"; do
  if port_busy "$p"; then
    echo "rgw-start: 127.0.0.1:$p is already in use (another radosgw/ceph-mon?); set RGW_PORT/MON_PORT or stop it" >&2
    exit 1
  fi
done

ok=0
# on any failure, stop whatever this script started (by PID file)
trap '[ "$ok" = 1 ] || { echo "rgw-start: failed; stopping daemons in $DIR" >&2; "$HERE/rgw-stop.sh" "$DIR"; }' EXIT

fresh=0
if [ ! -f "$CONF" ]; then
  fresh=1
  mkdir -p "$DIR"/{mon/a,osd/0,rgw,log,run}
  FSID=$(uuidgen)
  cat >"$CONF" <<CONF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MON_PORT
mon initial members = a
public network = 127.0.0.0/8
cluster network = 127.0.0.0/8
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
keyring = $DIR/keyring
crash dir = $DIR/crash
err to stderr = false
log to stderr = false
# one OSD: every pool must be satisfiable with a single replica
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
# headroom: every pool's PGs land on the one OSD
mon max pg per osd = 1000
# by default the mon shuts itself down below 5% free disk; CI disks can be that full
mon data avail warn = 1
mon data avail crit = 0
# faster map commits -> faster osd boot and rgw pool creation on first start (13.6 s -> 3 s)
paxos propose interval = 0.1
paxos min wait = 0.01

[mon]
mon data = $DIR/mon/\$id
mon cluster log file = $DIR/log/cluster.log
[osd]
osd data = $DIR/osd/\$id
osd objectstore = $OSD_STORE
memstore device bytes = $MEMSTORE_BYTES
# must not be <osd data>/block: bluestore then creates a symlink named block pointing at itself
bluestore block path = $DIR/osd/block.\$id.img
bluestore block size = $BLUESTORE_BYTES
bluestore block create = true
bluestore fsck on mount = false
osd memory target = 1073741824
# fast shutdown skips the umount, and memstore only writes its data out on a clean umount
osd fast shutdown = false
osd op num shards = 2
osd op num threads per shard = 2
[client.rgw]
# radosgw forces ms_mon_client_mode=secure by default; with auth=none no secure mode exists -> EACCES (-13), 300 s hang
ms mon client mode = crc
rgw data = $DIR/rgw
# tcp_nodelay: small GETs 45 ms -> 6 ms (Nagle + delayed ACK)
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw dns name = 127.0.0.1
rgw enable usage log = false
rgw thread pool size = 64
CONF
  monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
  log "mon mkfs done"
fi

ceph-mon -c "$CONF" -i a
for _ in $(seq 1 100); do "${CEPH[@]}" mon stat >/dev/null 2>&1 && break; sleep 0.2; done
"${CEPH[@]}" mon stat >/dev/null 2>&1 || { echo "rgw-start: mon not answering, see $DIR/log/mon.a.log" >&2; exit 1; }
log "mon up"

if [ "$fresh" = 1 ]; then
  OSD_UUID=$(uuidgen)
  id=$("${CEPH[@]}" osd new "$OSD_UUID")
  [ "$id" = 0 ] || { echo "rgw-start: unexpected osd id $id" >&2; exit 1; }
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >"$DIR/log/osd-mkfs.out" 2>&1 \
    || { echo "rgw-start: osd mkfs failed:" >&2; tail -5 "$DIR/log/osd-mkfs.out" >&2; exit 1; }
  log "osd mkfs done ($OSD_STORE)"
fi
ceph-osd -c "$CONF" -i 0
osd_up() { "${CEPH[@]}" osd dump 2>/dev/null | grep -q '^osd.0 up'; }
for _ in $(seq 1 300); do osd_up && break; sleep 0.2; done
osd_up || { echo "rgw-start: osd.0 not up after 60 s, see $DIR/log/osd.0.log" >&2; exit 1; }
log "osd up"

# radosgw daemonizes once initialised; the timeout only bounds that foreground phase
timeout 60 radosgw -c "$CONF" -n client.rgw --rados-mon-op-timeout 0 \
  || { echo "rgw-start: radosgw failed to start, see $DIR/log/client.rgw.log" >&2; exit 1; }
for _ in $(seq 1 300); do
  curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/" && break; sleep 0.2
done
curl -s -o /dev/null -f "http://127.0.0.1:$RGW_PORT/" || { echo "rgw-start: rgw not answering, see $DIR/log" >&2; exit 1; }
log "rgw answering"

if [ "$fresh" = 1 ]; then
  radosgw-admin -c "$CONF" user create --uid=test --display-name=test \
    --access-key="$AK" --secret-key="$SK" >/dev/null
  log "user created"
fi
# the first request after user creation can still be refused while rgw's user cache catches up
code=000
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -w '%{http_code}' \
    --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AK:$SK" "http://127.0.0.1:$RGW_PORT/") || true
  [ "$code" = 200 ] && break; sleep 0.2
done
log "first authenticated S3 request: HTTP $code"
[ "$code" = 200 ] || { echo "rgw-start: S3 auth check failed (HTTP $code)" >&2; exit 1; }
ok=1
echo "S3_ENDPOINT=http://127.0.0.1:$RGW_PORT"
echo "S3_ACCESS_KEY=$AK"
echo "S3_SECRET_KEY=$SK"
echo "S3_REGION=us-east-1"
echo "CEPH_PIDS=$(cat "$DIR"/run/*.pid | tr '\n' ' ')"
