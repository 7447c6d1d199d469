#!/usr/bin/env bash
# Build the static release binary that goes into the FROM scratch image and
# print its path on stdout (cargo's own progress goes to stderr).
#
#   images/static-build.sh                         # for this machine's target
#   images/static-build.sh --target TRIPLE         # e.g. aarch64-unknown-linux-gnu
#
# The settings live in .cargo/static.toml (+crt-static, getrandom's linux_raw
# backend); they apply only with an explicit --target, which this script
# always passes. The binary lands wherever cargo puts it (CARGO_TARGET_DIR or
# build.target-dir are honoured: the path is the one cargo reports). Refuses
# to print a binary that is not statically linked.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
triple=$(rustc -vV | sed -n 's/^host: //p')

while (($#)); do
    case $1 in
        --target) triple=$2; shift 2 ;;
        -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "images/static-build.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

# cargo prints one JSON object per line on stdout with
# --message-format=json-render-diagnostics (diagnostics still go to stderr,
# rendered); the compiler-artifact line of the peergate binary carries the
# path of the executable.
messages=$(cd "$repo" && cargo build --release --locked --bin peergate \
    --target "$triple" --config "$repo/.cargo/static.toml" \
    --message-format=json-render-diagnostics)
binary=$(grep '"reason":"compiler-artifact"' <<<"$messages" |
    grep '"kind":\["bin"\],"crate_types":\["bin"\],"name":"peergate"' |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
if [[ -z $binary || ! -x $binary ]]; then
    echo "images/static-build.sh: cargo reported no peergate executable" >&2
    exit 1
fi
# A static executable has no program interpreter (PT_INTERP); readelf works
# for any target architecture, unlike ldd.
if LC_ALL=C readelf --program-headers "$binary" | grep -q 'INTERP'; then
    echo "images/static-build.sh: $binary is dynamically linked (RUSTFLAGS or CARGO_ENCODED_RUSTFLAGS set? they replace .cargo/static.toml's flags)" >&2
    exit 1
fi
echo "$binary"
