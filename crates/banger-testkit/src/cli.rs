//! Running banger commands in tests: exit-status assertions that show the
//! other stream on failure, and JSON parsing with the text in the panic.

use std::process::{Command, Output, Stdio};

/// Runs `command` with stdin closed and returns its output.
pub fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().expect("command runs")
}

/// Runs `command`, asserts success, returns stdout.
pub fn ok(command: &mut Command) -> String {
    let output = run(command);
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `command`, asserts failure, returns stderr.
pub fn fails(command: &mut Command) -> String {
    let output = run(command);
    assert!(
        !output.status.success(),
        "unexpectedly succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Parses `text` as JSON, panicking with the text when it is not.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}
