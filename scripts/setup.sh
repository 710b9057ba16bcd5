#!/usr/bin/env bash
# One command from a fresh Debian/Ubuntu machine to banger's main job:
# installs dependencies, builds banger, installs it, checks the host, and
# runs a command in a sandbox.
#
# As a normal user with sudo rights (the supported way): `sudo banger system
# install --owner "$USER"` puts banger, bangerd and bangerd-root into
# /usr/local (root-owned), runs the root helper and your daemon as services
# (with systemd as PID 1; elsewhere the helper is started detached and your
# daemon by banger on first use, see docs/system-install.md), and the sandbox
# then runs as you, not as root.
#
# As root (CI): banger is installed into $BANGER_PREFIX (default ~/.local)
# and the root daemon does network work in-process, as before.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

./scripts/install-deps.sh
echo "setup: building banger (release)" >&2
cargo build --release --locked -p banger-cli -p bangerd -p bangerd-root
agent="$(./scripts/build-agent.sh release)"

if [ "$(id -u)" -eq 0 ]; then
  prefix="${BANGER_PREFIX:-$HOME/.local}"
  install -d "$prefix/bin" "$prefix/lib/banger"
  install -m 0755 target/release/banger target/release/bangerd "$prefix/bin/"
  install -m 0755 "$agent" "$prefix/lib/banger/banger-vsock-agent"
  echo "setup: installed banger and bangerd into $prefix/bin (root: no system install, the daemon runs as root)" >&2
  case ":$PATH:" in *":$prefix/bin:"*) ;; *) echo "setup: add $prefix/bin to your PATH" >&2 ;; esac
  banger="$prefix/bin/banger"
  echo "setup: checking this host" >&2
  "$banger" doctor || echo "setup: doctor reported failures; fix them using the hints above" >&2
  # The first run pulls the default kernel and builds the default Debian image (1-2 minutes).
  exec "$banger" vm run --rm -- uname -a
fi

user="$(id -un)"
echo "setup: installing banger system-wide for $user (sudo)" >&2
sudo ./target/release/banger system install --owner "$user" --agent "$agent"
banger=/usr/local/bin/banger
"$banger" system status >&2 || echo "setup: banger system status reports a problem (see above)" >&2
echo "setup: checking this host" >&2
"$banger" doctor || echo "setup: doctor reported failures; fix them using the hints above" >&2

# The main job, as $user. The install may have just added $user to the kvm
# group, which this shell does not have yet: then run through `sudo -u`,
# which starts with $user's current groups (still $user, not root).
# The first run pulls the default kernel and builds the default Debian image (1-2 minutes).
if [ "$(id -G | tr ' ' '\n' | sort)" = "$(id -G "$user" | tr ' ' '\n' | sort)" ]; then
  exec "$banger" vm run --rm -- uname -a
fi
exec sudo -u "$user" -- "$banger" vm run --rm -- uname -a
