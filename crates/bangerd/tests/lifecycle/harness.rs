//! The lifecycle binary's own `main` machinery: it doubles as the helper
//! programs the VMM layer starts, and runs its cases one after another.
//!
//! - `<bin> --api-sock PATH`: the spec-validating fake `firecracker`
//!   (`banger_testkit::fake_firecracker::run_as_process`);
//! - `<bin> console-copier ...`: the console copier, as `bangerd
//!   console-copier` is in production;
//! - started through a link named [`EXITING_VMM`]: a `firecracker` that exits
//!   at once with an error, for the "VMM fails to start" case;
//! - otherwise: runs the cases (those whose name contains the first
//!   non-flag argument, or all), each on a thread named after it, prints
//!   `test NAME ... ok` per case and stops at the first failure with a
//!   non-zero exit code. Without the Firecracker API spec it fails under CI
//!   and reports itself SKIPPED elsewhere (`banger_testkit::skip_or_fail`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use banger_testkit::fake_firecracker::{default_spec_path, run_as_process};
use banger_testkit::skip_or_fail;
use banger_vmm::process::{ProcessIdentity, Signal, exit_status};

/// A case: its name and body. Bodies panic to fail.
pub type Case = (&'static str, fn());

/// File name of the link to this binary that acts as a VMM exiting at once.
pub const EXITING_VMM: &str = "firecracker-exits";

/// Dispatches helper modes, else runs `cases`.
pub fn main(cases: &[Case]) -> ExitCode {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let args: Vec<OsString> = args.collect();
    if Path::new(&argv0).file_name() == Some(std::ffi::OsStr::new(EXITING_VMM)) {
        eprintln!("fake firecracker: exiting at once (the lifecycle test's failing VMM)");
        return ExitCode::from(3);
    }
    match args.first().and_then(|arg| arg.to_str()) {
        Some("--api-sock") => {
            return run_as_process(args.iter().map(|arg| arg.to_string_lossy().into_owned()));
        }
        Some("console-copier") => {
            return match banger_vmm::console::copier_main(args[1..].to_vec()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("console-copier: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let args: Vec<String> = args
        .iter()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    if args.iter().any(|arg| arg == "--list") {
        for (name, _) in cases {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    if let Err(reason) = default_spec_path() {
        // Fails under CI, else reports SKIPPED (see banger_testkit::skip).
        let skipped = std::thread::Builder::new()
            .name("lifecycle".into())
            .spawn(move || skip_or_fail(reason))
            .map(|thread| thread.join().is_ok());
        return if matches!(skipped, Ok(true)) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let filter = args.iter().find(|arg| !arg.starts_with('-'));
    let selected: Vec<&Case> = cases
        .iter()
        .filter(|(name, _)| filter.is_none_or(|filter| name.contains(filter.as_str())))
        .collect();
    println!("\nrunning {} tests", selected.len());
    let started = Instant::now();
    for (name, body) in selected {
        let case_started = Instant::now();
        // A thread named after the case, as libtest does; a panic fails it.
        let passed = std::thread::Builder::new()
            .name((*name).to_owned())
            .spawn(*body)
            .is_ok_and(|thread| thread.join().is_ok());
        let took = case_started.elapsed();
        if !passed {
            println!("test {name} ... FAILED ({took:.1?})");
            println!("\ntest result: FAILED. stopped at {name}");
            return ExitCode::FAILURE;
        }
        println!("test {name} ... ok ({took:.1?})");
    }
    println!("\ntest result: ok. finished in {:.1?}", started.elapsed());
    ExitCode::SUCCESS
}

/// A live process (not a zombie).
#[derive(Clone)]
pub struct Process {
    /// Its pid.
    pub pid: u32,
    /// Its command line, arguments joined by spaces.
    pub cmdline: String,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.pid, self.cmdline)
    }
}

/// Live processes (other than this one) whose command line contains
/// `needle`: the fake VMMs and console copiers of a VM name its run dir and
/// console log.
pub fn processes_mentioning(needle: &Path) -> Vec<Process> {
    let needle = needle.as_os_str().as_bytes();
    let me = std::process::id();
    let mut found = Vec::new();
    for pid in banger_host::process::all_pids() {
        if pid == me || !is_live(pid) {
            continue;
        }
        let Ok(cmdline) = fs_err::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmdline.windows(needle.len()).any(|window| window == needle) {
            let cmdline = cmdline
                .split(|byte| *byte == 0)
                .map(String::from_utf8_lossy)
                .collect::<Vec<_>>()
                .join(" ");
            found.push(Process { pid, cmdline });
        }
    }
    found
}

/// Whether `pid` runs (exists and is not a zombie).
pub fn is_live(pid: u32) -> bool {
    fs_err::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// SIGKILLs every process mentioning `needle` and reaps it (see
/// [`kill_and_reap`]). Returns what was killed.
pub fn kill_processes_mentioning(needle: &Path) -> Vec<Process> {
    let found = processes_mentioning(needle);
    for process in &found {
        kill_and_reap(process.pid);
    }
    found
}

/// SIGKILLs `pid` if it still runs and waits up to 5 s until it is gone,
/// reaping it when it is this process's child (the VMM layer's spawns are).
pub fn kill_and_reap(pid: u32) {
    let Ok(identity) = ProcessIdentity::of(pid) else {
        return;
    };
    let _ = identity.signal(Signal::KILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while exit_status(&identity).is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `dir` with a trailing slash, so `/x/vms/a/` does not match `/x/vms/ab/...`.
pub fn inside(dir: &Path) -> PathBuf {
    let mut text = dir.as_os_str().to_owned();
    text.push("/");
    PathBuf::from(text)
}
