# Installed by banger's image provisioning (images/guest/banger-mise.sh):
# mise's shims on PATH for bash login shells, interactive or not (`bash -lc`).
# Interactive shells get the full `mise activate bash` from /etc/bash.bashrc.
if [ -n "${BASH_VERSION:-}" ] && [ -x /usr/local/bin/mise ]; then
    eval "$(/usr/local/bin/mise activate bash --shims)"
fi
