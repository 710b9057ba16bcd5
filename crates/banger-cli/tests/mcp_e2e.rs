//! End-to-end suite of `banger mcp` against a real guest: an MCP client
//! (this test) spawns the server over stdio, initializes, lists the tools
//! and drives one VM at a time: vm_create → vm_exec `echo hi` (and exit
//! codes, env, timeouts, output bounds) → file_write/file_read/file_list →
//! vm_ports/vm_logs → a pipe session → workspace_prepare/workspace_pull →
//! vm_delete (refused for a VM the server did not create), then vm_run with
//! a checkout and delete_after. Malformed JSON-RPC in between is answered
//! and the server keeps serving. Real bangerd, real Debian guest (the bare
//! catalog image) under QEMU, inside a network namespace the test creates.
//! With `--nocapture` every message is printed (docs/mcp.md's transcript).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::vm_suite::Suite;
use serde_json::{Value, json};

/// A VM create may build nothing (the image exists) but boots under TCG.
const CREATE_TIMEOUT: Duration = Duration::from_secs(600);
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The test's side of the stdio connection.
struct McpClient {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    next_id: u64,
}

impl McpClient {
    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("banger mcp starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
            next_id: 0,
        }
    }

    fn send_line(&mut self, line: &str) {
        eprintln!("--> {line}");
        writeln!(self.stdin, "{line}").expect("send");
        self.stdin.flush().expect("flush");
    }

    fn receive(&mut self, timeout: Duration) -> Value {
        let line = self
            .lines
            .recv_timeout(timeout)
            .unwrap_or_else(|error| panic!("no answer within {timeout:?}: {error}"));
        eprintln!("<-- {line}");
        serde_json::from_str(&line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
    }

    fn request(&mut self, method: &str, params: Value, timeout: Duration) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_line(&message.to_string());
        let response = self.receive(timeout);
        assert_eq!(response["id"], id, "{response}");
        response
    }

    /// A tool call's result (success or tool error).
    fn call_result(&mut self, tool: &str, arguments: Value, timeout: Duration) -> Value {
        let response = self.request(
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
            timeout,
        );
        response["result"].clone()
    }

    /// A tool call that must succeed: its structured content.
    fn call(&mut self, tool: &str, arguments: Value) -> Value {
        self.call_with(tool, arguments, CALL_TIMEOUT)
    }

    fn call_with(&mut self, tool: &str, arguments: Value, timeout: Duration) -> Value {
        let result = self.call_result(tool, arguments, timeout);
        assert_eq!(result["isError"], false, "{tool} failed: {result}");
        let text = result["content"][0]["text"].as_str().expect("text content");
        let structured = result["structuredContent"].clone();
        assert_eq!(
            serde_json::from_str::<Value>(text).expect("text is the JSON result"),
            structured
        );
        structured
    }

    /// A tool call that must fail with `code`.
    fn call_error(&mut self, tool: &str, arguments: Value, code: &str) -> String {
        let result = self.call_result(tool, arguments, CALL_TIMEOUT);
        assert_eq!(result["isError"], true, "{tool} should fail: {result}");
        assert_eq!(
            result["structuredContent"]["error"]["code"], code,
            "{result}"
        );
        result["structuredContent"]["error"]["message"]
            .as_str()
            .expect("message")
            .to_owned()
    }

    /// Closes stdin and waits for the server to exit.
    fn finish(mut self) {
        drop(self.stdin);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "banger mcp exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "banger mcp did not exit at EOF");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Host Dev", "-c", "user.email=dev@host"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A repository with one commit and an uncommitted edit.
fn make_repo(root: &Path) -> std::path::PathBuf {
    let repo = root.join("project");
    fs_err::create_dir_all(&repo).expect("mkdir");
    fs_err::write(repo.join("README.md"), "# project\n").expect("write");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "initial"]);
    fs_err::write(repo.join("README.md"), "# project\nedited on the host\n").expect("write");
    repo
}

