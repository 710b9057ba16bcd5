#!/bin/sh
# banger image provisioning, second half: run by mmdebstrap as a
# --customize-hook with the tree as $1, after the payload tar (tools, links,
# tmux plugin, opencode unit, mise activation) was unpacked into it. Does what
# depends on files already in the tree, idempotently, so running it again
# (a rebuild, or --from-image on a provisioned image) changes nothing:
#   - managed blocks in /etc/bash.bashrc (mise for interactive bash) and
#     /root/.tmux.conf (TPM + tmux-banger-persist), the rest of each file kept;
#   - ~/.tmux/plugins/tmux-banger-persist linked to the plugin;
#   - docker and containerd enabled when installed (--docker);
#   - checks that every tool command resolves inside the tree.
# Embedded in banger by crates/banger-image/src/provision/mod.rs.
set -eu

root=${1:?usage: provision.sh TREE}
[ -d "$root/etc" ] || { echo "banger-provision: $root has no /etc" >&2; exit 1; }

begin='# >>> banger managed block: rewritten by banger image builds; edit outside it >>>'
end='# <<< banger managed block <<<'

# managed_block FILE < CONTENT: replaces the lines between the markers (the
# markers included) with CONTENT between fresh markers, where the first block
# was; appends it when there is none. Everything outside is kept as it is,
# and later duplicate blocks are dropped. A begin marker without an end keeps
# its lines.
managed_block() {
    file=$1
    content=$(cat)
    mkdir -p "$(dirname "$file")"
    [ -e "$file" ] || : > "$file"
    tmp="$file.banger-new"
    BLOCK="$content" awk -v b="$begin" -v e="$end" '
        function emit() { print b; print ENVIRON["BLOCK"]; print e; done = 1 }
        $0 == b && !skip { skip = 1; held = ""; next }
        $0 == e && skip { skip = 0; if (!done) emit(); next }
        skip { held = held $0 "\n"; next }
        { print }
        END {
            if (skip) { printf "%s", held }
            if (!done) emit()
        }' "$file" > "$tmp"
    chmod --reference="$file" "$tmp" 2>/dev/null || true
    mv "$tmp" "$file"
}

managed_block "$root/etc/bash.bashrc" <<'EOF_BASH'
# mise (pinned, /usr/local/bin/mise) for interactive bash shells.
if [ -x /usr/local/bin/mise ]; then
    eval "$(/usr/local/bin/mise activate bash)"
fi
EOF_BASH

managed_block "$root/root/.tmux.conf" <<'EOF_TMUX'
# TPM (Debian's tmux-plugin-manager) and banger's session persistence:
# autosave every 15 minutes, restore with prefix + C-r or `banger-tmux restore`.
set -g @plugin 'banger/tmux-banger-persist'
set -g @banger-persist-interval '15'
run-shell '/usr/share/tmux-plugin-manager/tpm'
EOF_TMUX
chmod 0644 "$root/root/.tmux.conf"

mkdir -p "$root/root/.tmux/plugins"
rm -rf "$root/root/.tmux/plugins/tmux-banger-persist"
ln -s /usr/local/share/banger/tmux-banger-persist "$root/root/.tmux/plugins/tmux-banger-persist"

wants=$root/etc/systemd/system/multi-user.target.wants
mkdir -p "$wants"
for unit in containerd.service docker.service; do
    for dir in lib/systemd/system usr/lib/systemd/system; do
        if [ -f "$root/$dir/$unit" ]; then
            rm -f "$wants/$unit"
            ln -s "/$dir/$unit" "$wants/$unit"
            echo "banger-provision: enabled $unit"
            break
        fi
    done
done

# Every command must resolve inside the tree (absolute links are the tree's).
for link in "$root"/usr/local/bin/*; do
    [ -L "$link" ] || continue
    target=$(readlink "$link")
    case $target in
    /*) [ -e "$root$target" ] || { echo "banger-provision: ${link#"$root"} -> $target is missing" >&2; exit 1; } ;;
    esac
done
[ -e "$root/usr/share/tmux-plugin-manager/tpm" ] || echo "banger-provision: warning: TPM is not installed (tmux-plugin-manager)" >&2
echo "banger-provision: done"
