#!/usr/bin/env bash
# Validate every manifest in examples/ (see .ci/validate_manifests.py for what
# is checked): Kubernetes documents strictly against the schemas that the PyPI
# package kubernetes-validate ships, for the newest Kubernetes it knows and for
# the oldest version peergate's examples support; the JobSet against the
# jobset.x-k8s.io/v1alpha2 field lists (kubernetes-validate has no CRD
# schemas); compose.yaml with docker-compose when it is installed.
#
# Usage: bash .ci/validate-manifests.sh
# Env:   VENV (default target/ci-venv), KUBERNETES_VALIDATE_VERSION (pinned).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

kv_version=${KUBERNETES_VALIDATE_VERSION:-1.37.0}
venv=${VENV:-$repo/target/ci-venv}
# Oldest Kubernetes the examples target: Indexed Jobs with hostnames are GA
# from 1.24, JobSet needs 1.27 or newer.
oldest_k8s=1.27.0

if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import kubernetes_validate' 2>/dev/null; then
    # Debian's python3 needs the python3-venv package for this.
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$kv_version"
fi
py=$venv/bin/python
echo "kubernetes-validate $("$py" -c 'import kubernetes_validate as k; print(k.__version__)')"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
image="ghcr.io/peergate/peergate:$version"
newest_k8s=$("$py" -c 'from kubernetes_validate import utils; print(utils.latest_version())')

shopt -s nullglob
manifests=(examples/*.yaml examples/*.yml)
if ((${#manifests[@]} == 0)); then
    echo "validate-manifests: no manifests in examples/" >&2
    exit 1
fi

"$py" .ci/validate_manifests.py --image "$image" \
    -k "$newest_k8s" -k "$oldest_k8s" "${manifests[@]}"

if command -v docker-compose >/dev/null; then
    for f in examples/compose*.yaml; do
        docker-compose -f "$f" config --quiet
        echo "docker-compose config: $f ok"
    done
elif [[ ${CI:-} == true ]]; then
    echo "validate-manifests: docker-compose missing (apt-get install docker-compose)" >&2
    exit 1
else
    echo "validate-manifests: docker-compose not installed, compose files only checked by the script above"
fi

echo "validate-manifests: all ${#manifests[@]} manifests passed (k8s $newest_k8s and $oldest_k8s, strict)"
