//! Benchmark: per-VM work-disk clone + grow, and overlay creation.
//!
//! Prints one JSON document on stdout (progress goes to stderr). Not a
//! timed test: it reports numbers for humans and CI logs to compare.
//!
//! ```text
//! CARGO_TARGET_DIR=target-host cargo run --release -p banger-host --example disk_bench -- [ITERATIONS] [DIR]
//! ```
//!
//! For each seed (8 GiB and 32 GiB apparent, both holding ~100 MiB of data
//! written with `mkfs.ext4 -d`) it times, ITERATIONS times (default 30):
//! `clone_file` alone, `grow_ext4` to seed + 2 GiB, and
//! `clone_work_seed` (both in one call), `clone_work_seed_cached` (the
//! seed grown once per size, then one sparse clone per VM: what the daemon
//! should call), plus a baseline of
//! `cp --sparse=always` in the same run. Seeds stay in the page cache after
//! the first copy, which is also the daemon's steady state. Then it times
//! `create_overlay_disk` (template already formatted) for an 8 GiB upper.
#![allow(
    clippy::print_stdout,
    reason = "a benchmark's output is its JSON report"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use banger_host::disk::{
    clone_file, clone_work_seed, clone_work_seed_cached, create_overlay_disk, grow_ext4, overlay,
    prepare_grown_seed,
};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let iterations: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(30);
    let base = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("banger-disk-bench-")
        .tempdir_in(&base)?;
    let tree = dir.path().join("tree");
    fs_err::create_dir(&tree)?;
    write_data(&tree.join("data.bin"), 100)?;

    let mut seeds = Vec::new();
    for size_gib in [8u64, 32] {
        eprintln!("building {size_gib} GiB seed ...");
        let seed = dir.path().join(format!("seed-{size_gib}g.ext4"));
        let status = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&tree)
            .arg(&seed)
            .arg(format!("{size_gib}G"))
            // mkfs.ext4 says "Creating regular file" on stdout even with
            // -q; stdout is reserved for the JSON report.
            .stdout(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            return Err(format!("mkfs.ext4 failed for {}", seed.display()).into());
        }
        seeds.push((size_gib, seed));
    }

    let mut results = Vec::new();
    for (size_gib, seed) in &seeds {
        eprintln!("timing {size_gib} GiB seed, {iterations} iterations ...");
        let grown = (size_gib + 2) * GIB;
        let dest = dir.path().join("work.ext4");
        let (mut clone_ms, mut grow_ms, mut total_ms, mut cp_ms) = (vec![], vec![], vec![], vec![]);
        let cache = dir.path().join(format!("cache-{size_gib}"));
        let start = Instant::now();
        prepare_grown_seed(&cache, seed, grown)?;
        let prepare_ms = ms(start);
        let mut cached_ms = vec![];
        let mut copied = 0;
        let mut method = None;
        for _ in 0..iterations {
            let start = Instant::now();
            let report = clone_file(seed, &dest)?;
            clone_ms.push(ms(start));
            let start = Instant::now();
            grow_ext4(&dest, grown)?;
            grow_ms.push(ms(start));
            copied = report.bytes_copied;
            method = Some(report.method);
            fs_err::remove_file(&dest)?;

            let start = Instant::now();
            clone_work_seed(seed, &dest, grown)?;
            total_ms.push(ms(start));
            fs_err::remove_file(&dest)?;

            let start = Instant::now();
            clone_work_seed_cached(&cache, seed, &dest, grown)?;
            cached_ms.push(ms(start));
            fs_err::remove_file(&dest)?;

            let start = Instant::now();
            let status = Command::new("cp")
                .arg("--sparse=always")
                .arg(seed)
                .arg(&dest)
                .status()?;
            cp_ms.push(ms(start));
            if !status.success() {
                return Err("cp failed".into());
            }
            fs_err::remove_file(&dest)?;
        }
        results.push(serde_json::json!({
            "seed_apparent_bytes": size_gib * GIB,
            "seed_allocated_bytes": allocated(seed)?,
            "grown_to_bytes": grown,
            "method": method,
            "bytes_copied": copied,
            "clone_ms": summary(&mut clone_ms),
            "grow_ms": summary(&mut grow_ms),
            "clone_and_grow_ms": summary(&mut total_ms),
            "cached_grown_seed_prepare_once_ms": prepare_ms,
            "cached_clone_ms": summary(&mut cached_ms),
            "baseline_cp_sparse_always_ms": summary(&mut cp_ms),
        }));
    }

    eprintln!("timing overlay disks ...");
    let templates = dir.path().join("templates");
    let start = Instant::now();
    overlay::ensure_template(&templates, 8 * GIB)?;
    let template_ms = ms(start);
    let mut overlay_ms = Vec::new();
    let upper = dir.path().join("upper.ext4");
    for _ in 0..iterations {
        let start = Instant::now();
        create_overlay_disk(&templates, &upper, 8 * GIB)?;
        overlay_ms.push(ms(start));
        fs_err::remove_file(&upper)?;
    }

    let report = serde_json::json!({
        "benchmark": "banger-host disk",
        "iterations": iterations,
        "data_bytes": 100 * MIB,
        "work_seed": results,
        "overlay_8g": {
            "template_format_once_ms": template_ms,
            "create_ms": summary(&mut overlay_ms),
        },
    });
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &report)?;
    writeln!(stdout)?;
    Ok(())
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

fn summary(samples: &mut [f64]) -> serde_json::Value {
    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(index).map(|v| (v * 100.0).round() / 100.0)
    };
    serde_json::json!({ "p50": pick(0.5), "p95": pick(0.95), "min": pick(0.0), "max": pick(1.0) })
}

fn allocated(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs_err::metadata(path)?.blocks() * 512)
}

/// `mib` MiB of incompressible bytes (xorshift), so nothing is a hole.
fn write_data(path: &Path, mib: usize) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(fs_err::File::create(path)?);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut chunk = vec![0u8; MIB as usize];
    for _ in 0..mib {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&chunk)?;
    }
    file.flush()
}
