//! Shared by the integration test binaries, which use their own `main`
//! (`harness = false`) so that the same executable can also act as the helper
//! programs the VMM layer starts:
//!
//! - `<test-bin> console-copier --path P --max-bytes N`: the console copier
//!   (what `bangerd console-copier` does in production);
//! - `<test-bin> --api-sock PATH`: a fake `firecracker` validating every API
//!   request against the official spec (`banger_testkit::fake_firecracker`).
//!
//! [`run`] is a minimal test runner: runs the named tests (all, or those whose
//! name contains the first non-flag argument), each on a thread named after
//! it (as libtest does, so `banger_testkit::skip_or_fail` can name the test),
//! catching panics, and reports like libtest.

#![allow(dead_code, clippy::unwrap_used, clippy::print_stdout)]

pub mod guest;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use banger_vmm::CopierCommand;

/// A test: name and body.
pub type Test = (&'static str, fn());

/// When started as a helper, runs it and returns its exit code.
pub fn helper_mode() -> Option<ExitCode> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match args.first().and_then(|a| a.to_str()) {
        Some("console-copier") => Some(match banger_vmm::copier_main(args[1..].to_vec()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("console-copier: {error}");
                ExitCode::FAILURE
            }
        }),
        Some("--api-sock") => Some(banger_testkit::fake_firecracker::run_as_process(
            args.iter().map(|a| a.to_string_lossy().into_owned()),
        )),
        _ => None,
    }
}

/// This test binary as the console copier.
pub fn copier() -> CopierCommand {
    CopierCommand {
        program: std::env::current_exe().unwrap(),
        args: vec!["console-copier".into()],
    }
}

/// Runs `tests`, libtest-style. `--list` lists them (for IDEs and cargo).
pub fn run(tests: &[Test]) -> ExitCode {
    if let Some(code) = helper_mode() {
        return code;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filter = args.iter().find(|a| !a.starts_with('-'));
    let selected: Vec<&Test> = tests
        .iter()
        .filter(|(name, _)| filter.is_none_or(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, body) in selected {
        let started = Instant::now();
        let outcome = std::thread::Builder::new()
            .name((*name).to_owned())
            .spawn(*body)
            .map_or_else(
                |error| panic!("spawn {name}: {error}"),
                |thread| thread.join(),
            );
        let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
        println!("test {name} ... {verdict} ({:.1?})", started.elapsed());
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    if failed.is_empty() {
        println!("\ntest result: ok.");
        ExitCode::SUCCESS
    } else {
        println!("\ntest result: FAILED. failures: {failed:?}");
        ExitCode::FAILURE
    }
}

/// A short temp dir under /tmp (Unix socket paths must stay under 107 bytes).
pub fn short_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("bvm")
        .tempdir_in("/tmp")
        .unwrap()
}

/// A multi-threaded tokio runtime for a test body.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// True when `tool` is on PATH or is an existing path.
pub fn have(tool: &str) -> bool {
    which(tool).is_some()
}

/// Finds `tool` on PATH (or `/root/.cargo/bin`, where cargo installs go).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let home_cargo = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin"));
    std::env::split_paths(&path)
        .chain(home_cargo)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}
