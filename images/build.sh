#!/usr/bin/env bash
# Build the peergate image in one command:
#
#   images/build.sh                      # images/static-build.sh, then the image
#   images/build.sh --tag my/peergate:x  # other reference
#   images/build.sh --binary PATH        # package an already built static binary
#   images/build.sh --context DIR        # also write a `docker build` context
#
# The image reference defaults to ghcr.io/peergate/peergate:<Cargo.toml version>,
# the reference every manifest in examples/ uses. Prints the image reference
# and its size on stdout. docs/image.md describes the result.
#
# The image is assembled here, not by `docker build`: one layer tar written
# with fixed owners, modes and times, an image config written field by field,
# then `docker load`. Built twice from the same binary and source revision it
# is the same image, bit for bit (same image ID), on any machine. Times come
# from SOURCE_DATE_EPOCH, by default the last commit's time. No base image,
# registry or BuildKit is needed.
#
# --context DIR writes images/Dockerfile and the same files into DIR, plus
# DIR/build-args (one KEY=VALUE a line), for builders that want a Dockerfile;
# `docker build` of it gives the same files and config, but reproducible only
# where the builder honours SOURCE_DATE_EPOCH (BuildKit >= 0.11).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n1)
source_url=$(sed -n 's/^repository = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n1)
description=$(sed -n 's/^description = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n1)
tag="ghcr.io/peergate/peergate:${version}"
binary=""
context=""

while (($#)); do
    case $1 in
        --tag) tag=$2; shift 2 ;;
        --binary) binary=$2; shift 2 ;;
        --context) context=$2; shift 2 ;;
        -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "images/build.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

die() { echo "images/build.sh: $*" >&2; exit 1; }

if [[ -z $binary ]]; then
    # The static build (.cargo/static.toml); prints where cargo put it, so
    # CARGO_TARGET_DIR and build.target-dir are honoured.
    binary=$("$repo/images/static-build.sh")
fi
[[ -f $binary && -x $binary ]] || die "no executable at $binary"
# A FROM scratch image has no dynamic loader: refuse a binary that asks for
# one (a program interpreter). readelf reads any architecture.
if LC_ALL=C readelf --program-headers "$binary" | grep -q 'INTERP'; then
    die "$binary is dynamically linked; expected the static build (images/static-build.sh)"
fi
case $(LC_ALL=C readelf --file-header "$binary" | sed -n 's/^ *Machine: *//p') in
    "Advanced Micro Devices X86-64") arch=amd64 ;;
    AArch64) arch=arm64 ;;
    *) die "$binary: unsupported machine type" ;;
esac

# Provenance: the commit and its time, unless the caller pins them.
if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
    SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null) ||
        die "not a git checkout: set SOURCE_DATE_EPOCH (and REVISION)"
