#!/usr/bin/env bash
# tmux-banger-persist: banger's own session persistence plugin, loaded by TPM
# (`set -g @plugin 'banger/tmux-banger-persist'` with the plugin directory in
# ~/.tmux/plugins/). Saves every session, window (name, layout) and pane
# (working directory) to a file, autosaves periodically, and restores only
# when asked: `prefix + C-r`, or `banger-tmux restore` from a shell.
# Options (set before TPM runs):
#   @banger-persist-interval   autosave period in minutes (default 15; 0 = off)
#   @banger-persist-save-key   key to save now (default C-s)
#   @banger-persist-restore-key key to restore (default C-r)
#   @banger-persist-file       where saves go (default
#                              ~/.local/share/tmux-banger-persist/last)
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cli="$dir/scripts/banger-tmux.sh"

option() {
	local value
	value="$(tmux show-option -gqv "$1")"
	echo "${value:-$2}"
}

tmux bind-key "$(option @banger-persist-save-key C-s)" run-shell "'$cli' save --message"
tmux bind-key "$(option @banger-persist-restore-key C-r)" run-shell "'$cli' restore --message"
# One autosave loop per tmux server, however often the configuration is
# sourced: the loop records its pid and a new one starts only when that
# process is gone.
tmux run-shell -b "'$cli' autosave-loop"
