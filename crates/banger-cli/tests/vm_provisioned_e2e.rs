//! End-to-end suite of the provisioned default image on ONE shared VM (image
//! builds take minutes and boots are slow): the first `vm create` builds the
//! default image with the pinned tools, `image show` lists their versions,
//! every tool answers `--version` in a login shell, the opencode service
//! answers HTTP on port 4096 from the host through `<name>.vm` with its
//! per-VM password only (`vm opencode --print` reads it), `vm acp`
//! speaks real ACP (`initialize` to the installed `opencode acp`), synced
//! credentials are where each tool reads them, the managed tmux block is
//! there once, and a tmux session saved by banger's persistence plugin comes
//! back after `vm stop`/`vm start` when restored.
//! Real bangerd, real Debian guest under QEMU, inside a network namespace
//! the test creates. Needs the Debian mirror and the npm registry (or a
//! primed cache) for the image build.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::vm_suite::Suite;

const VM: &str = "tools";

fn write(path: &std::path::Path, text: &str) {
    fs_err::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs_err::write(path, text).expect("write");
}

/// Retries `check` every second until it returns Some or `timeout` passes.
fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn provisioned_default_image_end_to_end() {
    let suite = Suite::new("prov");
    let home = suite.env.root().join("home");
    // Logins in the owner's home, copied into the guest at every start.
    write(
        &home.join(".local/share/opencode/auth.json"),
        r#"{"anthropic":{"type":"api","key":"sk-banger-test"}}"#,
    );
    write(
        &home.join(".claude/.credentials.json"),
        // The shape Claude Code writes after a login: with fewer fields it
        // reports itself logged out.
        r#"{"claudeAiOauth":{"accessToken":"t-42","refreshToken":"r-42","expiresAt":4102444800000,"scopes":["user:inference"],"subscriptionType":"pro"}}"#,
    );
    write(
        &home.join(".pi/agent/auth.json"),
        r#"{"anthropic":{"type":"api_key","key":"sk-pi-test"}}"#,
    );

    // The first create builds the default image: provisioned.
    let started = Instant::now();
    let (_, stderr) = suite.create_in_host_namespace(VM);
    let build = started.elapsed();
    eprintln!("TIMING first create (default image build + kernel): {build:?}");
    assert!(stderr.contains("pinned agent tools"), "{stderr}");
    let image = suite.json(&["image", "show", "debian-bookworm", "--json"]);
    let tools = image["provision"]["tools"].as_array().expect("provision");
    let version = |name: &str| {
        tools
            .iter()
            .find(|tool| tool["name"] == name)
            .map(|tool| tool["version"].as_str().unwrap_or("").to_owned())
            .unwrap_or_else(|| panic!("{name} not in {image}"))
    };
    let shown = suite.ok(&["image", "show", "debian-bookworm"]);
    assert!(
        shown.contains(&format!("opencode {}", version("opencode"))),
        "{shown}"
    );

    let boot = Instant::now();
    suite.ok(&["vm", "start", VM]);
    eprintln!("TIMING start to ssh-ready: {:?}", boot.elapsed());

    // Every tool answers --version in a login shell (mise activated there).
    let versions = suite.ssh(
        VM,
        "bash -lc 'opencode --version && claude --version && pi --version 2>&1 && mise --version && node --version && npm --version && tmux -V && git --version && rg --version | head -n1 && jq --version && gcc --version | head -n1 && curl --version | head -n1 && echo \"PATH=$PATH\"'",
    );
    for tool in ["opencode", "claude", "pi", "mise", "node", "npm"] {
        let pinned = version(tool);
        assert!(versions.contains(&pinned), "{tool} {pinned}: {versions}");
    }
    for expected in ["tmux ", "git version", "ripgrep ", "jq-", "gcc ", "curl "] {
        assert!(versions.contains(expected), "{expected}: {versions}");
    }
    assert!(
        versions.contains("/root/.local/share/mise/shims"),
        "{versions}"
    );

    // The managed tmux block, exactly once, loaded by TPM.
    assert_eq!(
        suite.ssh(VM, "grep -c '^# >>> banger managed block' /root/.tmux.conf"),
        "1\n"
    );

    // opencode serve on 4096, from the host through <name>.vm, behind its
    // per-VM password.
    let ip = suite.json(&["vm", "show", VM, "--json"])["ip"]
        .as_str()
        .expect("ip")
        .to_owned();
    let dig = suite.in_netns(
        "dig",
        &["@127.0.0.1", "-p", "42069", "+short", &format!("{VM}.vm")],
    );
    assert_eq!(dig.trim(), ip);
    let url = format!("http://{VM}.vm:4096/");
    let resolve = format!("{VM}.vm:4096:{ip}");
    // The HTTP status of a GET of the server's root, as `user` (none:
    // anonymous); None when curl could not connect.
    let curl = |user: Option<&str>| {
        let mut command = std::process::Command::new("curl");
        command.args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ]);
        if let Some(user) = user {
            command.args(["-u", user]);
        }
        command.args(["--resolve", &resolve, &url]);
        let output = suite.netns.wrap(&command).output().expect("curl runs");
        let code = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        (output.status.success() && code != "000").then_some(code)
    };
    let code = wait_for(
        "opencode answers on :4096",
        Duration::from_secs(120),
        || curl(None),
    );
    // The server asks for its password: without it, 401.
    assert_eq!(code, "401", "opencode serve without a password");
    let printed = suite.ok(&["vm", "opencode", VM, "--print"]);
    let mut lines = printed.lines();
    assert_eq!(lines.next(), Some(format!("http://{ip}:4096").as_str()));
    let password = lines.next().expect("the password line").to_owned();
    assert_eq!(password.len(), 48, "{printed}");
    assert_eq!(
        suite.ssh(
            VM,
            "stat -c '%a %U' /root/.config/banger/opencode-server-password"
        ),
        "600 root\n"
    );
    let code = curl(Some(&format!("opencode:{password}"))).unwrap_or_default();
    assert!(
        code.starts_with('2') || code.starts_with('3'),
        "HTTP {code} with the password"
    );
    assert_eq!(curl(Some("opencode:wrong")).as_deref(), Some("401"));
    // `vm opencode` runs this host's `opencode attach` with the password in
    // its environment, never in its argv: a stand-in on PATH records both.
    let fake_bin = suite.env.root().join("fake-bin");
    fs_err::create_dir_all(&fake_bin).expect("mkdir");
    let fake = fake_bin.join("opencode");
    banger_testkit::write_executable(
        &fake,
        "#!/bin/sh\nprintf 'argv=%s\\n' \"$*\"\nprintf 'user=%s\\npw=%s\\n' \"$OPENCODE_SERVER_USERNAME\" \"$OPENCODE_SERVER_PASSWORD\"\n",
    );
    let path = format!(
        "{}:{}",
        fake_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let attached = suite
        .banger(&["vm", "opencode", VM, "--", "--dir", "/root"])
        .env("PATH", path)
        .output()
        .expect("banger runs");
    assert!(
        attached.status.success(),
        "{}",
        String::from_utf8_lossy(&attached.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&attached.stdout),
        format!("argv=attach http://{ip}:4096 --dir /root\nuser=opencode\npw={password}\n")
    );
    let ports = suite.ok(&["vm", "ports", VM]);
    assert!(ports.contains("4096"), "{ports}");

    // vm acp: a real ACP initialize answered by the installed opencode.
    let acp_started = Instant::now();
    let mut acp = suite
        .banger(&["vm", "acp", VM])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("acp runs");
    let mut stdin = acp.stdin.take().expect("stdin");
    stdin
        .write_all(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":1,\"clientCapabilities\":{\"fs\":{\"readTextFile\":false,\"writeTextFile\":false},\"terminal\":false}}}\n",
        )
        .expect("write");
    stdin.flush().expect("flush");
    let (sender, receiver) = mpsc::channel();
    let stdout = acp.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let mut response = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = receiver.recv_timeout(left) else {
            break;
        };
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
            && value["id"] == 1
        {
            response = Some(value);
            break;
        }
    }
    drop(stdin);
    let _ = acp.kill();
    let output = acp.wait_with_output().expect("acp exits");
    let response = response.unwrap_or_else(|| {
        panic!(
            "no initialize response; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    eprintln!("TIMING acp initialize: {:?}", acp_started.elapsed());
    assert_eq!(response["jsonrpc"], "2.0", "{response}");
    assert!(
        response["result"]["protocolVersion"].is_number(),
        "{response}"
    );
    assert!(
        response["result"]["agentCapabilities"].is_object(),
        "{response}"
    );

    // Credentials: where each installed tool reads them.
    let opencode = suite.ssh(VM, "opencode auth list 2>&1");
    assert!(
        opencode.contains("~/.local/share/opencode/auth.json")
            && opencode.to_lowercase().contains("anthropic"),
        "{opencode}"
    );
    let pi = suite.ssh(
        VM,
        "cd /usr/local/lib/banger/tools/pi/node_modules/@mariozechner/pi-coding-agent && node --input-type=module -e \"import { getAuthPath } from './dist/config.js'; import fs from 'fs'; const p = getAuthPath(); console.log(p, JSON.parse(fs.readFileSync(p, 'utf8')).anthropic.key)\"",
    );
    assert_eq!(pi, "/root/.pi/agent/auth.json sk-pi-test\n");
    // Claude Code reads the synced login offline: logged in through claude.ai.
    let claude: serde_json::Value =
        serde_json::from_str(&suite.ssh(VM, "cd /root && claude auth status --json"))
            .expect("claude auth status prints JSON");
    assert_eq!(claude["loggedIn"], true, "{claude}");
    assert_eq!(claude["authMethod"], "claude.ai", "{claude}");
    assert_eq!(claude["configDirectory"], "/root/.claude", "{claude}");

    // tmux persistence: save, restart the VM, restore, windows back.
    suite.ssh(
        VM,
        "tmux new-session -d -s work -n editor -c /root && tmux new-window -t work -n logs -c /tmp && banger-tmux save",
    );
    let loaded = suite.ssh(VM, "tmux show-option -gqv @banger-persist-autosave-pid");
    assert!(!loaded.trim().is_empty(), "TPM loaded the plugin");
    suite.ok(&["vm", "stop", VM]);
    suite.ok(&["vm", "start", VM]);
    assert_eq!(
        suite.ssh(VM, "tmux ls 2>/dev/null | wc -l"),
        "0\n",
        "no tmux server after the restart"
    );
    let restored = suite.ssh(
        VM,
        "banger-tmux restore && tmux list-windows -t work -F '#{window_name} #{pane_current_path}'",
    );
    assert!(
        restored.ends_with("editor /root\nlogs /tmp\n"),
        "{restored}"
    );

    suite.ok(&["vm", "delete", "--force", VM]);
}
