//! The MCP server over an in-memory stdio pair, without a daemon or a
//! guest: the handshake, the tools/list snapshot, malformed JSON-RPC
//! (answered, and the server keeps serving), host path refusals, the
//! delete guard (a failed fork claims nothing), vm_fork's argument checks,
//! and tool errors when the daemon cannot be reached.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use banger_config::Paths;
use banger_mcp::{AllowedRoots, Server, ServerOptions, serve};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};

/// A server on an in-memory pipe pair, and the client's ends.
struct Client {
    input: DuplexStream,
    output: Lines<BufReader<DuplexStream>>,
    _temp: tempfile::TempDir,
}

impl Client {
    /// A server whose only allowed root is `root`; its daemon cannot start
    /// (the binary does not exist), so nothing here reaches a real one.
    fn start(root: &Path) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = |name: &str| -> PathBuf {
            let dir = temp.path().join(name);
            fs_err::create_dir_all(&dir).expect("create a dir");
            dir
        };
        let options = ServerOptions {
            roots: AllowedRoots::new(&[root.to_owned()]).expect("a valid root"),
            allow_delete_any: false,
            paths: Paths {
                config_dir: dir("config"),
                state_dir: dir("state"),
                cache_dir: dir("cache"),
                runtime_dir: dir("run"),
                home_dir: None,
            },
            daemon_binary: temp.path().join("no-such-bangerd"),
        };
        let (input, server_input) = tokio::io::duplex(1 << 20);
        let (server_output, output) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            serve(
                Arc::new(Server::new(options)),
                BufReader::new(server_input),
                server_output,
            )
            .await
            .expect("serving ends cleanly");
        });
        Self {
            input,
            output: BufReader::new(output).lines(),
            _temp: temp,
        }
    }

    async fn send_line(&mut self, line: &str) {
        self.input.write_all(line.as_bytes()).await.expect("send");
        self.input.write_all(b"\n").await.expect("send");
    }

    async fn receive(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(30), self.output.next_line())
            .await
            .expect("an answer within 30 s")
            .expect("read")
            .expect("the server is still serving");
        serde_json::from_str(&line).expect("a JSON line")
    }

    async fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_line(&message.to_string()).await;
        let response = self.receive().await;
        assert_eq!(response["id"], id, "{response}");
        response
    }

    async fn call(&mut self, id: u64, tool: &str, arguments: Value) -> Value {
        let response = self
            .request(
                id,
                "tools/call",
                json!({"name": tool, "arguments": arguments}),
            )
            .await;
        response["result"].clone()
    }
}

/// A tool error's code.
fn error_code(result: &Value) -> &str {
    assert_eq!(result["isError"], true, "{result}");
    result["structuredContent"]["error"]["code"]
        .as_str()
        .expect("an error code")
}

#[tokio::test]
async fn initialize_handshake_and_ping() {
    let root = tempfile::tempdir().unwrap();
    let mut client = Client::start(root.path());
    let response = client
        .request(
            1,
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "0"}
            }),
        )
        .await;
    let result = &response["result"];
    assert_eq!(response["jsonrpc"], "2.0");
    assert_eq!(result["protocolVersion"], "2025-06-18");
    assert_eq!(result["serverInfo"]["name"], "banger");
    assert_eq!(result["capabilities"]["tools"]["listChanged"], false);
    // A notification gets no answer: the next line answers the ping.
    client
        .send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .await;
    let pong = client.request(2, "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}));
}

#[tokio::test]
async fn tools_list_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let mut client = Client::start(root.path());
    let response = client.request(1, "tools/list", json!({})).await;
    let tools = &response["result"]["tools"];
    for tool in tools.as_array().unwrap() {
        assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
    }
    insta::assert_json_snapshot!("tools_list", tools);
}

