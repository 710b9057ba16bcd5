#!/bin/sh
# A stand-in for ssh: skips the options up to `--` and `user@ip`, then runs
# the remote command line locally, as the guest's login shell would. The
# "guest" gets its own HOME next to this script so the host user's global
# git config does not leak in.
while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then
        shift
        break
    fi
    shift
done
shift
HOME="$(dirname "$0")/guest-home"
GIT_CONFIG_NOSYSTEM=1
export HOME GIT_CONFIG_NOSYSTEM
mkdir -p "$HOME"
exec sh -c "$*"