#[test]
fn mcp_drives_a_real_guest() {
    let started = Instant::now();
    let mut suite = Suite::new("mcp");
    suite.vars.push((
        "BANGER_DEFAULT_IMAGE_NAME".into(),
        "debian-bookworm-minimal".into(),
    ));
    let root = suite.env.root().join("allowed");
    fs_err::create_dir_all(&root).expect("mkdir");
    let repo = make_repo(&root);
    let repo_arg = repo.to_str().expect("utf-8").to_owned();

    // Build the image (host namespace, needs the mirror); the stopped VM
    // "seed" stays as a VM this server did not create.
    suite.create_in_host_namespace("seed");
    eprintln!("image ready after {:.0} s", started.elapsed().as_secs_f64());

    let root_arg = root.to_str().expect("utf-8");
    let mut mcp = McpClient::spawn(suite.banger(&["mcp", "--allow-path", root_arg]));

    // Handshake.
    let init = mcp.request(
        "initialize",
        json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "mcp_e2e", "version": "0"}
        }),
        CALL_TIMEOUT,
    );
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(init["result"]["serverInfo"]["name"], "banger");
    mcp.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let listed = mcp.request("tools/list", json!({}), CALL_TIMEOUT);
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|tool| tool["name"].as_str().expect("name"))
        .collect();
    for wanted in ["vm_create", "vm_exec", "file_read", "vm_run", "vm_delete"] {
        assert!(names.contains(&wanted), "{names:?}");
    }

    // A garbage line is answered; the server keeps serving.
    mcp.send_line("{not json");
    assert_eq!(mcp.receive(CALL_TIMEOUT)["error"]["code"], -32700);

    // vm_create → vm_exec `echo hi`.
    let create_started = Instant::now();
    let vm = mcp.call_with("vm_create", json!({"name": "mcp-box"}), CREATE_TIMEOUT);
    eprintln!(
        "vm_create took {:.1} s",
        create_started.elapsed().as_secs_f64()
    );
    assert_eq!(vm["name"], "mcp-box");
    assert_eq!(vm["state"], "running");
    assert_eq!(vm["created_by_this_server"], true);
    let exec_started = Instant::now();
    let hi = mcp.call("vm_exec", json!({"vm": "mcp-box", "argv": ["echo", "hi"]}));
    eprintln!(
        "vm_exec echo hi took {:.1} s",
        exec_started.elapsed().as_secs_f64()
    );
    assert_eq!(hi["result"]["exit_code"], 0, "{hi}");
    assert_eq!(hi["result"]["stdout"], "hi\n");
    assert_eq!(hi["result"]["truncated"], false);

    // Exit code, stderr, cwd and env (the value is used, never echoed).
    let script = mcp.call(
        "vm_exec",
        json!({
            "vm": "mcp-box",
            "argv": ["sh", "-c", "pwd; echo \"$TOKEN\" | wc -c; echo oops >&2; exit 3"],
            "cwd": "/tmp",
            "env": {"TOKEN": "s3cret-value"}
        }),
    );
    assert_eq!(script["result"]["exit_code"], 3, "{script}");
    assert_eq!(script["result"]["stdout"], "/tmp\n13\n");
    assert_eq!(script["result"]["stderr"], "oops\n");
    assert!(!script.to_string().contains("s3cret-value"));

    // Output bounds and timeouts.
    let big = mcp.call(
        "vm_exec",
        json!({
            "vm": "mcp-box",
            "argv": ["sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x"],
            "max_output_bytes": 1000
        }),
    );
    assert_eq!(big["result"]["truncated"], true, "{big}");
    assert_eq!(big["result"]["stdout_bytes"], 200_000);
    assert_eq!(big["result"]["stdout"].as_str().expect("text").len(), 1000);
    let slow = mcp.call(
        "vm_exec",
        json!({"vm": "mcp-box", "argv": ["sleep", "60"], "timeout_secs": 2}),
    );
    assert_eq!(slow["result"]["timed_out"], true, "{slow}");

    // Files.
    let written = mcp.call(
        "file_write",
        json!({"vm": "mcp-box", "path": "/root/notes/hello.txt", "content": "hello from MCP\nline 2\n"}),
    );
    assert_eq!(written["bytes_written"], 22);
    let read = mcp.call(
        "file_read",
        json!({"vm": "mcp-box", "path": "/root/notes/hello.txt"}),
    );
    assert_eq!(read["content"], "hello from MCP\nline 2\n");
    assert_eq!(read["truncated"], false);
    let window = mcp.call(
        "file_read",
        json!({"vm": "mcp-box", "path": "/root/notes/hello.txt", "offset": 6, "max_bytes": 4}),
    );
    assert_eq!(window["content"], "from");
    assert_eq!(window["truncated"], true);
    let listing = mcp.call("file_list", json!({"vm": "mcp-box", "path": "/root/notes"}));
    assert_eq!(
        listing["entries"],
        json!([{"name": "hello.txt", "type": "regular file", "size": 22, "mode": "644"}])
    );
    let missing = mcp.call_error(
        "file_read",
        json!({"vm": "mcp-box", "path": "/root/nope"}),
        "guest_command_failed",
    );
    assert!(missing.contains("not a regular file"), "{missing}");

    // Ports and console.
    let ports = mcp.call("vm_ports", json!({"vm": "mcp-box"}));
    assert!(
        ports["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .any(|port| port["port"] == 22),
        "{ports}"
    );
    let logs = mcp.call("vm_logs", json!({"vm": "mcp-box", "max_bytes": 2000}));
    assert!(!logs["console"].as_str().expect("console").is_empty());

    // A pipe session: write to it, read its output, stop it.
    mcp.call(
        "session_start",
        json!({"vm": "mcp-box", "name": "echoer", "command": ["cat"], "stdin": "pipe"}),
    );
    mcp.call(
        "session_write",
        json!({"vm": "mcp-box", "name": "echoer", "data": "ping\n"}),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = mcp.call("session_read", json!({"vm": "mcp-box", "name": "echoer"}));
        if out["text"] == "ping\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "session output never came: {out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    mcp.call("session_stop", json!({"vm": "mcp-box", "name": "echoer"}));

    // Workspaces: in, a guest commit, back as a branch.
    let prepared = mcp.call(
        "workspace_prepare",
        json!({"vm": "mcp-box", "path": repo_arg}),
    );
    assert_eq!(prepared["guest_path"], "/root/repo");
    let guest_edit = mcp.call(
        "vm_exec",
        json!({
            "vm": "mcp-box",
            "argv": ["sh", "-c", "cat README.md && echo guest >> README.md && git -c user.name=G -c user.email=g@g commit -qam guest"],
            "cwd": "/root/repo"
        }),
    );
    assert_eq!(
        guest_edit["result"]["stdout"], "# project\nedited on the host\n",
        "{guest_edit}"
    );
    assert_eq!(guest_edit["result"]["exit_code"], 0, "{guest_edit}");
    let pulled = mcp.call("workspace_pull", json!({"vm": "mcp-box", "path": repo_arg}));
    assert_eq!(pulled["pulled"], true, "{pulled}");
    assert_eq!(pulled["branch"], "banger/mcp-box");
    assert_eq!(
        git(&repo, &["log", "-1", "--format=%s", "banger/mcp-box"]),
        "guest\n"
    );
    mcp.call_error(
        "workspace_prepare",
        json!({"vm": "mcp-box", "path": suite.env.root().to_str().expect("utf-8")}),
        "path_not_allowed",
    );

    // Deletes: only what this server created; asking to create a VM under
    // a taken name does not make that VM this server's.
    mcp.call_error("vm_create", json!({"name": "seed"}), "conflict");
    mcp.call_error("vm_delete", json!({"vm": "seed"}), "not_created_here");
    mcp.call_error(
        "vm_exec",
        json!({"vm": "nope", "argv": ["true"]}),
        "not_found",
    );
    let deleted = mcp.call("vm_delete", json!({"vm": "mcp-box"}));
    assert_eq!(deleted["deleted"], "mcp-box");

    // vm_run: a new VM with the checkout in /root/repo, the command there,
    // the VM deleted afterwards.
    let run_started = Instant::now();
    let run = mcp.call_with(
        "vm_run",
        json!({
            "name": "mcp-run",
            "path": repo_arg,
            "command": ["pwd; cat README.md; exit 4"],
            "delete_after": true
        }),
        CREATE_TIMEOUT,
    );
    eprintln!("vm_run took {:.1} s", run_started.elapsed().as_secs_f64());
    assert_eq!(run["result"]["exit_code"], 4, "{run}");
    assert_eq!(
        run["result"]["stdout"],
        "/root/repo\n# project\nedited on the host\n"
    );
    assert_eq!(run["deleted"], true);
    let left = mcp.call("vm_list", json!({}));
    let left: Vec<&str> = left["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .map(|vm| vm["name"].as_str().expect("name"))
        .collect();
    assert_eq!(left, ["seed"]);

    mcp.finish();
    eprintln!("mcp_e2e took {:.0} s", started.elapsed().as_secs_f64());
}
