//! `banger tui` driven the way a person uses it: inside tmux (160×50),
//! keys sent with `send-keys`, the screen read with `capture-pane`, against
//! a real bangerd and a real Debian guest under QEMU, inside a network
//! namespace the test creates. Creates a VM through the form and watches
//! its progress, waits for the table to show it running, stops it and
//! deletes it through the confirmations, and checks `banger vm list
//! --json` agrees at each step.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::vm_suite::Suite;

/// A tmux server of the test's own, running one session: the TUI.
struct Tmux {
    socket: PathBuf,
    /// Where the pane's shell writes the program's exit status.
    status_file: PathBuf,
}

impl Tmux {
    /// Starts `command` (program, arguments and environment) in a detached
    /// `width` × `height` session; the pane stays after the program exits so
    /// its last screen can be read.
    ///
    /// The pane runs a shell that runs the program in the foreground and
    /// writes its exit status to a file. tmux's own `pane_dead_status` is
    /// not used: tmux 3.3 sometimes never reaps the pane's process (it
    /// stays a zombie with the pane dead and no status), which made the
    /// test fail after the TUI had exited 0.
    fn start(dir: &Path, command: &Command, width: u16, height: u16) -> Self {
        let socket = dir.join("tmux.sock");
        let config = dir.join("tmux.conf");
        let status_file = dir.join("tui.status");
        fs_err::write(&config, "set -g remain-on-exit on\nset -g status off\n").expect("tmux.conf");
        let mut tmux = Command::new("tmux");
        tmux.arg("-S")
            .arg(&socket)
            .arg("-f")
            .arg(&config)
            .args(["new-session", "-d", "-s", "tui"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg("--")
            // $0 is the status file, "$@" the program and its arguments;
            // the status goes through a temporary name so a reader never
            // sees half of it.
            .args([
                "sh",
                "-c",
                r#""$@"; echo $? > "$0.part" && mv "$0.part" "$0""#,
            ])
            .arg(&status_file)
            .arg(command.get_program())
            .args(command.get_args());
        // The server starts from this client and keeps its environment, so
        // the TUI gets the suite's (state dirs, daemon binary, image name).
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => tmux.env(key, value),
                None => tmux.env_remove(key),
            };
        }
        let status = tmux.status().expect("tmux runs");
        assert!(status.success(), "tmux new-session failed");
        Self {
            socket,
            status_file,
        }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Presses keys one at a time (tmux key names: `Enter`, `Tab`, `c`),
    /// with a pause so an Escape is never read as Alt with the next key.
    fn keys(&self, keys: &[&str]) {
        for key in keys {
            self.tmux(&["send-keys", "-t", "tui", key]);
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Types text literally.
    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "tui", "-l", text]);
        std::thread::sleep(Duration::from_millis(150));
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "tui"])
    }

    /// Waits until `ready` holds for the screen; returns that screen.
    fn wait_for(&self, what: &str, timeout: Duration, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the TUI did not show {what} within {timeout:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The program's exit status (128 + the signal that ended it) once it
    /// ended.
    fn exit_status(&self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            match fs_err::read_to_string(&self.status_file) {
                Ok(status) => {
                    return status
                        .trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("the pane's shell wrote {status:?}"));
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => panic!("{error}"),
            }
            assert!(
                Instant::now() < deadline,
                "banger tui did not exit; the screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .status();
    }
}

/// The table row of `vm` (table rows sit between `│` borders; the status
/// line, which may name the VM too, has none).
fn row<'a>(screen: &'a str, vm: &str) -> Option<&'a str> {
    screen.lines().find(|line| {
        line.starts_with('│')
            && line
                .split_whitespace()
                .any(|word| word == vm || word == format!("▶{vm}"))
    })
}

fn vm_names(suite: &Suite) -> Vec<String> {
    let listed = suite.json(&["vm", "list", "--json"]);
    listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|vm| vm["name"].as_str().expect("name").to_owned())
        .collect()
}

