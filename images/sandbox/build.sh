#!/usr/bin/env bash
# Build the test-only pod sandbox image (see images/sandbox/Dockerfile).
# Usage: images/sandbox/build.sh [TAG]     (default: peergate-sandbox:local)
# Needs Debian's busybox-static (/bin/busybox, statically linked).
set -euo pipefail

tag=${1:-peergate-sandbox:local}
here=$(cd "$(dirname "$0")" && pwd)
busybox=${BUSYBOX:-/bin/busybox}

if [[ ! -x $busybox ]]; then
    echo "images/sandbox/build.sh: $busybox missing (apt-get install busybox-static)" >&2
    exit 1
fi
# ldd lists libraries ("=>") only for a dynamic executable, which cannot run
# in a FROM scratch image.
if ldd "$busybox" 2>&1 | grep -q '=>'; then
    echo "images/sandbox/build.sh: $busybox is dynamically linked (install busybox-static)" >&2
    exit 1
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$here/Dockerfile" "$ctx/Dockerfile"
cp "$busybox" "$ctx/busybox"
chmod 0555 "$ctx/busybox"

docker build --quiet --tag "$tag" "$ctx" >/dev/null
echo "$tag"
