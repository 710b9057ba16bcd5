#!/usr/bin/env bash
# Installs what banger needs on a Debian/Ubuntu host: system packages (apt)
# and vhost-device-vsock (cargo). Idempotent: installed things are skipped.
set -euo pipefail

packages=(
  qemu-system-x86 qemu-utils busybox-static e2fsprogs cpio debootstrap mmdebstrap
  nftables iproute2 dnsutils openssh-client sqlite3 util-linux passwd zstd ca-certificates kmod git
  # tmux: the banger tui end-to-end test drives the TUI inside it.
  tmux
  # chromium, chromium-driver: the web UI's browser test (web_e2e) drives
  # headless chromium over WebDriver.
  chromium chromium-driver
  # sshd binary for banger-host's SSH end-to-end test (it runs its own sshd on
  # loopback). Note: on a systemd host the package also enables the system sshd.
  openssh-server
  # openssl: banger-agent-client's TLS probe test runs `openssl s_server`.
  openssl
  # systemd-nspawn: banger-system's install test boots systemd in a container.
  systemd-container
  # image pull tests: a registry on loopback, htpasswd for its basic auth,
  # skopeo to push test images into it.
  docker-registry apache2-utils skopeo
)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v vhost-device-vsock >/dev/null 2>&1; then
  echo "install-deps: building vhost-device-vsock (takes a few minutes)" >&2
  cargo install --locked --quiet vhost-device-vsock >&2
fi