fi
[[ $SOURCE_DATE_EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be whole seconds"
if [[ -z ${REVISION:-} ]]; then
    REVISION=$(git -C "$repo" rev-parse HEAD 2>/dev/null) || REVISION=unknown
    # Tracked files changed since that commit: the label must not claim it.
    if [[ $REVISION != unknown && -n $(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
        REVISION="$REVISION-dirty"
        echo "images/build.sh: tracked files differ from HEAD, revision label is $REVISION" >&2
    fi
fi
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
doc=$root/usr/share/doc/peergate
mkdir -p "$doc"

# --- the files ---------------------------------------------------------------
cp "$binary" "$root/peergate"
cp "$repo/LICENSE" "$repo/THIRD-PARTY-NOTICES" "$doc/"
# What the binary links statically (see THIRD-PARTY-NOTICES, part 2) depends
# on the toolchain that built it: record it and ship the texts.
need() { [[ -r $1 ]] || die "$1 missing ($2)"; }
need /usr/share/common-licenses/LGPL-2.1 "Debian's base-files"
need /usr/share/doc/libc6/copyright "Debian's libc6"
sysroot=$(rustc --print sysroot)
need "$sysroot/share/doc/rust/COPYRIGHT-library.html" "the Rust toolchain's docs"
cp /usr/share/common-licenses/LGPL-2.1 "$doc/LGPL-2.1"
cp /usr/share/doc/libc6/copyright "$doc/glibc-copyright"
gzip -9 --no-name <"$sysroot/share/doc/rust/COPYRIGHT-library.html" >"$doc/rust-std-COPYRIGHT-library.html.gz"
glibc=$(dpkg-query -W -f '${Version}' libc6-dev 2>/dev/null) || glibc=""
[[ -n $glibc ]] || die "cannot tell the glibc version (dpkg-query -W libc6-dev)"
{
    echo "Toolchain of /peergate (statically linked; see THIRD-PARTY-NOTICES, part 2)"
    echo
    echo "From the binary's .comment section:"
    LC_ALL=C readelf --string-dump=.comment "$binary" | sed -n 's/^ *\[ *[0-9a-f]*\] *\(.*\)$/  \1/p'
    echo
    echo "GNU C Library: Debian's libc6-dev $glibc on the machine that packaged"
    echo "this image (images/build.sh; CI builds the binary on the same machine)."
    echo "Its corresponding source is Debian's source package glibc, version $glibc"
    echo "(apt-get source glibc=$glibc); its licence terms are in glibc-copyright"
    echo "and LGPL-2.1 next to this file."
} >"$doc/BUILD-TOOLCHAIN"

# Owners, modes and times are set here, not inherited from the checkout or
# the umask, so the layer is the same wherever it is built.
find "$root" -type d -exec chmod 0755 {} +
find "$root" -type f -exec chmod 0444 {} +
chmod 0555 "$root/peergate"

if [[ -n $context ]]; then
    mkdir -p "$context"
    rm -rf "$context/rootfs"
    cp -a "$root" "$context/rootfs"
    cp "$repo/images/Dockerfile" "$context/Dockerfile"
    printf '%s\n' "VERSION=$version" "SOURCE=$source_url" "REVISION=$REVISION" \
        "CREATED=$created" "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH" >"$context/build-args"
fi

# --- the layer ---------------------------------------------------------------
archive=$work/archive
mkdir -p "$archive"
tar --create --file "$work/layer.tar" --directory "$root" \
    --format=gnu --sort=name --numeric-owner --owner=0 --group=0 \
    --mtime="@$SOURCE_DATE_EPOCH" --no-acls --no-xattrs --no-selinux \
    peergate usr
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
mkdir -p "$archive/$diff_id"
mv "$work/layer.tar" "$archive/$diff_id/layer.tar"

# --- the image config (OCI image spec; docker reads the same fields) --------
json_str() {
    [[ $1 != *[\"\\]* ]] || die "refusing a quote or backslash in: $1"
    printf '"%s"' "$1"
}
for value in "$tag" "$REVISION" "$description" "$source_url" "$version"; do
    json_str "$value" >/dev/null
done
label() { printf '%s:%s' "$(json_str "org.opencontainers.image.$1")" "$(json_str "$2")"; }
labels=$(
    IFS=,
    items=(
        "$(label created "$created")"
        "$(label description "$description")"
        "$(label licenses Apache-2.0)"
        "$(label revision "$REVISION")"
        "$(label source "$source_url")"
        "$(label title peergate)"
        "$(label url "$source_url")"
        "$(label version "$version")"
    )
    echo "${items[*]}"
)
config=$(printf '{"architecture":%s,"config":{"Entrypoint":["/peergate"],"Labels":{%s},"User":"65532:65532"},"created":%s,"history":[{"created":%s,"created_by":"images/build.sh: /peergate and its licence files"}],"os":"linux","rootfs":{"diff_ids":["sha256:%s"],"type":"layers"}}' \
    "$(json_str "$arch")" "$labels" "$(json_str "$created")" "$(json_str "$created")" "$diff_id")
printf '%s' "$config" >"$archive/config.json"
config_id=$(sha256sum "$archive/config.json" | cut -d' ' -f1)
mv "$archive/config.json" "$archive/$config_id.json"
printf '[{"Config":"%s.json","RepoTags":[%s],"Layers":["%s/layer.tar"]}]' \
    "$config_id" "$(json_str "$tag")" "$diff_id" >"$archive/manifest.json"

tar --create --directory "$archive" --format=gnu --sort=name --numeric-owner \
    --owner=0 --group=0 --mtime="@$SOURCE_DATE_EPOCH" . | docker load --quiet >/dev/null

# docker load reports the image ID as sha256 of the config: check it is ours.
id=$(docker image inspect --format '{{.Id}}' "$tag")
[[ $id == "sha256:$config_id" ]] || die "docker loaded $id for $tag, expected sha256:$config_id"
echo "images/build.sh: $tag $id ($arch, revision $REVISION, created $created)" >&2

size=$(docker image inspect --format '{{.Size}}' "$tag")
echo "$tag $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f MB", s / 1000000 }'))"
