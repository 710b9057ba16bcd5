//! What `tools/list` returns: each tool's name, description, JSON Schema
//! of its arguments and behaviour hints. The argument types in the tool
//! modules accept exactly these properties (unknown ones are refused).

use banger_api::snapshots::MAX_FORK_COUNT;
use serde_json::{Value, json};

/// Every tool's name, in `tools/list` order.
pub const NAMES: &[&str] = &[
    "vm_list",
    "vm_create",
    "vm_run",
    "vm_exec",
    "file_read",
    "file_write",
    "file_list",
    "vm_ports",
    "vm_logs",
    "session_start",
    "session_read",
    "session_write",
    "session_stop",
    "workspace_prepare",
    "workspace_pull",
    "vm_pause",
    "vm_resume",
    "vm_fork",
    "vm_delete",
];

fn vm() -> Value {
    json!({"type": "string", "description": "VM name (lowercase letters, digits, '-')."})
}

fn session() -> Value {
    json!({"type": "string", "description": "Session name, unique within the VM (lowercase letters, digits, '-')."})
}

fn resources() -> serde_json::Map<String, Value> {
    props(json!({
        "name": {"type": "string", "description": "VM name; generated (adjective-noun) when absent."},
        "image": {"type": "string", "description": "Image to boot; the daemon's default_image_name when absent."},
        "vcpu": {"type": "integer", "minimum": 1, "maximum": 255, "description": "Virtual CPUs (default 2)."},
        "memory_mib": {"type": "integer", "minimum": 256, "description": "Memory in MiB (default 2048)."},
        "disk_gib": {"type": "integer", "minimum": 1, "description": "Size of the persistent work disk (/root) in GiB (default 8)."},
        "nat": {"type": "boolean", "description": "Let the VM reach the outside world through NAT (default: only the host bridge)."}
    }))
}

fn command_limits() -> serde_json::Map<String, Value> {
    props(json!({
        "env": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Environment variables for the command; sent on its stdin, never echoed back."},
        "timeout_secs": {"type": "integer", "minimum": 1, "maximum": 10800, "description": "Seconds before the command is killed (default 120)."},
        "max_output_bytes": {"type": "integer", "minimum": 0, "maximum": 1048576, "description": "Bytes kept of stdout and of stderr each (default 65536); `truncated` says when more was cut."}
    }))
}

fn object(properties: serde_json::Map<String, Value>, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}

