#!/usr/bin/env bash
# Two checks of the image build, from one static binary (no cargo build here):
#
# 1. Reproducible: images/build.sh run twice gives the same image ID (the
#    sha256 of the image config, which names the layer by its digest). The
#    second run packages a copy of the binary with another mtime, under
#    another umask and another tag, so nothing but content and
#    SOURCE_DATE_EPOCH can reach the result.
# 2. images/Dockerfile is the same image: `docker build` of the context that
#    images/build.sh --context writes gives the same files (names, modes,
#    owners, contents), labels, user and entrypoint. Its creation time is not
#    compared: the legacy builder stamps the time of the build.
#
# Usage: .ci/image-check.sh BINARY        Every image it makes is removed.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
binary=${1:?usage: .ci/image-check.sh BINARY}
run="pgcheck$$"
work=$(mktemp -d)
cleanup() {
    docker image rm "$run-a:1" "$run-b:1" "$run-d:1" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

id_of() { docker image inspect --format '{{.Id}}' "$1"; }

# --- 1. twice, from different surroundings -----------------------------------
"$repo/images/build.sh" --binary "$binary" --tag "$run-a:1" --context "$work/ctx" >/dev/null 2>"$work/a.err"
cp "$binary" "$work/peergate-copy"
touch -d '2001-02-03 04:05:06' "$work/peergate-copy"
(umask 077 && "$repo/images/build.sh" --binary "$work/peergate-copy" --tag "$run-b:1" >/dev/null 2>"$work/b.err")
a=$(id_of "$run-a:1")
b=$(id_of "$run-b:1")
if [[ $a != "$b" ]]; then
    echo "image-check: not reproducible: $a vs $b" >&2
    cat "$work/a.err" "$work/b.err" >&2
    exit 1
fi
echo "image-check: built twice, same image $a"

# --- 2. the Dockerfile ---------------------------------------------------------
args=()
while IFS= read -r line; do args+=(--build-arg "$line"); done <"$work/ctx/build-args"
docker build --quiet "${args[@]}" --tag "$run-d:1" "$work/ctx" >/dev/null 2>"$work/d.err" || {
    cat "$work/d.err" >&2
    exit 1
}

# Files: every entry of the image's filesystem with its type, mode, owner,
# size and content digest (docker export adds the runtime's own entries to
# both alike: /.dockerenv, /dev, /etc, /proc, /sys).
listing() {
    local c
    c=$(docker create "$1")
    docker export "$c" | python3 -c '
import hashlib, sys, tarfile
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as t:
    for m in t:
        digest = hashlib.sha256(t.extractfile(m).read()).hexdigest() if m.isfile() else "-"
        print(m.name.rstrip("/"), m.type, oct(m.mode), m.uid, m.gid, m.size, digest)
' | sort
    docker rm "$c" >/dev/null
}
listing "$run-a:1" >"$work/a.files"
listing "$run-d:1" >"$work/d.files"
if ! diff -u "$work/a.files" "$work/d.files" >"$work/files.diff"; then
    echo "image-check: images/Dockerfile gives other files than images/build.sh:" >&2
    cat "$work/files.diff" >&2
    exit 1
fi
config() { docker image inspect --format '{{json .Config.Labels}} {{json .Config.User}} {{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Os}}/{{.Architecture}}' "$1"; }
if [[ $(config "$run-a:1") != "$(config "$run-d:1")" ]]; then
    echo "image-check: images/Dockerfile gives another config than images/build.sh:" >&2
    config "$run-a:1" >&2
    config "$run-d:1" >&2
    exit 1
fi
echo "image-check: images/Dockerfile gives the same $(grep -vcE '^(\.dockerenv|dev|etc|proc|sys)( |/)' "$work/a.files") files, labels, user and entrypoint"
