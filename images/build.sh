#!/usr/bin/env bash
# Build the peergate image in one command:
#
#   images/build.sh                      # images/static-build.sh, then docker build
#   images/build.sh --tag my/peergate:x  # other reference
#   images/build.sh --binary PATH        # package an already built static binary
#
# The image reference defaults to ghcr.io/peergate/peergate:<Cargo.toml version>,
# the reference every manifest in examples/ uses. Only the binary is sent to
# the Docker daemon (a temporary build context), never the repository or
# target/. Prints the image reference and its size on stdout.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n1)
source_url=$(sed -n 's/^repository = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n1)
tag="ghcr.io/peergate/peergate:${version}"
binary=""

while (($#)); do
    case $1 in
        --tag) tag=$2; shift 2 ;;
        --binary) binary=$2; shift 2 ;;
        -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "images/build.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

if [[ -z $binary ]]; then
    # The static build (.cargo/static.toml); prints where cargo put it, so
    # CARGO_TARGET_DIR and build.target-dir are honoured.
    binary=$("$repo/images/static-build.sh")
fi
if [[ ! -x $binary ]]; then
    echo "images/build.sh: no executable at $binary" >&2
    exit 1
fi
# A FROM scratch image has no dynamic loader: refuse a dynamically linked binary.
if ldd "$binary" 2>&1 | grep -q '=>'; then
    echo "images/build.sh: $binary is dynamically linked; expected the static build" >&2
    exit 1
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$repo/images/Dockerfile" "$ctx/Dockerfile"
cp "$binary" "$ctx/peergate"
chmod 0555 "$ctx/peergate"

docker build --quiet \
    --build-arg "VERSION=$version" \
    --build-arg "SOURCE=$source_url" \
    --tag "$tag" "$ctx" >/dev/null

size=$(docker image inspect --format '{{.Size}}' "$tag")
echo "$tag $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f MB", s / 1000000 }'))"