#[tokio::test]
async fn malformed_messages_are_answered_and_serving_goes_on() {
    let root = tempfile::tempdir().unwrap();
    let mut client = Client::start(root.path());

    client.send_line("this is not json").await;
    let parse = client.receive().await;
    assert_eq!(parse["error"]["code"], -32700, "{parse}");
    assert_eq!(parse["id"], Value::Null);

    client
        .send_line(r#"{"jsonrpc":"1.0","id":2,"method":"ping"}"#)
        .await;
    let version = client.receive().await;
    assert_eq!(version["error"]["code"], -32600, "{version}");
    assert_eq!(version["id"], 2);

    client
        .send_line(r#"[{"jsonrpc":"2.0","id":3,"method":"ping"}]"#)
        .await;
    assert_eq!(client.receive().await["error"]["code"], -32600);

    let unknown = client.request(4, "resources/list", json!({})).await;
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");

    let no_tool = client
        .request(
            5,
            "tools/call",
            json!({"name": "vm_teleport", "arguments": {}}),
        )
        .await;
    assert_eq!(no_tool["error"]["code"], -32602, "{no_tool}");

    // Blank lines are skipped; the server still answers.
    client.send_line("").await;
    let pong = client.request(6, "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}));
}

#[tokio::test]
async fn host_paths_outside_the_roots_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("root");
    let outside = temp.path().join("outside");
    fs_err::create_dir_all(root.join("repo")).unwrap();
    fs_err::create_dir_all(&outside).unwrap();
    fs_err::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
    let mut client = Client::start(&root);

    let cases = [
        outside.display().to_string(),
        root.join("repo/../../outside").display().to_string(),
        "../outside".to_owned(),
        root.join("escape").display().to_string(),
        "escape".to_owned(),
    ];
    let mut id = 0;
    for path in cases {
        for (tool, arguments) in [
            ("workspace_prepare", json!({"vm": "box", "path": path})),
            ("workspace_pull", json!({"vm": "box", "path": path})),
            // Refused before any VM is created (or the daemon contacted).
            ("vm_run", json!({"command": ["true"], "path": path})),
        ] {
            id += 1;
            let result = client.call(id, tool, arguments).await;
            assert_eq!(
                error_code(&result),
                "path_not_allowed",
                "{tool} {path}: {result}"
            );
        }
    }
    let result = client
        .call(
            99,
            "workspace_prepare",
            json!({"vm": "box", "path": "missing"}),
        )
        .await;
    assert_eq!(error_code(&result), "path_not_allowed", "{result}");
}

#[tokio::test]
async fn a_checkout_whose_repository_is_outside_the_roots_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let repo = temp.path().join("repo");
    fs_err::create_dir_all(repo.join("sub")).unwrap();
    let git = std::process::Command::new("git")
        .args(["init", "-q"])
        .arg(&repo)
        .status()
        .expect("git runs");
    assert!(git.success());
    // Only a subdirectory is allowed; the repository's .git is above it.
    let mut client = Client::start(&repo.join("sub"));
    let result = client
        .call(1, "workspace_pull", json!({"vm": "box", "path": "."}))
        .await;
    assert_eq!(error_code(&result), "path_not_allowed", "{result}");
    let message = result["structuredContent"]["error"]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("git repository"), "{message}");
}

