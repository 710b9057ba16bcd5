//! Tests that cannot do their real check.
//!
//! A test whose prerequisite is missing (not root, a tool not installed, the
//! Firecracker API spec not found, no network namespaces, ...) calls
//! [`skip_or_fail`] and then returns early. Under CI (`CI=true` or `CI=1`)
//! the call panics with the reason: CI installs every prerequisite
//! (`scripts/install-deps.sh`, run as root), so a missing one is a broken
//! machine and must not look like a passing test. Elsewhere it prints
//! `SKIPPED: <test>: <reason>` to stderr and the test returns.
//!
//! Every skip in the workspace's tests goes through here; do not add
//! another copy. A test that can never run in CI belongs behind
//! `#[ignore = "reason"]` instead.

use std::fmt::Display;
use std::io::Write;

/// True when the `CI` environment variable is `true` (any case) or `1`.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "1" || value.eq_ignore_ascii_case("true"))
}

/// Call when the current test cannot do its real check because of
/// `reason`, then return from the test.
///
/// Panics with the reason under CI (see [`in_ci`]); otherwise prints
/// `SKIPPED: <test>: <reason>` to stderr. `<test>` is the name of the
/// current thread, which libtest (and the harness-less runner of
/// banger-vmm's tests) names after the test, so call this on the test's own
/// thread, not on one it spawned.
#[track_caller]
pub fn skip_or_fail(reason: impl Display) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed thread>");
    if in_ci() {
        panic!(
            "{test}: prerequisite missing: {reason} \
             (CI is set, so this fails instead of skipping)"
        );
    }
    // Written to the stderr handle directly rather than with `eprintln!`,
    // which libtest captures and hides for passing tests: a skip must show.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {reason}");
}
