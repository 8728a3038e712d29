#!/usr/bin/env bash
# `npm test`: build, start the S3 servers the tests need, run the compiled tests.
# Usage: bash scripts/test.sh [node --test options] [test files]
#   Files may be given as dist/test/x.test.js or as test/x.test.ts; without files, every
#   dist/test/**/*.test.js runs. Give options in --opt=value form (a bare word is taken as a file),
#   e.g. --test-name-pattern=multipart.
# Env:
#   IMGBACKUP_TEST_SERVERS   comma list of s3rver,rgw,moto (default all three)
#   IMGBACKUP_TEST_RGW_ENDPOINT/_ACCESS_KEY/_SECRET_KEY  use this S3 as "rgw" instead of starting one
#   IMGBACKUP_TEST_RGW_OTHER_ACCESS_KEY/_SECRET_KEY      a second user there, who owns no bucket
#   RGW_PORT, MON_PORT       ports for the radosgw started here (default: first free from 7480 / 3300)
#   IMGBACKUP_TEST_MOTO_ENDPOINT  use this moto server instead of starting one
#   MOTO_PORT                port for the moto started here (default: first free from 5000)
set -euo pipefail
cd "$(dirname "$0")/.."

servers=${IMGBACKUP_TEST_SERVERS:-s3rver,rgw,moto}
export IMGBACKUP_TEST_SERVERS=$servers
want_rgw=0
want_moto=0
IFS=',' read -ra names <<<"$servers"
for n in "${names[@]}"; do
  n=${n//[[:space:]]/}
  case $n in
    rgw) want_rgw=1 ;;
    moto) want_moto=1 ;;
    s3rver | '') ;;
    *) echo "test.sh: unknown server '$n' in IMGBACKUP_TEST_SERVERS (known: s3rver, rgw, moto)" >&2; exit 2 ;;
  esac
done
start_rgw=0
if [ "$want_rgw" = 1 ] && [ -z "${IMGBACKUP_TEST_RGW_ENDPOINT:-}" ]; then
  start_rgw=1
  # fail before the build, in one line, rather than deep inside rgw-start.sh
  if ! command -v radosgw >/dev/null 2>&1; then
    echo "test.sh: radosgw is not installed: run \`bash scripts/rgw-install.sh\`, or set IMGBACKUP_TEST_SERVERS=s3rver to test against s3rver only" >&2
    exit 1
  fi
fi

start_moto=0
if [ "$want_moto" = 1 ] && [ -z "${IMGBACKUP_TEST_MOTO_ENDPOINT:-}" ]; then
  start_moto=1
  if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
    echo "test.sh: moto is not installed: run \`python3 -m pip install 'moto[server]==5.2.1'\`, or set IMGBACKUP_TEST_SERVERS=s3rver,rgw to leave the restore tests out" >&2
    exit 1
  fi
fi

# tsc never deletes outputs, so a removed or renamed test would keep running from dist/
rm -rf dist/test
npm run build

