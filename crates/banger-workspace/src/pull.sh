# banger workspace pull, guest side. Arguments: <repo path> <vm name>.
# Commits uncommitted changes (without touching HEAD, index or working
# tree), then prints one header line and a git bundle of HEAD's new
# commits on stdout. Everything else goes to stderr.
set -eu
dir=$1
vm=$2
fail() {
    code=$1
    shift
    echo "banger: $*" >&2
    exit "$code"
}
[ -d "$dir" ] || fail 20 "$dir does not exist in the VM"
cd "$dir"
command -v git >/dev/null 2>&1 || fail 23 "git is not installed in the VM"
git rev-parse --git-dir >/dev/null 2>&1 || fail 21 "$dir is not a git checkout"
base=$(git rev-parse -q --verify 'refs/banger/base^{commit}' 2>/dev/null) || base=
shallow=$(git rev-parse --git-path shallow)
if [ -z "$base" ] && [ -s "$shallow" ]; then
    base=$(head -n 1 "$shallow")
fi
[ -n "$base" ] || fail 22 "$dir was not prepared by banger (no refs/banger/base)"
head=$(git rev-parse -q --verify 'HEAD^{commit}') || fail 24 "HEAD in $dir has no commit"
tip=$head
wip=0
index=$(git rev-parse --git-path index)
tmp=$(mktemp "${TMPDIR:-/tmp}/banger-pull-index.XXXXXX")
trap 'rm -f "$tmp"' EXIT
# A copy of the real index keeps its stat data (fast `add -A`) and staged
# changes; an empty file is not a valid index, so none means none.
if [ -f "$index" ]; then cp "$index" "$tmp"; else rm -f "$tmp"; fi
GIT_INDEX_FILE=$tmp git add -A >&2
tree=$(GIT_INDEX_FILE=$tmp git write-tree)
if [ "$tree" != "$(git rev-parse "$head^{tree}")" ]; then
    if [ -z "$(git config user.name || true)" ]; then
        GIT_AUTHOR_NAME=banger GIT_COMMITTER_NAME=banger
        export GIT_AUTHOR_NAME GIT_COMMITTER_NAME
    fi
    if [ -z "$(git config user.email || true)" ]; then
        GIT_AUTHOR_EMAIL="banger@$vm.vm" GIT_COMMITTER_EMAIL="banger@$vm.vm"
        export GIT_AUTHOR_EMAIL GIT_COMMITTER_EMAIL
    fi
    tip=$(git commit-tree -p "$head" -m "banger: uncommitted changes in VM $vm" "$tree")
    wip=1
fi
count=$(git rev-list --count "$tip" --not "$base")
if [ "$count" = 0 ]; then
    echo "banger-pull 1 nothing $base"
    exit 0
fi
git update-ref -m "banger pull" refs/banger/pull "$tip"
echo "banger-pull 1 bundle $tip $base $wip $count"
git bundle create - refs/banger/pull --not "$base"
