//! Benchmark for issue 16: cold create → SSH, pause, resume → SSH and
//! fork → SSH of the same image, side by side, in one run.
//!
//! Prints one JSON document on stdout; progress goes to stderr. Not a timed
//! test: it reports numbers for humans and CI logs (see docs/benchmarks.md).
//!
//! ```text
//! make bench-snapshot                    # builds everything, then runs this
//! make bench-snapshot BENCH_ARGS="--iterations 5 --warmup 0"
//! ```
//!
//! Needs root. One isolated banger environment ([`TestEnv`], temp
//! state/config/runtime dirs, the shared cache dir) and one network
//! namespace ([`NetNs`]), set up as the VM suites do: the first VM is made
//! with `--no-start` in the host namespace, because the default image
//! (`debian-bookworm-minimal`, the bare catalog image) is built on first use
//! and that needs the Debian mirror; the daemon is stopped, this process
//! moves into the namespace, and everything after that (daemon, bridge,
//! TAPs, guests) lives there. Per iteration, each step timed from the CLI's
//! spawn to its exit:
//!
//! 1. `banger vm create --name snap-N` (`cold_create_to_ssh_ms`: the CLI
//!    returns once the guest answers SSH);
//! 2. `banger vm pause snap-N` (`pause_ms`);
//! 3. `banger vm resume snap-N` (`resume_to_ssh_ms`: returns once SSH
//!    answers again);
//! 4. `banger vm fork snap-N --name snap-N-copy` (`fork_to_ssh_ms`: returns
//!    once the copy answers SSH with its own identity).
//!
//! Outside the clock, the guest's boot id is read over SSH before the pause,
//! after the resume and in the fork, so a resume or fork that booted the
//! guest afresh cannot pass for a resume; then both VMs are deleted.
//!
//! Binaries: `banger`/`bangerd` next to this example's profile dir (as
//! [`banger_testkit::workspace_binary`] finds them) and the static agent
//! from `BANGER_AGENT_BIN`. `BANGER_VMM`, if set, is passed on. Everything
//! started is killed on success, failure, Ctrl-C and SIGTERM, and the temp
//! environment is removed.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use banger_testkit::TestEnv;
use banger_testkit::netns::NetNs;
use serde_json::{Value, json};

/// The image every VM boots: the catalog's bare Debian, which the daemon
/// builds on first use (much faster than the provisioned default).
const IMAGE: &str = "debian-bookworm-minimal";
/// The issue's target under QEMU TCG: resume → SSH at most this share of
/// cold create → SSH.
const TCG_RESUME_RATIO_TARGET: f64 = 0.10;
/// The issue's target on a KVM host with Firecracker: resume → SSH below this.
const FIRECRACKER_RESUME_MS_TARGET: f64 = 150.0;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, BoxError>;

