#!/usr/bin/env bash
# Install what scripts/rgw-start.sh needs (single-node Ceph + radosgw). Idempotent: does nothing when
# everything is already on PATH, so CI and developers can call it unconditionally.
set -euo pipefail

missing=()
for cmd in radosgw ceph-mon ceph-osd ceph radosgw-admin monmaptool ceph-authtool uuidgen curl; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if [ "${#missing[@]}" = 0 ]; then
  echo "rgw-install: radosgw and Ceph tools already installed ($(radosgw --version 2>/dev/null | head -1))"
  exit 0
fi
echo "rgw-install: missing ${missing[*]}; installing from apt (~30 s, ~270 MB)"

# Without recommends: they pull in ceph-mgr, python stacks and more (~+300 MB) we don't use.
bash "$(dirname "$0")/apt-install.sh" rgw-install ceph-mon ceph-osd radosgw uuid-runtime curl
command -v radosgw >/dev/null 2>&1 || { echo "rgw-install: radosgw still not on PATH after install" >&2; exit 1; }
echo "rgw-install: done ($(radosgw --version | head -1))"
