//! Fault points: places where a test can make the daemon die at once, to
//! prove that what a crash leaves behind is found and put right when the
//! daemon starts again (docs/reliability.md, "Fault matrix: the daemon").
//!
//! [`point`] names a step (`create.after_row`, `boot.after_tap`, …). In a
//! debug build (`debug_assertions`, which every test build has), a daemon
//! started with `BANGER_FAULT=<that name>` sends itself SIGKILL when it
//! reaches the step: no destructor, no flush, no cleanup runs, exactly as
//! when the OOM killer or a power cut ends it. In a release build `point`
//! is an empty inline function and the variable is never read, so nothing
//! a user sets can make a shipped daemon kill itself.

/// The environment variable naming the fault point to die at.
pub const FAULT_VAR: &str = "BANGER_FAULT";

/// Every fault point the daemon has, in the order a create reaches them.
pub const POINTS: &[&str] = &[
    "create.after_row",
    "create.after_disks",
    "boot.after_tap",
    "boot.after_vmm_spawn",
    "boot.before_ssh",
];

/// Dies here, by SIGKILL, when `BANGER_FAULT` names this point (debug
/// builds only; see the module doc).
#[cfg(debug_assertions)]
pub fn point(name: &'static str) {
    if std::env::var_os(FAULT_VAR).is_some_and(|wanted| wanted == name) {
        tracing::warn!(
            point = name,
            "fault injection: the daemon kills itself here"
        );
        // SIGKILL, not exit: nothing may run on the way out.
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // Not reached: SIGKILL to oneself is delivered before kill returns.
        std::process::abort();
    }
}

/// A release build has no fault points (see the module doc).
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_name: &'static str) {}
