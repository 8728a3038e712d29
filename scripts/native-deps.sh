#!/usr/bin/env bash
# Install what the libdeflate gzip addon (native/, built by `npm install` through node-gyp) needs:
# Debian's libdeflate-dev, plus a C compiler and make. Idempotent. Run it before `npm ci`; on a
# machine where it already ran, it does nothing.
set -euo pipefail

if [ -f /usr/include/libdeflate.h ] && command -v cc >/dev/null 2>&1 && command -v make >/dev/null 2>&1; then
  echo "native-deps: libdeflate-dev, a C compiler and make are there"
  exit 0
fi
bash "$(dirname "$0")/apt-install.sh" native-deps libdeflate-dev gcc make python3
echo "native-deps: done (libdeflate $(sed -n 's/^#define LIBDEFLATE_VERSION_STRING[[:space:]]*"\(.*\)"/\1/p' /usr/include/libdeflate.h))"
