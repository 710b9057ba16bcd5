#!/usr/bin/env bash
# One command from a fresh Debian/Ubuntu machine to banger's main job:
# installs dependencies, builds and installs banger, checks the host, and
# runs a command in a sandbox as far as this version of banger can.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
prefix="${BANGER_PREFIX:-$HOME/.local}"

./scripts/install-deps.sh
echo "setup: building banger (release)" >&2
cargo build --release --locked -p banger-cli -p bangerd
agent="$(./scripts/build-agent.sh release)"
install -d "$prefix/bin" "$prefix/lib/banger"
install -m 0755 target/release/banger target/release/bangerd "$prefix/bin/"
install -m 0755 "$agent" "$prefix/lib/banger/banger-vsock-agent"
echo "setup: installed banger and bangerd into $prefix/bin" >&2
case ":$PATH:" in *":$prefix/bin:"*) ;; *) echo "setup: add $prefix/bin to your PATH" >&2 ;; esac

echo "setup: checking this host" >&2
"$prefix/bin/banger" doctor || echo "setup: doctor reported failures; fix them using the hints above" >&2

# The main job: a sandbox that runs a command and goes away. The first run
# pulls the default kernel and builds the default Debian image (1-2 minutes).
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: starting VMs needs root for now (bridge and TAP devices); run: sudo $prefix/bin/banger vm run --rm -- uname -a" >&2
  exit 0
fi
"$prefix/bin/banger" vm run --rm -- uname -a
