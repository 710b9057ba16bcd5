//! `write_executable` under the race it exists for: other threads forking
//! children the whole time scripts are written and run.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[test]
fn scripts_run_while_other_threads_fork() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = Arc::new(AtomicBool::new(false));
    let forkers: Vec<_> = (0..3)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    Command::new("true").status().expect("true runs");
                }
            })
        })
        .collect();
    let mut failures = Vec::new();
    for round in 0..150 {
        let script = dir.path().join(format!("script-{round}"));
        banger_testkit::write_executable(&script, &format!("#!/bin/sh\necho {round}\n"));
        match Command::new(&script).output() {
            Ok(output) if output.status.success() => {
                assert_eq!(
                    String::from_utf8_lossy(&output.stdout),
                    format!("{round}\n")
                );
            }
            Ok(output) => failures.push(format!("round {round}: {}", output.status)),
            Err(error) => failures.push(format!("round {round}: {error}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for forker in forkers {
        forker.join().expect("forker thread");
    }
    assert!(failures.is_empty(), "scripts failed to run: {failures:?}");
}
