# banger workspace prepare, guest side: unpack a tar stream from stdin into
# an absent or empty directory. Arguments: <dest> <readonly|writable>
# <shallow|full_copy>.
set -eu
dest=$1
if [ "$3" = shallow ] && ! command -v git >/dev/null 2>&1; then
    echo "banger: git is not installed in the VM; a shallow copy needs it (install git, or use --mode full_copy)" >&2
    exit 18
fi
if [ -e "$dest" ] || [ -L "$dest" ]; then
    if [ ! -d "$dest" ] || [ -n "$(ls -A -- "$dest")" ]; then
        echo "banger: $dest already exists in the VM and is not empty" >&2
        exit 17
    fi
fi
mkdir -p -- "$dest"
# Tell the host the checks passed, so it never streams into a refusal.
echo ready
tar -x -p --no-same-owner -f - -C "$dest"
# Files identical to the commit came as part of the pack, not twice: write
# them from it (the index gets their stat data, so `git status` is quick).
list="$dest/.git/banger-checkout"
if [ -f "$list" ]; then
    git -C "$dest" -c core.fsync=none checkout-index -u -z --stdin < "$list"
    rm -f -- "$list"
fi
if [ "$2" = readonly ]; then
    chmod -R a-w -- "$dest"
fi
