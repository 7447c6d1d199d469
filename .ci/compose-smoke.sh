#!/usr/bin/env bash
# Smoke test of examples/compose.yaml: `up` the three pods, check every gate
# and every workload exited 0, then `down` (also on failure). Needs the images
# from images/build.sh and images/sandbox/build.sh; the compose project name
# is unique per run so nothing collides with a user's own `up`.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
file="$repo/examples/compose.yaml"
project="pgsmoke$$"
compose=(docker-compose --project-name "$project" -f "$file")

cleanup() { "${compose[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT

"${compose[@]}" up --detach --quiet-pull 2>&1 | grep -v '^Creating' || true

status=0
for svc in gate-0 gate-1 gate-2 work-0 work-1 work-2; do
    id=$("${compose[@]}" ps --quiet "$svc")
    if [[ -z $id ]]; then
        echo "compose-smoke: $svc was never created" >&2
        status=1
        continue
    fi
    # Bounded wait: the gates' own --timeout is 2m.
    code=$(timeout 150 docker wait "$id") || code="no exit within 150s"
    echo "compose-smoke: $svc exit $code"
    if [[ $code != 0 ]]; then
        "${compose[@]}" logs --no-color "$svc" >&2 || true
        status=1
    fi
done
((status == 0)) && echo "compose-smoke: examples/compose.yaml passed"
exit "$status"
