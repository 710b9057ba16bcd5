//! Where the time of a VM operation went, step by step, logged once at
//! debug level when the operation ends (however it ends).
//!
//! `BANGER_LOG_LEVEL=debug` turns it on; `make bench-create` splits banger's
//! own overhead with it (docs/benchmarks.md). Steps are measured from the
//! end of the previous one, so they add up to the total.

use std::time::{Duration, Instant};

/// Times the steps of one operation on one VM.
#[derive(Debug)]
pub struct StepTimer {
    operation: &'static str,
    vm: String,
    started: Instant,
    last: Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl StepTimer {
    /// Starts timing `operation` on `vm`.
    pub fn start(operation: &'static str, vm: impl Into<String>) -> Self {
        let now = Instant::now();
        Self {
            operation,
            vm: vm.into(),
            started: now,
            last: now,
            steps: Vec::new(),
        }
    }

    /// Records that `step` ended now (it began where the last one ended).
    pub fn step(&mut self, step: &'static str) {
        let now = Instant::now();
        self.steps.push((step, now - self.last));
        self.last = now;
    }

    /// Names the VM, once known (a create without a name gets one later).
    pub fn rename(&mut self, vm: impl Into<String>) {
        self.vm = vm.into();
    }

    /// The steps as `name=1.2ms` words, in order.
    fn summary(&self) -> String {
        self.steps
            .iter()
            .map(|(step, took)| format!("{step}={:.1}ms", took.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Drop for StepTimer {
    fn drop(&mut self) {
        tracing::debug!(
            operation = self.operation,
            vm = %self.vm,
            total_ms = self.started.elapsed().as_secs_f64() * 1e3,
            steps = %self.summary(),
            "step timings"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::StepTimer;

    #[test]
    fn steps_are_listed_in_order_with_their_times() {
        let mut timer = StepTimer::start("create", "(new)");
        timer.step("disks");
        std::thread::sleep(std::time::Duration::from_millis(5));
        timer.step("network");
        timer.rename("box");
        let summary = timer.summary();
        let words: Vec<&str> = summary.split(' ').collect();
        assert_eq!(words.len(), 2, "{summary}");
        assert!(words[0].starts_with("disks="), "{summary}");
        let network: f64 = words[1]
            .strip_prefix("network=")
            .and_then(|ms| ms.strip_suffix("ms"))
            .and_then(|ms| ms.parse().ok())
            .expect("network=<ms>ms");
        assert!(network >= 5.0, "{summary}");
        assert_eq!(timer.vm, "box");
    }
}
