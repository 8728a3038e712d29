#!/usr/bin/env bash
# apt-get install the Debian packages named as arguments, as root or through sudo; for the
# install scripts beside it. Usage: bash scripts/apt-install.sh WHO PACKAGE...
set -euo pipefail
who=$1
shift
SUDO=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "$who: not root and no sudo; cannot apt-get install $*" >&2; exit 1; }
  SUDO=(sudo)
fi
"${SUDO[@]}" apt-get update
# --no-install-recommends: recommends pull in much we never use
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