#[tokio::test]
async fn vm_delete_only_for_vms_created_here() {
    let root = tempfile::tempdir().unwrap();
    let mut client = Client::start(root.path());
    let result = client
        .call(1, "vm_delete", json!({"vm": "someone-elses"}))
        .await;
    assert_eq!(error_code(&result), "not_created_here", "{result}");
    let text = result["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("--allow-delete-any"), "{text}");
    // A fork that did not happen (no daemon here) makes nothing deletable.
    let fork = client
        .call(2, "vm_fork", json!({"source": "box", "name": "mine"}))
        .await;
    assert_eq!(error_code(&fork), "daemon_unreachable", "{fork}");
    let result = client.call(3, "vm_delete", json!({"vm": "mine"})).await;
    assert_eq!(error_code(&result), "not_created_here", "{result}");
}

#[tokio::test]
async fn bad_arguments_and_an_unreachable_daemon_are_tool_errors() {
    let root = tempfile::tempdir().unwrap();
    let mut client = Client::start(root.path());
    let unknown_field = client.call(1, "vm_list", json!({"all": true})).await;
    assert_eq!(error_code(&unknown_field), "invalid_arguments");
    let bad_name = client
        .call(2, "vm_exec", json!({"vm": "Bad_Name", "argv": ["true"]}))
        .await;
    assert_eq!(error_code(&bad_name), "invalid_arguments");
    let relative = client
        .call(3, "file_read", json!({"vm": "box", "path": "etc/passwd"}))
        .await;
    assert_eq!(error_code(&relative), "invalid_arguments");
    // An environment value is never echoed, not even in an error.
    let secret = client
        .call(
            4,
            "vm_exec",
            json!({"vm": "box", "argv": ["true"], "env": {"1BAD": "hunter2-secret"}}),
        )
        .await;
    assert_eq!(error_code(&secret), "invalid_arguments");
    assert!(!secret.to_string().contains("hunter2-secret"), "{secret}");
    let oversized = client
        .call(
            5,
            "file_write",
            json!({"vm": "box", "path": "/root/x", "content": "x".repeat(1024 * 1024 + 1)}),
        )
        .await;
    assert_eq!(error_code(&oversized), "invalid_arguments");

    // Fork counts outside 1..=16 and copies whose names grow too long are
    // refused before the daemon is asked.
    for (id, arguments) in [
        (60, json!({"source": "box", "name": "copy", "count": 0})),
        (61, json!({"source": "box", "name": "copy", "count": 17})),
        (
            62,
            json!({"source": "box", "name": "a".repeat(62), "count": 2}),
        ),
        (63, json!({"source": "box"})),
    ] {
        let refused = client.call(id, "vm_fork", arguments).await;
        assert_eq!(error_code(&refused), "invalid_arguments", "{refused}");
    }

    let unreachable = client.call(6, "vm_list", json!({})).await;
    assert_eq!(
        error_code(&unreachable),
        "daemon_unreachable",
        "{unreachable}"
    );
    let pong = client.request(7, "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}));
}

/// A valid value for a schema property, by name and type.
fn sample(tool: &str, name: &str, schema: &Value) -> Value {
    if let Some(choices) = schema["enum"].as_array() {
        return choices[0].clone();
    }
    match (schema["type"].as_str().expect("a type"), name) {
        // file_* paths are in the guest, the others on the host.
        ("string", "path") if tool.starts_with("file_") => json!("/root"),
        ("string", "path") => json!("."),
        ("string", "cwd" | "guest_path") => json!("/root"),
        ("string", _) => json!("box"),
        ("integer", _) => json!(1),
        ("boolean", _) => json!(true),
        ("array", _) => json!(["true"]),
        ("object", _) => json!({"NAME": "value"}),
        (other, _) => panic!("no sample for {other}"),
    }
}

/// Every property each schema declares is accepted by the tool's argument
/// type: a call with all of them set fails later (no daemon), never on
/// its arguments.
#[tokio::test]
async fn every_schema_property_is_accepted() {
    let root = tempfile::tempdir().unwrap();
    let mut client = Client::start(root.path());
    let listed = client.request(1, "tools/list", json!({})).await;
    let tools = listed["result"]["tools"].as_array().unwrap().clone();
    for (index, tool) in tools.iter().enumerate() {
        let name = tool["name"].as_str().unwrap();
        let properties = tool["inputSchema"]["properties"].as_object().unwrap();
        let arguments: serde_json::Map<String, Value> = properties
            .iter()
            .map(|(key, schema)| (key.clone(), sample(name, key, schema)))
            .collect();
        let result = client
            .call(index as u64 + 2, name, Value::Object(arguments))
            .await;
        assert_ne!(error_code(&result), "invalid_arguments", "{name}: {result}");
    }
}
