#!/usr/bin/env bash
# banger-tmux: save and restore tmux sessions (tmux-banger-persist).
#   banger-tmux save        write every session, window and pane to the save file
#   banger-tmux restore     recreate saved sessions that do not exist now
#   banger-tmux file        print the save file's path
#   banger-tmux autosave-loop  (started by the plugin) save every interval
# The save file is plain text, one pane per line, fields separated by tabs:
#   pane  SESSION  WINDOW_INDEX  WINDOW_NAME  WINDOW_ACTIVE  LAYOUT  PANE_INDEX  PANE_ACTIVE  CWD
# Names or directories containing tabs or newlines are not supported.
set -u

option() {
	local value
	value="$(tmux show-option -gqv "$1" 2>/dev/null)"
	echo "${value:-$2}"
}

save_file() {
	local default="${XDG_DATA_HOME:-$HOME/.local/share}/tmux-banger-persist/last"
	option @banger-persist-file "$default"
}

say() {
	if [ "${message:-0}" = 1 ]; then
		tmux display-message "$1"
	else
		echo "$1"
	fi
}

save() {
	local file tmp
	file="$(save_file)"
	mkdir -p "$(dirname "$file")"
	tmp="$file.tmp.$$"
	if ! tmux list-panes -a -F "pane	#{session_name}	#{window_index}	#{window_name}	#{window_active}	#{window_layout}	#{pane_index}	#{pane_active}	#{pane_current_path}" >"$tmp" 2>/dev/null || [ ! -s "$tmp" ]; then
		# No server or no sessions: keep the last save rather than an empty one.
		rm -f "$tmp"
		say "banger-tmux: nothing to save (no tmux sessions)"
		return 1
	fi
	mv "$tmp" "$file"
	say "banger-tmux: saved $(cut -f2 "$file" | sort -u | wc -l) session(s) to $file"
}

restore() {
	local file kind session index name active layout pane pane_active cwd
	local restored="" skipped=""
	file="$(save_file)"
	if [ ! -s "$file" ]; then
		say "banger-tmux: no save file at $file"
		return 1
	fi
	# Sessions that exist now are left alone (restore never clobbers).
	local existing
	existing="$(tmux list-sessions -F '#{session_name}' 2>/dev/null || true)"
	while IFS='	' read -r kind session index name active layout pane pane_active cwd; do
		[ "$kind" = pane ] || continue
		[ -d "$cwd" ] || cwd="$HOME"
		if printf '%s\n' "$existing" | grep -qxF -- "$session"; then
			case " $skipped " in *" $session "*) ;; *) skipped="$skipped $session" ;; esac
			continue
		fi
		if ! tmux has-session -t "=$session" 2>/dev/null; then
			tmux new-session -d -s "$session" -n "$name" -c "$cwd"
			# The first window takes the saved index.
			local first
			first="$(tmux list-windows -t "=$session" -F '#{window_index}' | head -n1)"
			[ "$first" = "$index" ] || tmux move-window -s "=$session:$first" -t "=$session:$index"
			restored="$restored $session"
		elif ! tmux list-windows -t "=$session" -F '#{window_index}' | grep -qxF -- "$index"; then
			tmux new-window -d -t "=$session:$index" -n "$name" -c "$cwd"
		else
			tmux split-window -d -t "=$session:$index" -c "$cwd"
		fi
		tmux select-layout -t "=$session:$index" "$layout" >/dev/null 2>&1 || true
		if [ "$active" = 1 ]; then
			tmux select-window -t "=$session:$index"
		fi
		if [ "$pane_active" = 1 ]; then
			tmux select-pane -t "=$session:$index.$pane" 2>/dev/null || true
		fi
		# tmux renames windows after their command unless told otherwise.
		tmux set-window-option -t "=$session:$index" automatic-rename off >/dev/null
	done <"$file"
	say "banger-tmux: restored${restored:- nothing}${skipped:+ (already running:$skipped)}"
}

autosave_loop() {
	local minutes pid_option=@banger-persist-autosave-pid old
	old="$(tmux show-option -gqv "$pid_option" 2>/dev/null)"
	if [ -n "$old" ] && kill -0 "$old" 2>/dev/null; then
		return 0
	fi
	tmux set-option -gq "$pid_option" "$$"
	while tmux list-sessions >/dev/null 2>&1; do
		minutes="$(option @banger-persist-interval 15)"
		case "$minutes" in '' | *[!0-9]*) minutes=15 ;; esac
		# The first save comes one interval after the server starts, so a
		# fresh server never overwrites the last save before a restore.
		sleep "$(((minutes > 0 ? minutes : 1) * 60))"
		[ "$minutes" -gt 0 ] && save >/dev/null 2>&1
	done
}

message=0
command="${1:-}"
[ "${2:-}" = --message ] && message=1
case "$command" in
save) save ;;
restore) restore ;;
file) save_file ;;
autosave-loop) autosave_loop ;;
*)
	echo "usage: banger-tmux save|restore|file" >&2
	exit 2
	;;
esac