fn props(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

fn tool(name: &str, title: &str, description: &str, schema: Value, hints: Value) -> Value {
    json!({
        "name": name,
        "title": title,
        "description": description,
        "inputSchema": schema,
        "annotations": hints,
    })
}

/// `tools/list`'s `tools`.
pub fn definitions() -> Vec<Value> {
    let read_only = json!({"readOnlyHint": true, "openWorldHint": false});
    let changes = json!({"readOnlyHint": false, "destructiveHint": false, "openWorldHint": false});
    let destroys = json!({"readOnlyHint": false, "destructiveHint": true, "openWorldHint": false});
    let just_vm = || object(props(json!({"vm": vm()})), &["vm"]);

    let mut run = resources();
    run.extend(props(json!({
        "command": {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "The command: one string is a shell command line (pipes, redirections work); several are an argv passed exactly."},
        "path": {"type": "string", "description": "A git checkout on the host (inside the server's allowed paths) to copy into /root/repo first, uncommitted edits included; the command then runs there."},
        "delete_after": {"type": "boolean", "description": "Delete the VM when the command is done (default false: it keeps running)."}
    })));
    run.extend(command_limits());

    let mut exec = props(json!({
        "vm": vm(),
        "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "Program and arguments, passed exactly (no shell; use [\"sh\", \"-c\", \"...\"] for one)."},
        "cwd": {"type": "string", "description": "Absolute working directory in the guest (default /root)."}
    }));
    exec.extend(command_limits());

    vec![
        tool(
            "vm_list",
            "List VMs",
            "All banger VMs with their state, image, address (<name>.vm) and resources; created_by_this_server marks the ones this server may delete.",
            object(serde_json::Map::new(), &[]),
            read_only.clone(),
        ),
        tool(
            "vm_create",
            "Create a VM",
            "Create a microVM sandbox and start it; returns when SSH answers (the first create may build the image, taking minutes). Lasts until vm_delete.",
            object(resources(), &[]),
            changes.clone(),
        ),
        tool(
            "vm_run",
            "Run a command in a new VM",
            "Create and start a VM, optionally copy a host git checkout into /root/repo (like `banger vm run PATH -- CMD`), run the command there and return its exit code, stdout and stderr (bounded).",
            object(run, &["command"]),
            changes.clone(),
        ),
        tool(
            "vm_exec",
            "Run a command in a VM",
            "Run a program in a running VM over SSH and return its exit code, stdout and stderr (bounded, with `truncated`); `timed_out` says whether the timeout ended it.",
            object(exec, &["vm", "argv"]),
            changes.clone(),
        ),
        tool(
            "file_read",
            "Read a guest file",
            "Read a regular file in a running VM from `offset`, at most `max_bytes` (default 262144, at most 1048576); `truncated` says when more follows.",
            object(
                props(json!({
                    "vm": vm(),
                    "path": {"type": "string", "description": "Absolute guest path."},
                    "offset": {"type": "integer", "minimum": 0, "description": "First byte to read (default 0)."},
                    "max_bytes": {"type": "integer", "minimum": 0, "maximum": 1048576, "description": "Most bytes to return."}
                })),
                &["vm", "path"],
            ),
            read_only.clone(),
        ),
        tool(
            "file_write",
            "Write a guest file",
            "Write (or append) UTF-8 text, at most 1 MiB, to a file in a running VM, creating parent directories unless make_dirs is false.",
            object(
                props(json!({
                    "vm": vm(),
                    "path": {"type": "string", "description": "Absolute guest path."},
                    "content": {"type": "string", "description": "The text to write."},
                    "append": {"type": "boolean", "description": "Append instead of replacing (default false)."},
                    "make_dirs": {"type": "boolean", "description": "Create missing parent directories (default true)."}
                })),
                &["vm", "path", "content"],
            ),
            changes.clone(),
        ),
        tool(
            "file_list",
            "List a guest directory",
            "Entries of a directory in a running VM (name, type, size, octal mode), at most 1000; `truncated` says when more exist.",
            object(
                props(json!({
                    "vm": vm(),
                    "path": {"type": "string", "description": "Absolute guest directory."}
                })),
                &["vm", "path"],
            ),
            read_only.clone(),
        ),
        tool(
            "vm_ports",
            "List a VM's listening ports",
            "The guest's listening sockets as host endpoints (<name>.vm:PORT), with URLs for web servers.",
            just_vm(),
            read_only.clone(),
        ),
        tool(
            "vm_logs",
            "Tail a VM's console",
            "The end of a VM's serial console log (boot messages, kernel errors), at most max_bytes (default 16384).",
            object(
                props(json!({
                    "vm": vm(),
                    "max_bytes": {"type": "integer", "minimum": 0, "maximum": 1048576, "description": "Bytes of the log's end to return."}
                })),
                &["vm"],
            ),
            read_only.clone(),
        ),
        tool(
            "session_start",
            "Start a session",
            "Start a long-lived guest process (a dev server, a watcher, an agent) kept by the guest agent, with its output logged; stdin \"pipe\" lets session_write feed it.",
            object(
                props(json!({
                    "vm": vm(),
                    "name": session(),
                    "command": {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "Program and arguments; the program must be on the guest PATH."},
                    "cwd": {"type": "string", "description": "Absolute working directory (default /root/repo when it exists, else /root)."},
                    "stdin": {"type": "string", "enum": ["detached", "pipe"], "description": "detached (/dev/null, default) or pipe (written by session_write)."}
                })),
                &["vm", "name", "command"],
            ),
            changes.clone(),
        ),
        tool(
            "session_read",
            "Read a session's output",
            "A window of a session's stdout or stderr log from `offset` (at most max_bytes, default 16384), with the session's state and exit code; continue from next_offset while `more` is true.",
            object(
                props(json!({
                    "vm": vm(),
                    "name": session(),
                    "stream": {"type": "string", "enum": ["stdout", "stderr"], "description": "Which log (default stdout)."},
                    "offset": {"type": "integer", "minimum": 0, "description": "First byte (default 0)."},
                    "max_bytes": {"type": "integer", "minimum": 0, "maximum": 1048576, "description": "Most bytes to return."}
                })),
                &["vm", "name"],
            ),
            read_only.clone(),
        ),
        tool(
            "session_write",
            "Write to a session's stdin",
            "Send text (at most 1 MiB) to the stdin of a running session started with stdin \"pipe\".",
            object(
                props(json!({
                    "vm": vm(),
                    "name": session(),
                    "data": {"type": "string", "description": "The text; include a trailing newline for line-oriented programs."}
                })),
                &["vm", "name", "data"],
            ),
            changes.clone(),
        ),
        tool(
            "session_stop",
            "Stop a session",
            "Send SIGTERM (or SIGKILL with kill) to a session's process group.",
            object(
                props(json!({
                    "vm": vm(),
                    "name": session(),
                    "kill": {"type": "boolean", "description": "SIGKILL instead of SIGTERM (default false)."}
                })),
                &["vm", "name"],
            ),
            destroys.clone(),
        ),
        tool(
            "workspace_prepare",
            "Copy a checkout into a VM",
            "Copy a host git checkout (inside the server's allowed paths) into a running VM, uncommitted edits included, in one streamed transfer; the guest directory must be absent or empty.",
            object(
                props(json!({
                    "vm": vm(),
                    "path": {"type": "string", "description": "The host checkout; relative paths start at the first allowed path."},
                    "guest_path": {"type": "string", "description": "Absolute guest directory (default /root/repo)."},
                    "mode": {"type": "string", "enum": ["shallow", "full_copy"], "description": "shallow (tracked files and a one-commit .git, default) or full_copy (the directory as it is, .git and all)."},
                    "include_untracked": {"type": "boolean", "description": "Shallow mode: also send untracked, non-ignored files."},
                    "readonly": {"type": "boolean", "description": "Make the guest copy read-only."}
                })),
                &["vm", "path"],
            ),
            changes.clone(),
        ),
        tool(
            "workspace_pull",
            "Bring the guest's work back",
            "The guest copy's new commits and uncommitted changes become a branch (default banger/<vm>) of the host repository; the host's working tree and current branch are never touched. Returns the branch.",
            object(
                props(json!({
                    "vm": vm(),
                    "path": {"type": "string", "description": "The host checkout (default: the first allowed path)."},
                    "branch": {"type": "string", "description": "Host branch to write (default banger/<vm>)."},
                    "guest_path": {"type": "string", "description": "Absolute guest repository (default /root/repo)."}
                })),
                &["vm"],
            ),
            changes.clone(),
        ),
        tool(
            "vm_pause",
            "Pause a VM",
            "Park a running VM with its memory (processes, /tmp) on disk; vm_resume brings it back where it was.",
            just_vm(),
            changes.clone(),
        ),
        tool(
            "vm_resume",
            "Resume a VM",
            "Resume a paused VM; returns when SSH answers.",
            just_vm(),
            changes.clone(),
        ),
        tool(
            "vm_fork",
            "Fork a VM",
            "Make new VMs from a running or paused VM: each starts with a copy of its disks and memory (running processes, /tmp) and its own name, address, MAC and SSH host key; the source keeps running. Returns the new VMs once each answers SSH; this server may vm_delete them.",
            object(
                props(json!({
                    "source": {"type": "string", "description": "The VM to copy (running or paused)."},
                    "name": {"type": "string", "description": "Name of the new VM; with count above 1 the new VMs are NAME-1 ... NAME-COUNT."},
                    "count": {"type": "integer", "minimum": 1, "maximum": MAX_FORK_COUNT, "description": "How many VMs to make (default 1)."}
                })),
                &["source", "name"],
            ),
            changes,
        ),
        tool(
            "vm_delete",
            "Delete a VM",
            "Delete a VM and its disks (running VMs are stopped first unless force is false). Only VMs this server created, unless it runs with --allow-delete-any.",
            object(
                props(json!({
                    "vm": vm(),
                    "force": {"type": "boolean", "description": "Stop a running VM first (default true)."}
                })),
                &["vm"],
            ),
            destroys,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_definitions() {
        let definitions = definitions();
        let names: Vec<&str> = definitions
            .iter()
            .map(|tool| tool["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, NAMES);
    }
}
