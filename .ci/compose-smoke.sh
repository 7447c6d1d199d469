#!/usr/bin/env bash
# Smoke test of examples/compose.yaml: `up` the three pods, check every gate
# and every workload exited 0, then `down` (also on failure). Needs the images
# from images/build.sh and images/sandbox/build.sh; the compose project name
# is unique per run so nothing collides with a user's own `up`.
#
# Uses Docker Compose v2 (`docker compose`) where it is installed and falls
# back to v1 (`docker-compose`) only where v2 is missing (.ci/compose.bash);
# COMPOSE_CMD="docker-compose" (or "docker compose") picks one explicitly.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
file="$repo/examples/compose.yaml"
project="pgsmoke$$"
if [[ -n ${COMPOSE_CMD:-} ]]; then
    read -r -a COMPOSE <<<"$COMPOSE_CMD"
else
    source "$repo/.ci/compose.bash"
fi
if ((${#COMPOSE[@]} == 0)); then
    echo "compose-smoke: neither docker compose (v2) nor docker-compose (v1) is installed" >&2
    exit 1
fi
echo "compose-smoke: ${COMPOSE[*]} $("${COMPOSE[@]}" version --short 2>/dev/null || true)"
compose=("${COMPOSE[@]}" --project-name "$project" -f "$file")

cleanup() { "${compose[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT

# v1 reports each "Creating ..." on stderr, v2 draws progress lines: keep
# only what is neither.
"${compose[@]}" up --detach --quiet-pull 2>&1 | grep -vE '^(Creating|Network|Container| *(Network|Container) )' || true

status=0
for svc in gate-0 gate-1 gate-2 work-0 work-1 work-2; do
    # --all: v2 lists only running containers without it, and a gate has
    # usually exited by now.
    id=$("${compose[@]}" ps --all --quiet "$svc")
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
