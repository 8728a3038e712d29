#!/usr/bin/env bash
# Install what the delete-script test runs besides node: GNU parallel (Debian package) and an aws
# CLI that knows DeleteObjects' per-key ETag. Idempotent, like rgw-install.sh.
set -euo pipefail

if command -v parallel >/dev/null 2>&1; then
  echo "test-tools-install: GNU parallel already installed"
else
  echo "test-tools-install: installing GNU parallel from apt"
  bash "$(dirname "$0")/apt-install.sh" test-tools-install parallel
fi
# Debian 12's awscli package (2.9.19) predates the ETag field of delete-objects and would refuse
# every line of our scripts; this machine kind ships a newer aws CLI, so only check for it.
if ! command -v aws >/dev/null 2>&1; then
  echo "test-tools-install: no aws CLI on PATH; install one whose 'aws s3api delete-objects help' mentions ETag" >&2
  exit 1
fi
if ! aws s3api delete-objects help 2>/dev/null | grep -q ETag; then
  echo "test-tools-install: $(aws --version 2>&1) does not know delete-objects' ETag field; install a newer aws CLI" >&2
  exit 1
fi
echo "test-tools-install: $(aws --version 2>&1)"
