//! The console pipeline with real processes: a producer writing far more than
//! the cap through the copier process leaves files within the cap, and the
//! producer and copier outlive a SIGKILLed "daemon" that started them.
//!
//! This binary is also the console copier and a fake daemon (see `common`).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use banger_vmm::console::{rotated_path, spawn_with_console};
use banger_vmm::process::{ProcessIdentity, Signal, wait_exit};

fn main() -> ExitCode {
    // Fake daemon mode: start a producer with the console, record both
    // identities, then idle until killed.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("fake-daemon") {
        fake_daemon(Path::new(&args[1]), Path::new(&args[2]));
        return ExitCode::SUCCESS;
    }
    common::run(&[
        ("flood_stays_within_cap", flood_stays_within_cap),
        (
            "console_survives_daemon_sigkill",
            console_survives_daemon_sigkill,
        ),
    ])
}

fn file_len(path: &Path) -> u64 {
    fs_err::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn flood_stays_within_cap() {
    let dir = common::short_tempdir();
    let log = dir.path().join("console.log");
    let cap = 64 * 1024;
    // ~20 MB of output, 300 times the cap.
    let mut producer = Command::new("sh");
    producer.args([
        "-c",
        "i=0; while [ $i -lt 200 ]; do head -c 100000 /dev/zero | tr '\\0' g; i=$((i+1)); done; echo THE-END",
    ]);
    let started = Instant::now();
    let procs = spawn_with_console(producer, &common::copier(), &log, cap).unwrap();
    let runtime = common::runtime();
    let exit = runtime.block_on(wait_exit(&procs.vmm, Duration::from_secs(60)));
    assert!(exit.is_some(), "producer did not finish");
    // The copier ends at end of file.
    let copier_exit = runtime.block_on(wait_exit(&procs.copier, Duration::from_secs(10)));
    assert_eq!(
        copier_exit,
        Some(banger_vmm::ExitInfo::Code { code: 0 }),
        "copier"
    );
    let (current, rotated) = (file_len(&log), file_len(&rotated_path(&log)));
    println!(
        "  20 MB through a {cap}-byte cap in {:?}: log {current} B, .1 {rotated} B",
        started.elapsed()
    );
    assert!(current <= cap && rotated <= cap, "{current} {rotated}");
    let text = fs_err::read_to_string(&log).unwrap();
    assert!(text.ends_with("THE-END\n"), "latest output is kept");
}

fn fake_daemon(log: &Path, ids: &Path) {
    let mut producer = Command::new("sh");
    producer.args([
        "-c",
        "i=0; while :; do echo \"line $i\"; i=$((i+1)); sleep 0.01; done",
    ]);
    let procs = spawn_with_console(producer, &common::copier(), log, 4096).unwrap();
    let text = serde_json::to_string(&[&procs.vmm, &procs.copier]).unwrap();
    fs_err::write(ids, text).unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

fn console_survives_daemon_sigkill() {
    let dir = common::short_tempdir();
    let log = dir.path().join("console.log");
    let ids_file: PathBuf = dir.path().join("ids.json");
    let mut daemon = Command::new(std::env::current_exe().unwrap())
        .arg("fake-daemon")
        .arg(&log)
        .arg(&ids_file)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ids_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let ids: Vec<ProcessIdentity> =
        serde_json::from_str(&fs_err::read_to_string(&ids_file).unwrap()).unwrap();
    let (producer, copier) = (&ids[0], &ids[1]);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    // Both keep running without their daemon, and output keeps flowing.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        producer.is_alive_and_same(),
        "producer died with the daemon"
    );
    assert!(copier.is_alive_and_same(), "copier died with the daemon");
    let before = fs_err::read_to_string(&log).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let after = fs_err::read_to_string(&log).unwrap();
    assert_ne!(
        before, after,
        "console output stopped after the daemon died"
    );
    assert!(file_len(&log) <= 4096 && file_len(&rotated_path(&log)) <= 4096);
    // Adopted (not our children): kill by identity, the copier then ends.
    assert!(producer.signal(Signal::KILL).unwrap());
    let runtime = common::runtime();
    assert_eq!(
        runtime.block_on(wait_exit(producer, Duration::from_secs(5))),
        Some(banger_vmm::ExitInfo::Unknown)
    );
    assert!(
        runtime
            .block_on(wait_exit(copier, Duration::from_secs(5)))
            .is_some(),
        "copier did not exit at end of file"
    );
}
