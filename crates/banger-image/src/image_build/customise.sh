#!/bin/sh
# banger image customisation: turns a freshly bootstrapped Debian tree into a
# banger base image. Run by mmdebstrap as a --customize-hook with the tree as
# $1 (inside mmdebstrap's user namespace in unshare mode, so files written here
# get the tree's own root ownership). Embedded in banger by
# crates/banger-image/src/image_build/customise.rs.
#
# banger's initramfs writes hostname, static network, resolv.conf, SSH host
# keys, root's authorized_keys and the agent into each VM's overlay at boot, so
# the shared base must carry none of those and must not run anything that
# fights them (DHCP clients, network managers). /root stays in the tree here;
# the builder packs it into work-seed.ext4 and then empties it.
set -eu

root=${1:?usage: customise.sh TREE}
[ -d "$root/etc" ] || { echo "banger-customise: $root has no /etc" >&2; exit 1; }

# put FILE MODE < content: replaces FILE (rm first: it may be a symlink, e.g.
# resolv.conf, that would lead out of the tree).
put() {
    mkdir -p "$(dirname "$1")"
    rm -rf "$1"
    cat > "$1"
    chmod "$2" "$1"
}

# link TARGET NAME
link() {
    mkdir -p "$(dirname "$2")"
    rm -rf "$2"
    ln -s "$1" "$2"
}

# Host keys from openssh-server's postinst would be shared by every VM.
for key in "$root"/etc/ssh/ssh_host_*; do
    [ -e "$key" ] || [ -L "$key" ] || continue
    echo "banger-customise: removing ${key#"$root"}"
    rm -f "$key"
done

# Debian's sshd_config includes sshd_config.d/*.conf first, and the first value
# sshd obtains wins, so this overrides the defaults.
put "$root/etc/ssh/sshd_config.d/banger.conf" 0644 <<'EOF'
# Written by banger image build. Each VM gets its own host keys and root's
# authorized_keys from the banger initramfs at boot; passwords are never used.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
EOF

systemd=$root/etc/systemd/system
# Fallback for VMs booted without an injected host key (e.g. by hand): sshd
# refuses to start without any, which would lock everyone out.
put "$systemd/banger-ssh-hostkey.service" 0644 <<'EOF'
[Unit]
Description=Generate an SSH host key when banger delivered none
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=multi-user.target
EOF
link ../banger-ssh-hostkey.service "$systemd/multi-user.target.wants/banger-ssh-hostkey.service"

# Disks that give space back: banger attaches the writable disks with discard
# (QEMU discard=unmap), so a trim punches holes in the sparse host files.
# util-linux's fstrim.timer trims every mounted filesystem; banger runs it
# daily instead of weekly (Persistent: also soon after a boot that missed
# one), and trims once more at shutdown, before the filesystems unmount.
link /lib/systemd/system/fstrim.timer "$systemd/timers.target.wants/fstrim.timer"
put "$systemd/fstrim.timer.d/banger.conf" 0644 <<'EOF'
# Written by banger image build: trim daily (util-linux's default is weekly)
# so space deleted in the VM goes back to the host within a day.
[Timer]
OnCalendar=
OnCalendar=daily
RandomizedDelaySec=
RandomizedDelaySec=15min
Persistent=true
EOF
put "$systemd/banger-fstrim-shutdown.service" 0644 <<'EOF'
# Written by banger image build: trims every mounted filesystem when the VM
# shuts down. Stopped before /root (the work disk) unmounts: stop order is
# the reverse of start order.
[Unit]
Description=Trim filesystems at shutdown (gives deleted space back to the host)
RequiresMountsFor=/root

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
ExecStop=-/sbin/fstrim --all --quiet-unsupported
TimeoutStopSec=60

[Install]
WantedBy=multi-user.target
EOF
link ../banger-fstrim-shutdown.service "$systemd/multi-user.target.wants/banger-fstrim-shutdown.service"

# Anything that would configure the network itself (DHCP) fights the static
# config the initramfs applied. Masked whether or not installed, so an extra
# package list cannot bring them back.
for unit in systemd-networkd.service systemd-networkd.socket \
    systemd-networkd-wait-online.service NetworkManager.service \
    NetworkManager-wait-online.service dhcpcd.service connman.service; do
    link /dev/null "$systemd/$unit"
    for wants in multi-user.target.wants sockets.target.wants network-online.target.wants; do
        rm -f "$systemd/$wants/$unit"
    done
done

# console=ttyS0 makes systemd's getty generator add this getty anyway; enabling
# it explicitly also covers command lines whose last console= is another one.
link /lib/systemd/system/serial-getty@.service "$systemd/getty.target.wants/serial-getty@ttyS0.service"

# Left by mmdebstrap's --dpkgopt=force-unsafe-io: unsafe I/O is for the build only.
rm -f "$root/etc/dpkg/dpkg.cfg.d/99mmdebstrap"

put "$root/etc/fstab" 0644 <<'EOF'
# banger: the initramfs mounts / (overlay of the base image and the VM's upper
# disk), /root (the VM's work disk) and /lib/modules/<version> (modules disk).
# Nothing to mount here.
EOF
# mmdebstrap copies the build host's hostname and resolv.conf into the tree.
echo banger | put "$root/etc/hostname" 0644
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' | put "$root/etc/hosts" 0644
echo "# Replaced at boot by banger's initramfs with the VM's DNS servers." | put "$root/etc/resolv.conf" 0644
# Empty machine-id: systemd makes a new one on each VM's first boot.
put "$root/etc/machine-id" 0444 < /dev/null
link /etc/machine-id "$root/var/lib/dbus/machine-id"
printf 'builder=banger image build\ncustomisation=%s\n' "${BANGER_CUSTOMISATION:-unknown}" \
    | put "$root/etc/banger/image" 0644

# /root becomes the work seed (the builder packs it, then empties it): the
# skeleton dotfiles plus an empty .ssh for the authorized_keys the initramfs writes.
mkdir -p "$root/root/.ssh"
chmod 0700 "$root/root" "$root/root/.ssh"
echo "banger-customise: done"