#[test]
fn tui_creates_stops_and_deletes_a_vm() {
    if Command::new("tmux").arg("-V").output().is_err() {
        banger_testkit::skip_or_fail("tmux is not installed (scripts/install-deps.sh installs it)");
        return;
    }
    let started = Instant::now();
    let mut suite = Suite::new("tui");
    suite.vars.push((
        "BANGER_DEFAULT_IMAGE_NAME".into(),
        "debian-bookworm-minimal".into(),
    ));
    // Build the image in the host namespace (it needs the Debian mirror);
    // the stopped VM "warm" stays in the table.
    suite.create_in_host_namespace("warm");
    let image_ready = started.elapsed();
    eprintln!("image ready after {:.0} s", image_ready.as_secs_f64());

    let tui = Tmux::start(suite.env.root(), &suite.banger(&["tui"]), 160, 50);
    tui.wait_for("warm, live", Duration::from_secs(60), |screen| {
        row(screen, "warm").is_some_and(|line| line.contains(" created "))
            && screen.contains("● live")
    });

    // Create through the form: a name and 1 GiB of memory, the rest default.
    tui.keys(&["c"]);
    tui.wait_for("the create form", Duration::from_secs(10), |screen| {
        screen.contains("Create a VM")
    });
    tui.type_text("tuivm");
    tui.keys(&["Tab", "Tab", "Tab"]);
    tui.type_text("1G");
    let form = tui.screen();
    assert!(
        form.contains("Name tuivm") && form.contains("Memory 1G"),
        "{form}"
    );
    let create_started = Instant::now();
    tui.keys(&["Enter"]);
    let progress = tui.wait_for("the create progress", Duration::from_secs(30), |screen| {
        screen.contains("creating tuivm")
    });
    eprintln!("create in progress:\n{progress}");
    // The table says running as soon as the VMM runs (the event); the
    // create is done when SSH answers, and the status line says so.
    let running = tui.wait_for(
        "tuivm created and running",
        Duration::from_secs(600),
        |screen| {
            row(screen, "tuivm").is_some_and(|line| line.contains(" running "))
                && screen.contains("created tuivm")
        },
    );
    let create_secs = create_started.elapsed().as_secs_f64();
    eprintln!("tuivm running after {create_secs:.1} s:\n{running}");
    let listed = suite.json(&["vm", "show", "tuivm", "--json"]);
    assert_eq!(listed["state"], "running");
    assert_eq!(listed["memory_mib"], 1024);
    let ip = listed["ip"].as_str().expect("ip");
    let line = row(&running, "tuivm").expect("row");
    assert!(
        line.contains(ip),
        "the row shows the VM's address {ip}: {line}"
    );
    // The new VM is the selected one, with its detail pane.
    assert!(line.contains('▶'), "tuivm is selected: {line}");
    assert!(running.contains("┌ tuivm "), "detail pane: {running}");

    // Stop, through the confirmation.
    tui.keys(&["x"]);
    tui.wait_for("the stop confirmation", Duration::from_secs(10), |screen| {
        screen.contains("stop tuivm?")
    });
    tui.keys(&["y"]);
    let stopped = tui.wait_for("tuivm stopped", Duration::from_secs(180), |screen| {
        row(screen, "tuivm").is_some_and(|line| line.contains(" stopped "))
    });
    assert_eq!(
        suite.json(&["vm", "show", "tuivm", "--json"])["state"],
        "stopped"
    );
    eprintln!("stopped:\n{stopped}");

    // Delete, through the confirmation.
    tui.keys(&["d"]);
    tui.wait_for(
        "the delete confirmation",
        Duration::from_secs(10),
        |screen| screen.contains("delete tuivm?"),
    );
    tui.keys(&["y"]);
    let deleted = tui.wait_for("tuivm gone", Duration::from_secs(120), |screen| {
        row(screen, "tuivm").is_none() && screen.contains("deleted tuivm")
    });
    eprintln!("deleted:\n{deleted}");
    assert_eq!(vm_names(&suite), ["warm"]);

    // A resize to 80x24 redraws the whole screen at the new size.
    tui.tmux(&["resize-window", "-t", "tui", "-x", "80", "-y", "24"]);
    let small = tui.wait_for("the table at 80x24", Duration::from_secs(10), |screen| {
        screen
            .lines()
            .next()
            .is_some_and(|top| top.trim_end().ends_with("● live"))
            && screen
                .lines()
                .next()
                .is_some_and(|top| top.chars().count() <= 80)
            && row(screen, "warm").is_some()
    });
    assert!(
        small.lines().all(|line| line.chars().count() <= 80),
        "{small}"
    );
    eprintln!("at 80x24:\n{small}");

    // q leaves, with status 0.
    tui.keys(&["q"]);
    assert_eq!(tui.exit_status(Duration::from_secs(20)), 0);
    eprintln!(
        "total {:.0} s (image {:.0} s, create through the TUI {create_secs:.1} s)",
        started.elapsed().as_secs_f64(),
        image_ready.as_secs_f64()
    );
}
