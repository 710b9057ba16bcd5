//! Benchmark: TAP create/delete through `InProcessOps`, and `TapPool::take`
//! from a warm pool. Needs root; runs entirely inside a network namespace
//! it creates (the host's is never touched). Prints JSON on stdout.
//!
//! ```text
//! CARGO_TARGET_DIR=target-host cargo run --release -p banger-host --example net_bench -- [ITERATIONS]
//! ```
#![allow(
    clippy::print_stdout,
    reason = "a benchmark's output is its JSON report"
)]

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use banger_host::net::{BridgeName, TapName, TapPool};
use banger_host::privileged::{InProcessOps, PrivilegedOps};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iterations: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(200);
    // SAFETY: unshare(CLONE_NEWNET) takes no pointers and only moves this
    // (main, still single-threaded) thread into a new network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error()).into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(iterations))
}

async fn run(iterations: usize) -> Result<(), Box<dyn std::error::Error>> {
    let ops = Arc::new(InProcessOps::new()?);
    let bridge = BridgeName::new("bgbench0")?;
    let start = Instant::now();
    ops.ensure_bridge(&bridge, Ipv4Addr::new(10, 99, 0, 1), 24)
        .await?;
    let bridge_ms = ms(start);

    let (mut create, mut delete) = (Vec::new(), Vec::new());
    for index in 0..iterations {
        let tap = TapName::new(u32::try_from(index)?);
        let start = Instant::now();
        ops.create_tap(&tap, 1000, &bridge).await?;
        create.push(ms(start));
        let start = Instant::now();
        ops.delete_tap(&tap).await?;
        delete.push(ms(start));
    }

    let pool = TapPool::new(ops.clone(), bridge.clone(), 1000, 4);
    pool.fill().await?;
    let mut take = Vec::new();
    for _ in 0..iterations.min(50) {
        pool.fill().await?;
        let start = Instant::now();
        let tap = pool.take().await?;
        take.push(ms(start));
        pool.release(&tap).await?;
    }
    pool.drain().await?;

    let report = serde_json::json!({
        "benchmark": "banger-host net (in a private network namespace)",
        "iterations": iterations,
        "ensure_bridge_ms": bridge_ms,
        "create_tap_ms": summary(&mut create),
        "delete_tap_ms": summary(&mut delete),
        "pool_take_warm_ms": summary(&mut take),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

fn summary(samples: &mut [f64]) -> serde_json::Value {
    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(index).map(|v| (v * 1000.0).round() / 1000.0)
    };
    serde_json::json!({ "p50": pick(0.5), "p95": pick(0.95), "max": pick(1.0) })
}
