# Sourced by the .ci scripts: COMPOSE is the Docker Compose command to use,
# Compose v2 (the `docker compose` CLI plugin) where it is installed, else
# v1 (`docker-compose`, Debian 12's package, 1.29), else empty.
if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
else
    COMPOSE=()
fi
