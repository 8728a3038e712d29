#!/usr/bin/env bash
# Install what the native gzip addon (native/, built by `npm install` through node-gyp) needs:
# Debian's libdeflate-dev and libisal-dev (ISA-L), plus a C compiler and make. Idempotent. Run it
# before `npm ci`; on a machine where it already ran, it does nothing.
set -euo pipefail

if [ -f /usr/include/libdeflate.h ] && [ -f /usr/include/isa-l/igzip_lib.h ] &&
  command -v cc >/dev/null 2>&1 && command -v make >/dev/null 2>&1; then
  echo "native-deps: libdeflate-dev, libisal-dev, a C compiler and make are there"
  exit 0
fi
bash "$(dirname "$0")/apt-install.sh" native-deps libdeflate-dev libisal-dev gcc make python3
echo "native-deps: done (libdeflate $(sed -n 's/^#define LIBDEFLATE_VERSION_STRING[[:space:]]*"\(.*\)"/\1/p' /usr/include/libdeflate.h), isa-l $(sed -n 's/^#define ISAL_\(MAJOR\|MINOR\|PATCH\)_VERSION[[:space:]]*\([0-9]*\)/\2/p' /usr/include/isa-l.h | paste -sd.))"
