#!/usr/bin/env bash
# Installs, or checks, everything `npm test` needs, on Debian 12 as root or through sudo; the first
# half of README's test line (`bash scripts/test-deps.sh && npm test`). Idempotent: on a machine
# where it already ran, it only checks. Needs Node.js and npm on PATH (README "Install").
set -euo pipefail
cd "$(dirname "$0")/.."

# The gzip addon's build needs (libdeflate-dev, libisal-dev, a C compiler, make, python3).
bash scripts/native-deps.sh

if [ ! -d node_modules ]; then
  npm ci # also builds the gzip addon
elif [ ! -f build/Release/imgbackup_gzip.node ]; then
  # node_modules came before the native deps: build the addon now (npm's install script)
  npm run install
fi

# GNU parallel and an aws CLI that knows delete-objects' per-key ETag: the delete-script test
# runs the collected script with them, as the old runbook does.
bash scripts/test-tools-install.sh

# Per test server, what it needs. The list is scripts/test.sh's: IMGBACKUP_TEST_SERVERS, or its
# default, read from its own line so the two never disagree.
default=$(sed -n 's/^servers=\${IMGBACKUP_TEST_SERVERS:-\(.*\)}$/\1/p' scripts/test.sh)
[ -n "$default" ] || { echo "test-deps: cannot read the default server list in scripts/test.sh" >&2; exit 1; }
servers=${IMGBACKUP_TEST_SERVERS:-$default}
IFS=',' read -ra names <<<"$servers"
for n in "${names[@]}"; do
  case ${n//[[:space:]]/} in
    s3rver | '') ;; # an npm package, installed by npm ci
    rgw) bash scripts/rgw-install.sh ;;
    moto)
      # PyPI is not one of the registries this project installs from: check, and say how.
      if ! python3 -c 'import moto.server' 2>/dev/null; then
        echo "test-deps: the moto test server needs python3's moto: pip install 'moto[server]==5.2.1' (or leave moto out of IMGBACKUP_TEST_SERVERS)" >&2
        exit 1
      fi
      echo "test-deps: moto $(python3 -c 'import moto; print(moto.__version__)') is there"
      ;;
    *) echo "test-deps: unknown test server '$n' in IMGBACKUP_TEST_SERVERS" >&2; exit 2 ;;
  esac
done
echo "test-deps: ready for npm test (servers: $servers)"
