//! End-to-end suite of the sandbox workflow on one shared VM (boots are
//! slow): `vm run PATH` with the host's uncommitted edit, exit status,
//! `workspace prepare --dry-run`, submodules (refused shallow, fine with
//! full_copy), `workspace pull`, agent credentials, sessions with attach
//! across a daemon restart, `--require-command`, and `vm acp`.
//! Real bangerd, real Debian guest under QEMU, inside a network namespace
//! the test creates; `BANGER_VMM=firecracker` on a KVM host drives Firecracker.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::vm_suite::Suite;

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Host Dev", "-c", "user.email=dev@host"])
        .args(["-c", "protocol.file.allow=always"])
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

fn write(path: &Path, text: &str) {
    fs_err::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs_err::write(path, text).expect("write");
}

/// A repository with a committed tree, an uncommitted edit, an untracked
/// file and an ignored build directory.
fn make_repo(root: &Path) -> std::path::PathBuf {
    let repo = root.join("project");
    write(&repo.join("README.md"), "# project\n");
    write(&repo.join("src/main.rs"), "fn main() {}\n");
    write(&repo.join(".gitignore"), "target/\n");
    write(&repo.join("run.sh"), "#!/bin/sh\necho run\n");
    fs_err::set_permissions(
        repo.join("run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "initial"]);
    write(&repo.join("README.md"), "# project\nedited on the host\n");
    write(&repo.join("notes.txt"), "untracked\n");
    write(&repo.join("target/build.bin"), "ignored\n");
    repo
}

/// A repository with a submodule.
fn make_submodule_repo(root: &Path) -> std::path::PathBuf {
    let library = root.join("library");
    write(&library.join("lib.txt"), "library\n");
    git(&library, &["init", "-q", "-b", "main"]);
    git(&library, &["add", "-A"]);
    git(&library, &["commit", "-qm", "library"]);
    let app = root.join("app");
    write(&app.join("app.txt"), "app\n");
    git(&app, &["init", "-q", "-b", "main"]);
    git(
        &app,
        &[
            "submodule",
            "add",
            "-q",
            library.to_str().expect("utf-8"),
            "vendor/library",
        ],
    );
    git(&app, &["add", "-A"]);
    git(&app, &["commit", "-qm", "app with submodule"]);
    app
}

/// Reads lines from `reader` on a thread, so the test can wait with a deadline.
fn line_reader(reader: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { return };
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    receiver
}

/// Whether `wanted` arrives as a whole line within 30 s (false also when
/// the writer closed first).
fn got_line(lines: &mpsc::Receiver<String>, wanted: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line == wanted => return true,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    false
}

fn expect_line(lines: &mpsc::Receiver<String>, wanted: &str) {
    assert!(got_line(lines, wanted), "no line {wanted:?} within 30 s");
}

#[test]
fn sandbox_workflow_end_to_end() {
    let suite = Suite::bare("work");
    let root = suite.env.root().to_owned();
    let repo = make_repo(&root);
    let submodule_repo = make_submodule_repo(&root);
    let repo_arg = repo.to_str().expect("utf-8");
    let submodule_arg = submodule_repo.to_str().expect("utf-8");
    // A Claude login in the owner's home (the test's HOME).
    write(
        &root.join("home/.claude/.credentials.json"),
        "{\"token\":\"t-42\"}",
    );

    // Build the image (host namespace, needs the mirror), keep no VM.
    suite.create_in_host_namespace("seed");
    suite.ok(&["vm", "delete", "seed"]);

    // A submodule repository is refused in shallow mode before any VM exists.
    let refused = suite.run(&["vm", "run", "--name", "nope", submodule_arg, "--", "true"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("full_copy"), "names the fix: {stderr}");
    assert_eq!(suite.json(&["vm", "list", "--json"]), serde_json::json!([]));

    // --dry-run lists exactly what would be sent, without a VM.
    let listed = suite.ok(&[
        "vm",
        "workspace",
        "prepare",
        "nope",
        repo_arg,
        "--include-untracked",
        "--dry-run",
    ]);
    let files: Vec<&str> = listed
        .lines()
        .filter(|line| !line.starts_with(".git/"))
        .collect();
    assert_eq!(
        files,
        [
            ".gitignore",
            "README.md",
            "notes.txt",
            "run.sh",
            "src/main.rs"
        ],
        "{listed}"
    );

    // vm run PATH: the guest copy has the host's uncommitted edit; the
    // command runs in /root/repo and its exit status comes back.
    let run = suite.run(&[
        "vm",
        "run",
        "--name",
        "work",
        repo_arg,
        "--",
        "sh -c 'pwd; git status --porcelain; test -x run.sh && echo exec-kept; exit 3'",
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(3),
        "exit status propagates: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(stdout, "/root/repo\n M README.md\nexec-kept\n", "{stdout}");
    assert_eq!(
        suite.ok(&["vm", "ssh", "work", "--", "cat /root/repo/README.md"]),
        "# project\nedited on the host\n"
    );

    // Credentials from the owner's home, owner-only.
    assert_eq!(
        suite.ok(&[
            "vm",
            "ssh",
            "work",
            "--",
            "stat -c '%a %U' /root/.claude /root/.claude/.credentials.json; cat /root/.claude/.credentials.json"
        ]),
        "700 root\n600 root\n{\"token\":\"t-42\"}"
    );

    // full_copy brings the submodule along.
    suite.ok(&[
        "vm",
        "workspace",
        "prepare",
        "work",
        submodule_arg,
        "--mode",
        "full_copy",
        "--guest-path",
        "/root/app",
    ]);
    assert_eq!(
        suite.ok(&[
            "vm",
            "ssh",
            "work",
            "--",
            "cat /root/app/vendor/library/lib.txt && git -C /root/app submodule status | cut -c2-41 | wc -c"
        ]),
        "library\n41\n"
    );

    // workspace pull: a guest commit plus an uncommitted guest edit become
    // branch banger/work; the host's tree, index and branch stay as they were.
    suite.ok(&[
        "vm",
        "ssh",
        "work",
        "--",
        "cd /root/repo && git -c user.name=Guest -c user.email=guest@vm commit -qam 'guest commit' && echo '// guest edit' >> src/main.rs",
    ]);
    let status_before = git(&repo, &["status", "--porcelain"]);
    let head_before = git(&repo, &["rev-parse", "HEAD"]);
    suite.ok(&["vm", "workspace", "pull", "work", repo_arg]);
    assert_eq!(git(&repo, &["status", "--porcelain"]), status_before);
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), head_before);
    assert_eq!(git(&repo, &["branch", "--show-current"]), "main\n");
    let log = git(&repo, &["log", "--format=%s", "banger/work"]);
    let subjects: Vec<&str> = log.lines().collect();
    assert_eq!(subjects.len(), 3, "{log}");
    assert!(subjects[0].contains("uncommitted"), "{log}");
    assert_eq!(subjects[1..], ["guest commit", "initial"], "{log}");
    assert_eq!(
        git(&repo, &["show", "banger/work:src/main.rs"]),
        "fn main() {}\n// guest edit\n"
    );
    assert_eq!(
        git(&repo, &["show", "banger/work~1:README.md"]),
        "# project\nedited on the host\n",
        "the guest commit holds the host's edit it was given"
    );

    // Sessions: a missing command is named before anything starts.
    let missing = suite.run(&[
        "vm",
        "session",
        "start",
        "work",
        "--name",
        "bad",
        "--require-command",
        "nonexistent",
        "--",
        "cat",
    ]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("\"nonexistent\""), "{stderr}");
    assert_eq!(
        suite.json(&["vm", "session", "list", "work", "--json"]),
        serde_json::json!([])
    );

    // A pipe session echoes through attach; a second attacher is refused.
    let started = suite.json(&[
        "vm",
        "session",
        "start",
        "work",
        "--name",
        "echo",
        "--stdin-mode",
        "pipe",
        "--json",
        "--",
        "cat",
    ]);
    assert_eq!(started["state"], "running");
    assert_eq!(started["cwd"], "/root/repo");
    let attach = |input: &str| {
        let mut child = suite
            .banger(&["vm", "session", "attach", "work", "echo"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("attach runs");
        let lines = line_reader(child.stdout.take().expect("stdout"));
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write");
        stdin.flush().expect("flush");
        (child, stdin, lines)
    };
    let (mut first, first_stdin, first_lines) = attach("hello\n");
    expect_line(&first_lines, "hello");
    let second = suite.run(&["vm", "session", "attach", "work", "echo"]);
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("attach"), "clear refusal: {stderr}");
    drop(first_stdin); // end of input detaches
    let status = first.wait().expect("attach exits");
    assert!(status.success(), "detach is a clean exit");

    // Sessions survive a daemon restart, and attach works again.
    suite.ok(&["daemon", "stop"]);
    let listed = suite.json(&["vm", "session", "list", "work", "--json"]);
    assert_eq!(listed[0]["name"], "echo");
    assert_eq!(listed[0]["state"], "running", "{listed}");
    let (mut again, again_stdin, again_lines) = attach("again\n");
    if !got_line(&again_lines, "again") {
        // Say why: the attach's own error, its exit, and the session's logs.
        let _ = again.kill();
        let mut stderr = String::new();
        if let Some(mut pipe) = again.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        panic!(
            "no echo of \"again\" within 30 s after the daemon restart; attach {:?}, stderr: {stderr}\nlogs: {:?}",
            again.wait(),
            suite.run(&["vm", "session", "logs", "work", "echo"]),
        );
    }
    drop(again_stdin);
    assert!(again.wait().expect("attach exits").success());
    assert_eq!(
        suite.ok(&["vm", "session", "logs", "work", "echo"]),
        "hello\nagain\n"
    );
    let stopped = suite.run(&["vm", "session", "stop", "work", "echo"]);
    assert!(stopped.status.success());
    let shown = suite.json(&["vm", "session", "show", "work", "echo", "--json"]);
    assert_eq!(shown["state"], "exited", "{shown}");
    assert_eq!(shown["signal"], 15, "{shown}");
    suite.ok(&["vm", "session", "rm", "work", "echo"]);

    // vm acp bridges stdio to `opencode acp` in /root/repo (a stand-in
    // opencode here: the real one needs the internet).
    suite.ok(&[
        "vm",
        "ssh",
        "work",
        "--",
        "mkdir -p /root/.local/bin && printf '#!/bin/sh\\n[ \"$1\" = acp ] || exit 9\\npwd\\nexec cat\\n' > /root/.local/bin/opencode && chmod +x /root/.local/bin/opencode",
    ]);
    let mut acp = suite
        .banger(&["vm", "acp", "work"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("acp runs");
    acp.stdin
        .take()
        .expect("stdin")
        .write_all(b"{\"jsonrpc\":\"2.0\"}\n")
        .expect("write");
    let output = acp.wait_with_output().expect("acp exits");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "/root/repo\n{\"jsonrpc\":\"2.0\"}\n"
    );

    suite.ok(&["vm", "delete", "--force", "work"]);
    assert_eq!(suite.json(&["vm", "list", "--json"]), serde_json::json!([]));
}