rgw_dir=
moto_dir=
# shellcheck disable=SC2317  # only called from the EXIT trap
cleanup() {
  if [ -n "$moto_dir" ]; then
    bash scripts/moto-stop.sh "$moto_dir" || true
    rm -rf "$moto_dir"
  fi
  if [ -n "$rgw_dir" ]; then
    bash scripts/rgw-stop.sh --discard "$rgw_dir" || true
    rm -rf "$rgw_dir"
  fi
}
trap cleanup EXIT
# make INT/TERM go through the EXIT trap so radosgw and moto never outlive us
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$start_rgw" = 1 ]; then
  port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
  free_port() { # first free port from $1 up; a developer's own radosgw often holds the default
    local p=$1
    while port_busy "$p"; do p=$((p + 1)); done
    echo "$p"
  }
  RGW_PORT=${RGW_PORT:-$(free_port 7480)}
  MON_PORT=${MON_PORT:-$(free_port 3300)}
  export RGW_PORT MON_PORT
  rgw_dir=$(mktemp -d "${TMPDIR:-/tmp}/imgbackup-rgw.XXXXXX")
  t0=$EPOCHREALTIME
  # bluestore on a sparse 20 GiB file, not memstore: the suite writes GBs over a run, radosgw
  # frees deleted data only hours later, and a full memstore OSD makes writes hang, not fail.
  if ! rgw_env=$(OSD_STORE=${OSD_STORE:-bluestore} BLUESTORE_BYTES=${BLUESTORE_BYTES:-21474836480} \
    bash scripts/rgw-start.sh "$rgw_dir"); then
    # the logs are deleted with the temp dir on exit; show their ends now
    for f in "$rgw_dir"/log/*.log; do
      [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 15 "$f" >&2; }
    done
    echo "test.sh: could not start radosgw (set IMGBACKUP_TEST_SERVERS=s3rver to skip it)" >&2
    exit 1
  fi
  get() { sed -n "s/^$1=//p" <<<"$rgw_env"; }
  IMGBACKUP_TEST_RGW_ENDPOINT=$(get S3_ENDPOINT)
  IMGBACKUP_TEST_RGW_ACCESS_KEY=$(get S3_ACCESS_KEY)
  IMGBACKUP_TEST_RGW_SECRET_KEY=$(get S3_SECRET_KEY)
  IMGBACKUP_TEST_RGW_REGION=$(get S3_REGION)
  # A second user, who owns nothing: what "access denied" looks like from a real S3.
  IMGBACKUP_TEST_RGW_OTHER_ACCESS_KEY=otheraccesskey
  IMGBACKUP_TEST_RGW_OTHER_SECRET_KEY=othersecretkey
  radosgw-admin -c "$rgw_dir/ceph.conf" user create --uid=other --display-name=other \
    --access-key="$IMGBACKUP_TEST_RGW_OTHER_ACCESS_KEY" \
    --secret-key="$IMGBACKUP_TEST_RGW_OTHER_SECRET_KEY" >/dev/null
  export IMGBACKUP_TEST_RGW_ENDPOINT IMGBACKUP_TEST_RGW_ACCESS_KEY IMGBACKUP_TEST_RGW_SECRET_KEY \
    IMGBACKUP_TEST_RGW_REGION IMGBACKUP_TEST_RGW_OTHER_ACCESS_KEY IMGBACKUP_TEST_RGW_OTHER_SECRET_KEY
  awk -v a="$EPOCHREALTIME" -v b="$t0" -v e="$IMGBACKUP_TEST_RGW_ENDPOINT" \
    'BEGIN{printf "test.sh: radosgw up at %s in %.1f s\n", e, a-b}'
fi

if [ "$start_moto" = 1 ]; then
  moto_dir=$(mktemp -d "${TMPDIR:-/tmp}/imgbackup-moto.XXXXXX")
  if ! moto_env=$(bash scripts/moto-start.sh "$moto_dir"); then
    echo "test.sh: could not start moto (set IMGBACKUP_TEST_SERVERS=s3rver,rgw to skip it)" >&2
    exit 1
  fi
  IMGBACKUP_TEST_MOTO_ENDPOINT=$(sed -n 's/^S3_ENDPOINT=//p' <<<"$moto_env")
  export IMGBACKUP_TEST_MOTO_ENDPOINT
  echo "test.sh: moto up at $IMGBACKUP_TEST_MOTO_ENDPOINT"
fi

# s3rver 3.7.1 encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 only offers
# through the legacy provider; NODE_OPTIONS (unlike a node flag) reaches the per-file test processes.
case " ${NODE_OPTIONS:-} " in
  *" --openssl-legacy-provider "*) ;;
  *) export NODE_OPTIONS="--openssl-legacy-provider${NODE_OPTIONS:+ $NODE_OPTIONS}" ;;
esac

opts=()
files=()
for a in "$@"; do
  case $a in
    -*) opts+=("$a") ;;
    test/*.ts) f=dist/${a%.ts}.js; [ -f "$f" ] || { echo "test.sh: $a has no compiled $f" >&2; exit 2; }; files+=("$f") ;;
    *) files+=("$a") ;;
  esac
done
# node 20's --test takes no globs, and given a directory it runs every .js in it, helpers included
if [ "${#files[@]}" = 0 ]; then
  mapfile -t files < <(find dist/test -type f -name '*.test.js' | sort)
  [ "${#files[@]}" -gt 0 ] || { echo "test.sh: no dist/test/**/*.test.js after the build" >&2; exit 1; }
fi

rc=0
# One file at a time: the rgw and moto instances and the 2 cores are shared by all files.
# --test-timeout bounds each test file's process (node 20 applies it per file too): a radosgw
# whose OSD is full blocks writes forever instead of failing, and CI should fail, not hang.
# A later --test-timeout=N among the args overrides it.
# --test-force-exit: a test file's process ends once its tests have: the lease tests' process
# kept two idle sockets to radosgw and moto open after its last test (not found yet), and the
# CLI under test is a process of its own, so nothing a user runs depends on this.
node --test --test-force-exit --test-concurrency=1 --test-timeout=600000 "${opts[@]}" "${files[@]}" || rc=$?
exit "$rc"
