#!/usr/bin/env bash
# Installs what banger needs on a Debian/Ubuntu host: system packages (apt)
# and vhost-device-vsock (cargo). Idempotent: installed things are skipped.
set -euo pipefail

packages=(
  qemu-system-x86 qemu-utils busybox-static e2fsprogs cpio debootstrap mmdebstrap
  nftables iproute2 dnsutils openssh-client sqlite3 util-linux passwd zstd ca-certificates kmod git
  # uidmap (newuidmap/newgidmap): an unprivileged daemon's image builds run
  # mmdebstrap in unshare mode, which needs them (not a hard dependency of
  # mmdebstrap, so --no-install-recommends leaves it out).
  uidmap
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

# QEMU 8 or newer: QEMU 7.2's TCG (Debian 12's own QEMU) crashes Linux 6.12
# guests in early boot (the catalog's generic-6-12 kernel; see
# docs/kernel-catalog.md). On Debian 12 it comes from bookworm-backports.
qemu_min="1:8.0"
qemu_installed=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)
if grep -q '^VERSION_CODENAME=bookworm$' /etc/os-release 2>/dev/null \
  && { [ -z "$qemu_installed" ] || dpkg --compare-versions "$qemu_installed" lt "$qemu_min"; }; then
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "install-deps: adding bookworm-backports to apt's sources for QEMU" >&2
    printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' \
      'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' |
      "${sudo_cmd[@]}" tee /etc/apt/sources.list.d/banger-backports.sources >/dev/null
  fi
  echo "install-deps: installing QEMU from bookworm-backports" >&2
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -t bookworm-backports qemu-system-x86 qemu-utils >&2
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