/// Command-line options.
struct Options {
    iterations: usize,
    warmup: usize,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        iterations: 3,
        warmup: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<usize> {
            let value = args
                .next()
                .ok_or_else(|| format!("{name} needs a number"))?;
            Ok(value
                .parse()
                .map_err(|error| format!("{name} {value}: {error}"))?)
        };
        match arg.as_str() {
            "--iterations" => options.iterations = number("--iterations")?,
            "--warmup" => options.warmup = number("--warmup")?,
            "-h" | "--help" => {
                eprintln!(
                    "usage: bench_snapshot [--iterations N (default 3)] [--warmup N (default 1)]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (see --help)").into()),
        }
    }
    if options.iterations == 0 {
        return Err("--iterations must be at least 1".into());
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if !rustix::process::geteuid().is_root() {
        eprintln!("error: bench_snapshot needs root (bridge and TAPs in a network namespace)");
        return ExitCode::from(2);
    }
    if let Err(error) = check_binaries() {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    // To come back to before the namespace is torn down: its teardown kills
    // every process inside, and this one moves in (see `enter_netns`).
    let host_netns = match fs_err::File::open("/proc/thread-self/ns/net") {
        Ok(file) => file,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let netns = NetNs::new("snap");
    let env = TestEnv::new().with_shared_cache();
    // One thread: every child is spawned from it, so the namespace this
    // thread moves into (see `enter_netns`) is the one they inherit.
    let outcome = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(async {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                result = run(&env, &netns, &options) => result,
                _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
                _ = terminate.recv() => Err("terminated".into()),
            }
        }),
        Err(error) => Err(error.into()),
    };
    // The runtime is gone: CLIs still running were killed (kill_on_drop).
    let outcome = match set_netns(&host_netns, "the host namespace") {
        Ok(()) => outcome,
        Err(error) => {
            // Still inside: NetNs's teardown would kill this process too.
            // Kill ours by their marks and delete the namespace's name.
            eprintln!("error: {error}");
            kill_leftovers(&env);
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", netns.name()])
                .status();
            std::mem::forget(netns);
            drop(env);
            return ExitCode::FAILURE;
        }
    };
    drop(netns);
    kill_leftovers(&env);
    drop(env);
    match outcome {
        Ok(report) => {
            let text = serde_json::to_string_pretty(&report).unwrap_or_default();
            let mut stdout = std::io::stdout().lock();
            if writeln!(stdout, "{text}").is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Fails with a hint when `banger`/`bangerd` are not where
/// [`TestEnv::banger`] looks (it would panic).
fn check_binaries() -> Result<()> {
    let exe = std::env::current_exe()?;
    // <target>/<profile>/examples/bench_snapshot
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot find the target profile dir")?;
    for name in ["banger", "bangerd"] {
        let path = profile_dir.join(name);
        if !path.is_file() {
            return Err(format!(
                "{} is missing: build it with `cargo build --release -p banger-cli -p bangerd` in the same CARGO_TARGET_DIR (make bench-snapshot does)",
                path.display()
            )
            .into());
        }
    }
    Ok(())
}

/// A `banger` command in `env` that boots the bare image, killed if the
/// benchmark is interrupted while it runs.
fn banger(env: &TestEnv, args: &[&str]) -> tokio::process::Command {
    let mut command = env.banger();
    command
        .args(args)
        .env("BANGER_DEFAULT_IMAGE_NAME", IMAGE)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // TestEnv drops the caller's BANGER_* variables; the backend choice is
    // worth keeping (e.g. BANGER_VMM=firecracker on a KVM host).
    if let Some(vmm) = std::env::var_os("BANGER_VMM") {
        command.env("BANGER_VMM", vmm);
    }
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    command
}

/// Runs a `banger` command to completion: how long it took from spawn to
/// exit, and its stdout.
async fn timed(env: &TestEnv, args: &[&str]) -> Result<(Duration, String)> {
    let started = Instant::now();
    let output = banger(env, args).output().await?;
    let took = started.elapsed();
    if !output.status.success() {
        return Err(format!(
            "banger {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    Ok((took, String::from_utf8_lossy(&output.stdout).into_owned()))
}

async fn ok(env: &TestEnv, args: &[&str]) -> Result<String> {
    Ok(timed(env, args).await?.1)
}

/// Moves this thread (the runtime's only one, which spawns every child)
/// into `netns`. Timing children directly, rather than through
/// `ip netns exec`, keeps that wrapper's few milliseconds off the clock.
fn enter_netns(netns: &NetNs) -> Result<()> {
    let file = fs_err::File::open(Path::new("/run/netns").join(netns.name()))?;
    set_netns(&file, netns.name())
}

/// Moves this thread into the network namespace `file` refers to.
fn set_netns(file: &fs_err::File, what: &str) -> Result<()> {
    // SAFETY: setns takes a file descriptor we own for the duration of the
    // call and a flag; it only changes this thread's network namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns into {what}: {}", std::io::Error::last_os_error()).into());
    }
    Ok(())
}

/// Kills whatever the namespace's teardown missed: processes whose
/// environment points at this run's runtime dir or whose command line names
/// its temp dir (e.g. image-build helpers of the first daemon, which ran in
/// the host namespace).
fn kill_leftovers(env: &TestEnv) {
    let root = env.root().as_os_str().as_bytes().to_owned();
    let marker = format!("BANGER_RUNTIME_DIR={}", env.paths().runtime_dir.display());
    let me = std::process::id().to_string();
    for _round in 0..20 {
        let mut found = false;
        for entry in fs_err::read_dir("/proc").into_iter().flatten().flatten() {
            let pid = entry.file_name();
            let Some(pid) = pid.to_str().filter(|pid| *pid != me) else {
                continue;
            };
            let Some(raw) = pid.parse().ok().and_then(rustix::process::Pid::from_raw) else {
                continue;
            };
            let cmdline = fs_err::read(entry.path().join("cmdline")).unwrap_or_default();
            let environ = fs_err::read(entry.path().join("environ")).unwrap_or_default();
            let ours = cmdline.windows(root.len()).any(|window| window == root)
                || environ
                    .split(|byte| *byte == 0)
                    .any(|pair| pair == marker.as_bytes());
            // Zombies have empty cmdline and environ, so they never match.
            if ours {
                found = true;
                let _ = rustix::process::kill_process(raw, rustix::process::Signal::KILL);
            }
        }
        if !found {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Milliseconds, to 0.1 ms.
fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e4).round() / 10.0
}

/// p50 (nearest rank: the 2nd of 3), min, max and mean.
fn stats(values: &[f64]) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let p50 = sorted[(sorted.len().div_ceil(2)).max(1) - 1];
    let round = |v: f64| (v * 10.0).round() / 10.0;
    json!({
        "p50": round(p50),
        "min": round(sorted[0]),
        "max": round(sorted[sorted.len() - 1]),
        "mean": round(sorted.iter().sum::<f64>() / sorted.len() as f64),
    })
}

fn load_average() -> String {
    fs_err::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The guest's boot id: the same across a pause and a fork, new on a boot.
async fn boot_id(env: &TestEnv, vm: &str) -> Result<String> {
    let text = ok(
        env,
        &["vm", "ssh", vm, "--", "cat /proc/sys/kernel/random/boot_id"],
    )
    .await?;
    Ok(text.trim().to_owned())
}

/// `vm show --json` of `vm`.
async fn show(env: &TestEnv, vm: &str) -> Result<Value> {
    Ok(serde_json::from_str(
        &ok(env, &["vm", "show", vm, "--json"]).await?,
    )?)
}

/// QEMU's accelerator (`tcg`, `kvm`) from the VMM's command line, if the
/// VM runs under QEMU.
fn accel(shown: &Value) -> Option<String> {
    let pid = shown.get("pid")?.as_u64()?;
    let cmdline = fs_err::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
    let value = args.windows(2).find(|pair| pair[0] == b"-accel")?[1];
    let value = String::from_utf8_lossy(value);
    Some(value.split(',').next().unwrap_or_default().to_owned())
}

/// One iteration's timings.
struct Row {
    cold_create: Duration,
    pause: Duration,
    resume: Duration,
    /// The fork's time, or why it failed: a failed fork is reported in
    /// the JSON (and left out of the figures) rather than ending the run.
    fork: std::result::Result<Duration, String>,
    saved_memory_bytes: Option<u64>,
}

/// What ran the VMs: `vm show`'s `backend` and QEMU's accelerator.
struct Vmm {
    backend: Option<String>,
    accel: Option<String>,
}

async fn iteration(env: &TestEnv, label: &str, name: &str) -> Result<(Row, Vmm)> {
    let copy = format!("{name}-copy");
    eprintln!("bench_snapshot: {label}: vm create {name}");
    let (cold_create, _) = timed(env, &["vm", "create", "--name", name, "--json"]).await?;
    let before = boot_id(env, name).await?;
    eprintln!("bench_snapshot: {label}: vm pause {name}");
    let (pause, _) = timed(env, &["vm", "pause", name]).await?;
    let paused = show(env, name).await?;
    if paused.get("state").and_then(Value::as_str) != Some("paused") {
        return Err(format!("{name} is not paused after vm pause: {paused}").into());
    }
    let saved_memory_bytes = paused.get("saved_memory_bytes").and_then(Value::as_u64);
    eprintln!("bench_snapshot: {label}: vm resume {name}");
    let (resume, _) = timed(env, &["vm", "resume", name]).await?;
    let shown = show(env, name).await?;
    // Read while the VMM runs: its command line names the accelerator.
    let vmm = Vmm {
        backend: shown
            .get("backend")
            .and_then(Value::as_str)
            .map(str::to_owned),
        accel: accel(&shown),
    };
    if boot_id(env, name).await? != before {
        return Err(format!("{name} booted afresh instead of resuming").into());
    }
    eprintln!("bench_snapshot: {label}: vm fork {name} --name {copy}");
    let fork = match timed(env, &["vm", "fork", name, "--name", &copy]).await {
        Ok((took, _)) => {
            let forked_boot = boot_id(env, &copy).await;
            ok(env, &["vm", "delete", "--force", &copy]).await?;
            if forked_boot? != before {
                return Err(
                    format!("{copy} booted afresh instead of resuming {name}'s memory").into(),
                );
            }
            Ok(took)
        }
        // The daemon removes a failed fork; the source keeps running.
        Err(error) => {
            eprintln!("bench_snapshot: {label}: fork failed: {error}");
            Err(error.to_string())
        }
    };
    ok(env, &["vm", "delete", "--force", name]).await?;
    eprintln!(
        "bench_snapshot: {label}: create {:.0} ms, pause {:.0} ms, resume {:.0} ms, fork {:.0} ms",
        ms(cold_create),
        ms(pause),
        ms(resume),
        fork.as_ref().map(|took| ms(*took)).unwrap_or(f64::NAN)
    );
    let row = Row {
        cold_create,
        pause,
        resume,
        fork,
        saved_memory_bytes,
    };
    Ok((row, vmm))
}

async fn run(env: &TestEnv, netns: &NetNs, options: &Options) -> Result<Value> {
    eprintln!(
        "bench_snapshot: building/finding image {IMAGE} in the host namespace (needs the Debian mirror on first use)"
    );
    let first = ok(
        env,
        &[
            "vm",
            "create",
            "--name",
            "snap-setup",
            "--no-start",
            "--json",
        ],
    )
    .await?;
    let first: Value = serde_json::from_str(&first)?;
    ok(env, &["daemon", "stop"]).await?;
    enter_netns(netns)?;
    // The daemon starts here, inside the namespace, and outside any clock.
    ok(env, &["vm", "delete", "snap-setup"]).await?;
    let load_start = load_average();

    let mut rows = Vec::new();
    let mut vmm = Vmm {
        backend: None,
        accel: None,
    };
    for index in 0..options.warmup + options.iterations {
        let warmup = index < options.warmup;
        let label = if warmup {
            format!("warm-up {}/{}", index + 1, options.warmup)
        } else {
            format!(
                "iteration {}/{}",
                index - options.warmup + 1,
                options.iterations
            )
        };
        let (row, ran) = iteration(env, &label, &format!("snap-{index}")).await?;
        if !warmup {
            rows.push(row);
            vmm = ran;
        }
    }

    let column =
        |pick: fn(&Row) -> Duration| -> Vec<f64> { rows.iter().map(|row| ms(pick(row))).collect() };
    let cold = stats(&column(|row| row.cold_create));
    let resume = stats(&column(|row| row.resume));
    let p50 = |value: &Value| value.get("p50").and_then(Value::as_f64);
    let ratio = match (p50(&resume), p50(&cold)) {
        (Some(resume), Some(cold)) if cold > 0.0 => Some((resume / cold * 1000.0).round() / 1000.0),
        _ => None,
    };
    let Vmm { backend, accel } = vmm;
    let tcg_here = backend.as_deref() == Some("qemu") && accel.as_deref() != Some("kvm");
    let firecracker_here = backend.as_deref() == Some("firecracker");
    let resume_p50 = p50(&resume);
    Ok(json!({
        "benchmark": "bench_snapshot",
        "image": IMAGE,
        "backend": backend,
        "accel": accel,
        "iterations": options.iterations,
        "warmup_iterations": options.warmup,
        "host_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "host_kernel": fs_err::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default(),
        "vm_vcpus": first.get("vcpus"),
        "vm_memory_mib": first.get("memory_mib"),
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "cold_create_to_ssh_ms": cold,
        "pause_ms": stats(&column(|row| row.pause)),
        "resume_to_ssh_ms": resume,
        "fork_to_ssh_ms": stats(&rows.iter().filter_map(|row| row.fork.as_ref().ok()).map(|took| ms(*took)).collect::<Vec<_>>()),
        "fork_failures": rows.iter().filter(|row| row.fork.is_err()).count(),
        "saved_memory_bytes": rows.iter().filter_map(|row| row.saved_memory_bytes).max(),
        "resume_ratio": ratio,
        "targets": {
            "qemu_tcg_resume_ratio_at_most": {
                "target": TCG_RESUME_RATIO_TARGET,
                "measured_here": tcg_here,
                "value": ratio,
                "met": if tcg_here { ratio.map(|r| r <= TCG_RESUME_RATIO_TARGET) } else { None },
            },
            "firecracker_kvm_resume_to_ssh_ms_below": {
                "target": FIRECRACKER_RESUME_MS_TARGET,
                "measured_here": firecracker_here,
                "value": if firecracker_here { resume_p50 } else { None },
                "met": if firecracker_here { resume_p50.map(|v| v < FIRECRACKER_RESUME_MS_TARGET) } else { None },
            },
        },
        "runs": rows.iter().map(|row| json!({
            "cold_create_to_ssh_ms": ms(row.cold_create),
            "pause_ms": ms(row.pause),
            "resume_to_ssh_ms": ms(row.resume),
            "fork_to_ssh_ms": row.fork.as_ref().ok().map(|took| ms(*took)),
            "fork_error": row.fork.as_ref().err(),
            "saved_memory_bytes": row.saved_memory_bytes,
        })).collect::<Vec<_>>(),
    }))
}
