#!/usr/bin/env bash
# Validate every manifest in examples/ (see .ci/validate_manifests.py for what
# is checked): Kubernetes documents strictly against the schemas that the PyPI
# package kubernetes-validate ships, for the newest Kubernetes it knows and for
# the oldest version peergate's examples support; the JobSet against the
# jobset.x-k8s.io/v1alpha2 field lists (kubernetes-validate has no CRD
# schemas); kustomization.yaml by building every example through it with
# `kubectl kustomize` when kubectl is installed (else its structure only);
# compose.yaml with Docker Compose (v2, else v1) when it is installed. With
# CI=true a missing kubectl or Compose is an error. Then peergate itself
# checks every gate in every pod the manifests create (`--dry-run`, see
# .ci/dry_run_examples.py), with a debug build of the binary.
#
# Usage: bash .ci/validate-manifests.sh
# Env:   VENV (default target/ci-venv), KUBERNETES_VALIDATE_VERSION (pinned),
#        PEERGATE_BIN (a peergate binary to use instead of `cargo build`'s).
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

kubectl_args=()
if command -v kubectl >/dev/null; then
    kubectl_args=(--kubectl "$(command -v kubectl)")
    echo "kubectl $(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p' | sed 's/^/(kustomize /; s/$/)/')"
elif [[ ${CI:-} == true ]]; then
    echo "validate-manifests: kubectl missing: examples/kustomization.yaml cannot be built" >&2
    exit 1
else
    echo "validate-manifests: kubectl not installed, kustomization.yaml checked for structure only"
fi

"$py" .ci/validate_manifests.py --image "$image" "${kubectl_args[@]}" \
    -k "$newest_k8s" -k "$oldest_k8s" "${manifests[@]}"

# A debug build shares its dependencies with the test build (`cargo test`),
# so this compiles peergate itself and nothing else on top of it.
bin=${PEERGATE_BIN:-}
if [[ -z $bin ]]; then
    messages=$(cargo build --locked --bin peergate --message-format=json-render-diagnostics) || {
        echo "validate-manifests: cargo build --bin peergate failed" >&2
        exit 1
    }
    bin=$(grep '"reason":"compiler-artifact"' <<<"$messages" |
        grep '"kind":\["bin"\],"crate_types":\["bin"\],"name":"peergate"' |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1 || true)
fi
if [[ -z $bin || ! -x $bin ]]; then
    echo "validate-manifests: no peergate binary to dry-run the examples with" >&2
    exit 1
fi
"$py" .ci/dry_run_examples.py --peergate "$bin" --image "$image" "${manifests[@]}"

source .ci/compose.bash
if ((${#COMPOSE[@]})); then
    for f in examples/compose*.yaml; do
        "${COMPOSE[@]}" -f "$f" config --quiet
        echo "${COMPOSE[*]} config: $f ok"
    done
elif [[ ${CI:-} == true ]]; then
    echo "validate-manifests: neither docker compose (v2) nor docker-compose (v1) is installed" >&2
    exit 1
else
    echo "validate-manifests: Docker Compose not installed, compose files only checked by the script above"
fi

echo "validate-manifests: all ${#manifests[@]} manifests passed (k8s $newest_k8s and $oldest_k8s, strict; every gate's --dry-run)"
