#!/usr/bin/env bash
# Builds banger-vsock-agent as a static x86_64 binary and prints its path.
# --target keeps +crt-static away from build scripts and proc macros.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-release}"
flags=(--target x86_64-unknown-linux-gnu -p banger-agent)
[ "$profile" = release ] && flags+=(--release)
rustflags="-C target-feature=+crt-static"
# The agent goes into every VM's initrd uncompressed; a debug build's debug
# info (about 90 of its 97 MB) would be written, unpacked and kept in guest
# memory at every boot of every test VM. Symbols stay, for backtraces.
[ "$profile" = debug ] && rustflags+=" -C strip=debuginfo"
RUSTFLAGS="$rustflags" cargo build --quiet "${flags[@]}"
echo "${CARGO_TARGET_DIR:-$PWD/target}/x86_64-unknown-linux-gnu/$profile/banger-vsock-agent"
