//! Benchmark: `banger vm create` against a bare QEMU command line booting the
//! same kernel, initrd and disks, to measure what banger adds on the host.
//!
//! Prints one JSON document on stdout; progress goes to stderr. Not a timed
//! test: it reports numbers for humans and CI logs (see docs/benchmarks.md).
//!
//! ```text
//! make bench-create                      # builds everything, then runs this
//! cargo run --release -p banger-testkit --example bench_create -- [--iterations N] [--warmup N]
//! ```
//!
//! Needs root (bridge, TAPs). The whole process first moves into a network
//! namespace of its own, so the bridge, TAPs, guests and every probe stay
//! there; the namespace disappears with the last process in it.
//!
//! One isolated banger environment (temp state/config/runtime dirs, the
//! shared cache dir) is set up once: daemon started, default image built
//! (its kernel pulled). Then, per iteration:
//!
//! 1. **banger**: spawn `banger vm create` and time it until it returns
//!    (`create_ms`: SSH answered and the daemon replied). In parallel this
//!    program polls the guest's port 22 for an `SSH-2.0-` banner with the
//!    daemon's own probe (`banger_host::ssh::wait_for_ssh`: every 100 ms
//!    until the guest answers, every 5 ms once it refuses connections)
//!    and records `ssh_ready_ms` from the moment the CLI was spawned. The
//!    daemon starts this program as QEMU (`qemu_bin`); it writes down the
//!    moment it started and execs the real QEMU, which gives `pre_spawn_ms`
//!    to the microsecond (the bare path starts QEMU the same way).
//! 2. Capture the VM's exact QEMU and vhost-device-vsock command lines and
//!    its per-VM initrd, then delete the VM.
//! 3. **bare**: `banger vm create --no-start` a second VM only to get pristine
//!    disks made exactly as banger makes them (so both boots are first
//!    boots), then start the captured command lines ourselves with that VM's
//!    disks, our copy of the initrd and a TAP of our own on the same bridge
//!    (created once, outside the clock, like banger's TAP pool), and poll SSH
//!    the same way from the moment vhost-device-vsock is spawned
//!    (`bare_ssh_ready_ms`). Kill it and delete the second VM.
//!
//! SSH readiness is detected with the daemon's own probe on both paths
//! (see [`ssh_ready_at`]).
//!
//! - `host_overhead_ms` = `pre_spawn_ms + ready_report_ms - bare_pre_spawn_ms`:
//!   what banger spends outside the VMM's own boot: everything before QEMU
//!   runs (API call, disks, TAP, initrd, vsock helper, spawn) plus the time
//!   from the guest's banner to the CLI returning (the daemon's readiness
//!   polling and the reply), minus what the bare script needs to spawn QEMU.
//! - `end_to_end_overhead_ms` = `create_ms - bare_ssh_ready_ms`: the same
//!   plus the difference between the two guest boots, which under TCG is
//!   noise of a second or more either way.
//! - `ssh_ready_ratio` = `ssh_ready_ms / bare_ssh_ready_ms`.
//!
//! Binaries: `banger`/`bangerd` next to this example's profile dir
//! (`<target>/<profile>/`) or `BANGER_BIN`/`BANGERD_BIN`; the static agent
//! from `BANGER_AGENT_BIN` or `<target>/x86_64-unknown-linux-gnu/<profile>/`
//! (`scripts/build-agent.sh`). Everything started is killed on success,
//! failure and Ctrl-C.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use banger_testkit::TestEnv;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The TAP the bare runs use; created once in our namespace.
const BARE_TAP: &str = "bgbench0";
/// How long a guest may take to answer SSH (TCG boots take 20-45 s).
const SSH_TIMEOUT: Duration = Duration::from_secs(300);
/// The daemon's SSH poll intervals (banger_host::ssh::wait), for the
/// report: while the guest's address does not answer, and once the guest
/// refuses connections.
const SSH_POLL_MS: u64 = 100;
const SSH_POLL_REFUSED_MS: u64 = 5;
/// The catalog kernel the default image boots.
const KERNEL: &str = "debian-cloud-amd64";
/// How often the bare path checks for vhost-device-vsock's socket: finer
/// than banger's, so the bare line is a fair "best a script could do".
const BARE_SOCKET_POLL: Duration = Duration::from_millis(1);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, BoxError>;

struct Options {
    iterations: usize,
    warmup: usize,
    rootfs: Option<PathBuf>,
    work_seed: Option<PathBuf>,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        iterations: 5,
        warmup: 1,
        rootfs: None,
        work_seed: None,
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
            "--rootfs" => options.rootfs = args.next().map(PathBuf::from),
            "--work-seed" => options.work_seed = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                eprintln!(
                    "usage: bench_create [--iterations N (default 5)] [--warmup N (default 1)] [--rootfs PATH --work-seed PATH]"
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

/// Set (to the real QEMU) when this program is started as QEMU: it then
/// records when it started and becomes that QEMU (see [`stamp_and_exec`]).
const STAMP_EXEC_VAR: &str = "BENCH_STAMP_EXEC";
/// Where those start times go, one file per pid.
const STAMP_DIR_VAR: &str = "BENCH_STAMP_DIR";

fn main() -> ExitCode {
    if let Some(real) = std::env::var_os(STAMP_EXEC_VAR) {
        return stamp_and_exec(&real);
    }
    let options = match parse_options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if !rustix::process::geteuid().is_root() {
        eprintln!(
            "error: bench_create needs root (it creates a bridge and TAPs in its own network namespace)"
        );
        return ExitCode::from(2);
    }
    // Before any thread exists, so every thread and child (CLI, daemon,
    // VMMs, `ip`) inherits the private namespace.
    // SAFETY: unshare takes no pointers; CLONE_NEWNET only changes this
    // (still single-threaded) process's network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        eprintln!(
            "error: unshare(CLONE_NEWNET) failed: {}",
            std::io::Error::last_os_error()
        );
        return ExitCode::from(2);
    }
    let bench = match Bench::new() {
        Ok(bench) => bench,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = run(&bench, &options) => result,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
        }
    });
    drop(runtime);
    bench.cleanup();
    match outcome {
        Ok(report) => {
            let text = serde_json::to_string_pretty(&report).expect("a JSON report");
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

/// Run as QEMU (banger's `qemu_bin` and the bare path both start this
/// program with [`STAMP_EXEC_VAR`] naming the real one): writes the
/// CLOCK_BOOTTIME nanoseconds of this moment to `$BENCH_STAMP_DIR/<pid>`
/// and execs the real QEMU with the same arguments and pid. `/proc`'s
/// start time counts in 10 ms ticks, too coarse for a 30 ms target; both
/// paths pay the same extra exec, after the stamp.
fn stamp_and_exec(real: &OsStr) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let now = boottime_now();
    if let Some(dir) = std::env::var_os(STAMP_DIR_VAR) {
        let path = Path::new(&dir).join(std::process::id().to_string());
        if let Err(error) = fs_err::write(&path, now.as_nanos().to_string()) {
            eprintln!("bench_create (as QEMU): {error}");
            return ExitCode::FAILURE;
        }
    }
    let error = std::process::Command::new(real)
        .args(std::env::args_os().skip(1))
        .env_remove(STAMP_EXEC_VAR)
        .env_remove(STAMP_DIR_VAR)
        .exec();
    eprintln!(
        "bench_create (as QEMU): cannot run {}: {error}",
        real.to_string_lossy()
    );
    ExitCode::FAILURE
}

/// The isolated environment and the binaries.
struct Bench {
    env: TestEnv,
    banger: PathBuf,
    bangerd: PathBuf,
    agent: Option<PathBuf>,
    /// Our own files for the bare runs (initrd copy, sockets, console).
    bare_dir: PathBuf,
    /// The real QEMU, which this program execs when started as QEMU.
    qemu: PathBuf,
    /// This program, started as QEMU (see [`stamp_and_exec`]).
    exe: PathBuf,
    /// Where the QEMU start stamps go.
    stamp_dir: PathBuf,
}

impl Bench {
    fn new() -> Result<Self> {
        let exe = std::env::current_exe()?;
        // <target>/<profile>/examples/bench_create
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .ok_or("cannot find the target profile dir")?
            .to_owned();
        let profile = profile_dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "release".to_owned());
        let binary = |var: &str, name: &str| -> Result<PathBuf> {
            let path = std::env::var_os(var)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| profile_dir.join(name));
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "{} is missing: build it with `cargo build --{profile} -p banger-cli -p bangerd` in the same CARGO_TARGET_DIR, or set {var}",
                    path.display()
                )
                .into())
            }
        };
        let banger = binary("BANGER_BIN", "banger")?;
        let bangerd = binary("BANGERD_BIN", "bangerd")?;
        let agent = std::env::var_os("BANGER_AGENT_BIN")
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                let target = profile_dir.parent()?;
                Some(
                    target
                        .join("x86_64-unknown-linux-gnu")
                        .join(&profile)
                        .join("banger-vsock-agent"),
                )
            })
            .filter(|path| path.is_file());
        let env = TestEnv::new().with_shared_cache();
        let bare_dir = env.root().join("bare");
        fs_err::create_dir_all(&bare_dir)?;
        let stamp_dir = env.root().join("qemu-starts");
        fs_err::create_dir_all(&stamp_dir)?;
        let qemu = banger_host::tools::find_program(Path::new("qemu-system-x86_64"))
            .ok_or("qemu-system-x86_64 is not on PATH (scripts/install-deps.sh installs it)")?;
        Ok(Self {
            env,
            banger,
            bangerd,
            agent,
            bare_dir,
            qemu,
            stamp_dir,
            exe,
        })
    }

    /// A `banger` command that sees only this environment (TestEnv's
    /// variables, but with binaries that need not sit next to a test).
    fn banger(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = std::process::Command::new(&self.banger);
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("BANGER_") || name.starts_with("XDG_") {
                command.env_remove(name.as_ref());
            }
        }
        let paths = self.env.paths();
        command
            .env("HOME", self.env.root().join("home"))
            .env("BANGER_CONFIG_DIR", &paths.config_dir)
            .env("BANGER_STATE_DIR", &paths.state_dir)
            .env("BANGER_CACHE_DIR", &paths.cache_dir)
            .env("BANGER_RUNTIME_DIR", &paths.runtime_dir)
            .env("BANGER_DAEMON_BIN", &self.bangerd)
            // QEMU is the backend that boots guests here; the comparison is
            // against a QEMU command line anyway.
            .env("BANGER_VMM", "qemu")
            // The daemon's step timings (see `daemon_steps`).
            .env("BANGER_LOG_LEVEL", "debug");
        self.as_qemu(&mut command);
        if let Some(agent) = &self.agent {
            command.env("BANGER_AGENT_BIN", agent);
        }
        command.args(args).stdin(Stdio::null());
        command.into()
    }

    /// Makes `command` (or the daemon it starts) start this program as
    /// QEMU, so QEMU's start is stamped (see [`stamp_and_exec`]).
    fn as_qemu(&self, command: &mut std::process::Command) {
        command
            .env("BANGER_QEMU_BIN", &self.exe)
            .env(STAMP_EXEC_VAR, &self.qemu)
            .env(STAMP_DIR_VAR, &self.stamp_dir);
    }

    /// When QEMU process `pid` started (CLOCK_BOOTTIME), from its stamp.
    fn qemu_start(&self, pid: u32) -> Result<Duration> {
        let path = self.stamp_dir.join(pid.to_string());
        let nanos: u64 = fs_err::read_to_string(&path)?.trim().parse()?;
        Ok(Duration::from_nanos(nanos))
    }

    /// Runs a `banger` command to completion; its stdout on success.
    async fn banger_ok(&self, args: &[&str]) -> Result<String> {
        let output = self
            .banger(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await?;
        if !output.status.success() {
            return Err(format!(
                "banger {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Kills everything this run started: the daemon (found by its
    /// environment), then every process whose command line or environment
    /// points into our temp dir (VMMs, vsock helpers, console copiers, the
    /// bare runs). With them gone the network namespace, its bridge and
    /// TAPs disappear; dropping the TestEnv removes the temp dir.
    fn cleanup(self) {
        let root = self.env.root().as_os_str().as_bytes().to_owned();
        let marker = format!(
            "BANGER_RUNTIME_DIR={}",
            self.env.paths().runtime_dir.display()
        );
        let me = std::process::id();
        for _round in 0..20 {
            let mut found = false;
            for pid in all_pids() {
                if pid == me {
                    continue;
                }
                let dir = PathBuf::from(format!("/proc/{pid}"));
                let cmdline = fs_err::read(dir.join("cmdline")).unwrap_or_default();
                let environ = fs_err::read(dir.join("environ")).unwrap_or_default();
                let ours = contains(&cmdline, &root)
                    || environ
                        .split(|byte| *byte == 0)
                        .any(|pair| pair == marker.as_bytes());
                if ours && !is_zombie(pid) {
                    found = true;
                    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
            }
            if !found {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(self.env);
    }
}

fn all_pids() -> Vec<u32> {
    fs_err::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn is_zombie(pid: u32) -> bool {
    fs_err::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            Some(rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

fn replace_bytes(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while !from.is_empty() && rest.len() >= from.len() {
        if rest.starts_with(from) {
            out.extend_from_slice(to);
            rest = &rest[from.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out.extend_from_slice(rest);
    out
}

/// Milliseconds as a float with microsecond precision.
fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// CLOCK_BOOTTIME now: the clock `/proc/<pid>/stat` start times count in.
fn boottime_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, owned `ts`.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(result, 0, "clock_gettime(CLOCK_BOOTTIME)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `/proc/<pid>/cmdline` split into arguments, and the executable.
fn command_line(pid: u32) -> Result<(PathBuf, Vec<OsString>)> {
    let raw = fs_err::read(format!("/proc/{pid}/cmdline"))?;
    let mut args: Vec<OsString> = raw
        .split(|byte| *byte == 0)
        .map(|arg| OsString::from_vec(arg.to_vec()))
        .collect();
    if args.last().is_some_and(|arg| arg.is_empty()) {
        args.pop();
    }
    if args.is_empty() {
        return Err(format!("process {pid} has no command line (exited?)").into());
    }
    args.remove(0);
    let exe = fs_err::read_link(format!("/proc/{pid}/exe"))?;
    Ok((exe, args))
}

/// The running vhost-device-vsock whose arguments mention `run_dir`.
fn find_vhost(run_dir: &Path) -> Result<u32> {
    let needle = run_dir.as_os_str().as_bytes();
    all_pids()
        .into_iter()
        .find(|pid| {
            let comm = fs_err::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cmdline = fs_err::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            comm.starts_with("vhost-device") && contains(&cmdline, needle) && !is_zombie(*pid)
        })
        .ok_or_else(|| format!("no vhost-device-vsock serving {}", run_dir.display()).into())
}

fn run_ip(args: &[&str]) -> Result<String> {
    let output = std::process::Command::new("ip").args(args).output()?;
    if !output.status.success() {
        return Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn text<'a>(value: &'a Value, key: &str) -> Result<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`vm show --json` has no {key}").into())
}

/// Waits until `ip:22` sends an SSH banner with the daemon's own probe
/// (`wait_for_ssh`: an attempt every 100 ms while the address does not
/// answer, every 5 ms once the guest refuses connections), so both paths
/// see the same polling granularity. Overlapping attempts would be finer,
/// but they flood a TCG guest's sshd (MaxStartups) until it stops answering.
async fn ssh_ready_at(ip: Ipv4Addr, timeout: Duration) -> Result<Instant> {
    banger_host::ssh::wait_for_ssh(ip, 22, timeout).await?;
    Ok(Instant::now())
}

/// One banger run: times and what the bare run needs to repeat it.
struct BangerRun {
    create: Duration,
    ssh_ready: Duration,
    pre_spawn: Duration,
    /// From the CLI's progress lines: when the daemon began starting the
    /// VMM and when it reported the VMM running.
    stages: BTreeMap<String, Duration>,
    ip: Ipv4Addr,
    qemu: (PathBuf, Vec<OsString>),
    vhost: (PathBuf, Vec<OsString>),
    run_dir: PathBuf,
    vm_dir: PathBuf,
    tap: String,
    bridge: String,
}

/// Creates `name` through the CLI, timing it and probing SSH on the side.
async fn banger_run(bench: &Bench, name: &str) -> Result<BangerRun> {
    let mut command = bench.banger(&["vm", "create", "--name", name, "--json"]);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let start_boot = boottime_now();
    let mut child = command.spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let stdout_task = tokio::spawn(async move {
        let mut bytes = Vec::new();
        let mut stdout = stdout;
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut bytes).await;
        bytes
    });

    // Progress lines ("stage: message") with their arrival times; the
    // first IPv4 address seen (the "disks" stage names it) starts our own
    // SSH probe long before the guest can answer.
    let (ip_tx, ip_rx) = tokio::sync::oneshot::channel::<Ipv4Addr>();
    let lines_task = tokio::spawn(async move {
        let mut ip_tx = Some(ip_tx);
        let mut stages = BTreeMap::new();
        let mut log = Vec::new();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let at = start.elapsed();
            if let Some((stage, _)) = line.split_once(": ") {
                stages.entry(stage.to_owned()).or_insert(at);
            }
            if ip_tx.is_some() {
                let ip = line
                    .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .find_map(|word| word.parse::<Ipv4Addr>().ok());
                if let (Some(ip), Some(tx)) = (ip, ip_tx.take()) {
                    let _ = tx.send(ip);
                }
            }
            log.push(line);
        }
        (stages, log)
    });
    let probe = tokio::spawn(async move {
        let ip = ip_rx
            .await
            .map_err(|_| "the CLI never named the VM's address")?;
        let at = ssh_ready_at(ip, SSH_TIMEOUT).await?;
        Ok::<_, BoxError>((ip, at.duration_since(start)))
    });

    let status = child.wait().await?;
    let create = start.elapsed();
    let (stages, log) = lines_task.await?;
    let stdout = stdout_task.await?;
    if !status.success() {
        probe.abort();
        return Err(format!("banger vm create failed ({status}):\n{}", log.join("\n")).into());
    }
    // The daemon has seen the banner, so ours is due within one interval.
    let (ip, ssh_ready) = tokio::time::timeout(Duration::from_secs(10), probe)
        .await
        .map_err(|_| "our SSH probe did not see the banner the daemon saw")??
        .map_err(|error| format!("our SSH probe failed: {error}"))?;
    let created: Value = serde_json::from_slice(&stdout)?;
    let pid = created
        .get("pid")
        .and_then(Value::as_u64)
        .ok_or("the created VM has no pid")? as u32;
    let vm_dir = PathBuf::from(text(&created, "dir")?);
    let tap = text(&created, "tap")?.to_owned();
    let shown_ip: Ipv4Addr = text(&created, "ip")?.parse()?;
    if shown_ip != ip {
        return Err(format!("probed {ip} but the VM has {shown_ip}").into());
    }
    let pre_spawn = bench.qemu_start(pid)?.saturating_sub(start_boot);
    let qemu = command_line(pid)?;
    let run_dir = bench.env.paths().runtime_dir.join("vms").join(name);
    let vhost = command_line(find_vhost(&run_dir)?)?;
    // Our copy of the per-VM initrd (the run dir goes away with the VM).
    fs_err::copy(
        run_dir.join("initrd.img"),
        bench.bare_dir.join("initrd.img"),
    )?;
    let link = run_ip(&["-o", "link", "show", "dev", &tap])?;
    let bridge = link
        .split_whitespace()
        .skip_while(|word| *word != "master")
        .nth(1)
        .ok_or_else(|| format!("TAP {tap} is in no bridge: {link}"))?
        .to_owned();
    Ok(BangerRun {
        create,
        ssh_ready,
        pre_spawn,
        stages,
        ip,
        qemu,
        vhost,
        run_dir,
        vm_dir,
        tap,
        bridge,
    })
}

/// Where the daemon says the create of VM `name` spent its time: the
/// `step timings` lines of its debug log (`bangerd::step_timer`) for the
/// `create` and `start` operations, as `create.disks`, `start.vmm`, ... in
/// milliseconds. Each operation's steps add up to its total.
fn daemon_steps(bench: &Bench, name: &str) -> Result<BTreeMap<String, f64>> {
    let log = fs_err::read_to_string(bench.env.paths().log_file())?;
    let mut steps = BTreeMap::new();
    for line in log.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let fields = &entry["fields"];
        if fields["message"] != "step timings" || fields["vm"] != name {
            continue;
        }
        let Some(operation) = fields["operation"].as_str() else {
            continue;
        };
        for word in fields["steps"].as_str().unwrap_or_default().split(' ') {
            let parsed = word.split_once('=').and_then(|(step, took)| {
                let took: f64 = took.strip_suffix("ms")?.parse().ok()?;
                Some((format!("{operation}.{step}"), took))
            });
            if let Some((step, took)) = parsed {
                steps.insert(step, took);
            }
        }
    }
    if steps.is_empty() {
        return Err(format!(
            "the daemon logged no step timings for {name} (is BANGER_LOG_LEVEL=debug reaching it?)"
        )
        .into());
    }
    Ok(steps)
}

/// One bare run's times.
struct BareRun {
    ssh_ready: Duration,
    pre_spawn: Duration,
}

/// Kills a bare-run child on every exit path.
struct KillOnDrop(Option<tokio::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.start_kill();
        }
    }
}

impl KillOnDrop {
    async fn kill(mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill().await;
        }
    }
}

/// Boots the captured command lines with `disks_dir`'s disks.
async fn bare_run(bench: &Bench, run: &BangerRun, disks_dir: &Path) -> Result<BareRun> {
    let bare = &bench.bare_dir;
    for socket in ["vhost-vsock.sock", "vsock.sock", "qmp.sock"] {
        let _ = fs_err::remove_file(bare.join(socket));
    }
    let rewrite = |args: &[OsString]| -> Vec<OsString> {
        args.iter()
            .map(|arg| {
                let mut bytes = arg.as_bytes().to_vec();
                bytes = replace_bytes(
                    &bytes,
                    run.run_dir.as_os_str().as_bytes(),
                    bare.as_os_str().as_bytes(),
                );
                bytes = replace_bytes(
                    &bytes,
                    run.vm_dir.as_os_str().as_bytes(),
                    disks_dir.as_os_str().as_bytes(),
                );
                bytes = replace_bytes(
                    &bytes,
                    format!("ifname={},", run.tap).as_bytes(),
                    format!("ifname={BARE_TAP},").as_bytes(),
                );
                OsString::from_vec(bytes)
            })
            .collect()
    };
    let vhost_args = rewrite(&run.vhost.1);
    let qemu_args = rewrite(&run.qemu.1);
    let socket = vhost_args
        .iter()
        .skip_while(|arg| arg.as_os_str() != OsStr::new("--socket"))
        .nth(1)
        .map(PathBuf::from)
        .ok_or("vhost-device-vsock has no --socket")?;
    let vhost_log = fs_err::File::create(bare.join("vhost-device-vsock.log"))?;
    let console = fs_err::File::create(bare.join("console.log"))?;

    let start = Instant::now();
    let start_boot = boottime_now();
    let vhost = KillOnDrop(Some(
        tokio::process::Command::new(&run.vhost.0)
            .args(&vhost_args)
            .stdin(Stdio::null())
            .stdout(vhost_log.try_clone()?.into_file())
            .stderr(vhost_log.into_file())
            .spawn()?,
    ));
    while !socket.exists() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err("vhost-device-vsock did not create its socket in 10 s".into());
        }
        tokio::time::sleep(BARE_SOCKET_POLL).await;
    }
    let mut qemu = {
        // Started the way banger starts it: through the stamp (which execs
        // run.qemu.0, the real QEMU).
        let mut command = std::process::Command::new(&bench.exe);
        bench.as_qemu(&mut command);
        command
            .env(STAMP_EXEC_VAR, &run.qemu.0)
            .args(&qemu_args)
            .stdin(Stdio::null())
            .stdout(console.try_clone()?.into_file())
            .stderr(console.into_file());
        KillOnDrop(Some(tokio::process::Command::from(command).spawn()?))
    };
    let qemu_pid = qemu
        .0
        .as_ref()
        .and_then(|child| child.id())
        .ok_or("qemu has no pid")?;
    let ready = {
        let child = qemu.0.as_mut().ok_or("qemu handle")?;
        tokio::select! {
            ready = ssh_ready_at(run.ip, SSH_TIMEOUT) => ready.map(|at| at.duration_since(start)).map_err(|error| error.to_string()),
            status = child.wait() => Err(format!(
                "bare qemu exited early ({}); see {}",
                status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                bare.join("console.log").display()
            )),
        }
    };
    let pre_spawn = bench.qemu_start(qemu_pid)?.saturating_sub(start_boot);
    qemu.kill().await;
    vhost.kill().await;
    let ssh_ready = ready?;
    Ok(BareRun {
        ssh_ready,
        pre_spawn,
    })
}

fn stats(values: &[f64]) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    // Nearest-rank percentiles: with 5 samples p50 is the 3rd, p95 the 5th.
    let rank = |p: f64| {
        let index = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[index.clamp(1, sorted.len()) - 1]
    };
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    json!({
        "p50": round(rank(50.0)),
        "p95": round(rank(95.0)),
        "min": round(sorted[0]),
        "max": round(sorted[sorted.len() - 1]),
        "mean": round(mean),
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

/// The default image's root filesystem and work seed: `--rootfs`/`--work-seed`,
/// else the newest default-recipe build cached by banger-image's
/// `image_build` test. `banger image build` cannot run here: it needs the
/// Debian mirror, and everything in this run stays in its own network
/// namespace, which has no way out.
fn image_files(bench: &Bench, options: &Options) -> Result<(PathBuf, PathBuf)> {
    if let (Some(rootfs), Some(seed)) = (&options.rootfs, &options.work_seed) {
        return Ok((rootfs.clone(), seed.clone()));
    }
    let cached = bench.env.paths().cache_dir.join("test-images");
    let newest = fs_err::read_dir(&cached)
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| {
                    entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with("image-build-")
                })
                .map(|entry| entry.path())
                .filter(|dir| {
                    dir.join("rootfs.ext4").is_file() && dir.join("work-seed.ext4").is_file()
                })
                .max_by_key(|dir| {
                    fs_err::metadata(dir.join("rootfs.ext4"))
                        .and_then(|meta| meta.modified())
                        .ok()
                })
        })
        .ok()
        .flatten();
    match newest {
        Some(dir) => Ok((dir.join("rootfs.ext4"), dir.join("work-seed.ext4"))),
        None => Err(format!(
            "no cached default image in {}: build one with `cargo test -p banger-image --test image_build` (needs the Debian mirror), or pass --rootfs and --work-seed from a `banger image build`",
            cached.display()
        )
        .into()),
    }
}

async fn run(bench: &Bench, options: &Options) -> Result<Value> {
    run_ip(&["link", "set", "lo", "up"])?;
    eprintln!(
        "bench_create: environment in {}, cache {}",
        bench.env.root().display(),
        bench.env.paths().cache_dir.display()
    );
    if bench.agent.is_none() {
        eprintln!(
            "bench_create: warning: no static guest agent (run scripts/build-agent.sh or set BANGER_AGENT_BIN); guests boot without it"
        );
    }
    bench.banger_ok(&["daemon", "start"]).await?;
    let image = "debian-bookworm";
    let files = image_files(bench, options)?;
    eprintln!(
        "bench_create: registering image {image} from {} (+ its work seed); pulling the default kernel (cached)",
        files.0.display()
    );
    let prepared = Instant::now();
    bench.banger_ok(&["kernel", "pull", KERNEL]).await?;
    let (rootfs, seed) = (files.0.to_string_lossy(), files.1.to_string_lossy());
    bench
        .banger_ok(&[
            "image",
            "register",
            "--name",
            image,
            "--rootfs",
            &rootfs,
            "--work-seed",
            &seed,
            "--kernel-ref",
            KERNEL,
        ])
        .await?;
    eprintln!(
        "bench_create: image ready after {:.1} s",
        prepared.elapsed().as_secs_f64()
    );
    // Our TAP, made once like banger's pool makes spares ahead of time.
    let mut tap_made = false;
    let mut rows = Vec::new();
    let load_start = load_average();
    let mut environment = json!({});
    for index in 0..options.warmup + options.iterations {
        let warmup = index < options.warmup;
        let label = if warmup {
            format!("warm-up {}/{}", index + 1, options.warmup)
        } else {
            format!(
                "iteration {}/{}",
                index + 1 - options.warmup,
                options.iterations
            )
        };
        let name = format!("bench-{index}");
        eprintln!("bench_create: {label}: banger vm create {name}");
        let run = banger_run(bench, &name).await?;
        eprintln!(
            "bench_create: {label}: create {:.0} ms, SSH {:.0} ms, QEMU spawned at {:.0} ms",
            ms(run.create),
            ms(run.ssh_ready),
            ms(run.pre_spawn)
        );
        if index == 0 {
            let accel = run
                .qemu
                .1
                .windows(2)
                .find(|pair| pair[0] == "-accel")
                .map(|pair| pair[1].to_string_lossy().into_owned());
            let arg_after = |flag: &str| {
                run.qemu
                    .1
                    .windows(2)
                    .find(|pair| pair[0] == flag)
                    .map(|pair| pair[1].to_string_lossy().into_owned())
            };
            let qemu_version = std::process::Command::new(&run.qemu.0)
                .arg("--version")
                .output()
                .ok()
                .and_then(|out| {
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .next()
                        .map(str::to_owned)
                });
            environment = json!({
                "accel": accel,
                "host_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                "host_kernel": fs_err::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default(),
                "qemu": qemu_version,
                "qemu_bin": run.qemu.0,
                "vm_vcpus": arg_after("-smp"),
                "vm_memory": arg_after("-m"),
                "image": image,
                "iterations": options.iterations,
                "warmup_iterations": options.warmup,
                "ssh_poll_interval_ms": SSH_POLL_MS,
                "ssh_poll_interval_refused_ms": SSH_POLL_REFUSED_MS,
                "guest_agent": bench.agent.is_some(),
            });
        }
        if !tap_made {
            run_ip(&["tuntap", "add", "dev", BARE_TAP, "mode", "tap", "vnet_hdr"])?;
            run_ip(&["link", "set", BARE_TAP, "master", &run.bridge, "up"])?;
            tap_made = true;
        }
        bench.banger_ok(&["vm", "delete", "--force", &name]).await?;

        // Pristine disks, made by banger exactly as for a real create.
        let disks = format!("bench-{index}-bare");
        let shown = bench
            .banger_ok(&["vm", "create", "--no-start", "--json", "--name", &disks])
            .await?;
        let shown: Value = serde_json::from_str(&shown)?;
        let disks_dir = PathBuf::from(text(&shown, "dir")?);
        eprintln!("bench_create: {label}: bare QEMU with the same command line");
        let bare = bare_run(bench, &run, &disks_dir).await;
        bench
            .banger_ok(&["vm", "delete", "--force", &disks])
            .await?;
        let bare = bare?;
        eprintln!(
            "bench_create: {label}: bare SSH {:.0} ms (QEMU spawned at {:.0} ms)",
            ms(bare.ssh_ready),
            ms(bare.pre_spawn),
        );
        if warmup {
            continue;
        }
        let stage = |name: &str| run.stages.get(name).map(|at| ms(*at));
        rows.push(json!({
            "create_ms": ms(run.create),
            "ssh_ready_ms": ms(run.ssh_ready),
            "bare_ssh_ready_ms": ms(bare.ssh_ready),
            "host_overhead_ms": ms(run.pre_spawn) + ms(run.create.saturating_sub(run.ssh_ready)) - ms(bare.pre_spawn),
            "end_to_end_overhead_ms": ms(run.create) - ms(bare.ssh_ready),
            "ssh_ready_ratio": run.ssh_ready.as_secs_f64() / bare.ssh_ready.as_secs_f64(),
            "pre_spawn_ms": ms(run.pre_spawn),
            "bare_pre_spawn_ms": ms(bare.pre_spawn),
            "guest_boot_ms": ms(run.ssh_ready.saturating_sub(run.pre_spawn)),
            "bare_guest_boot_ms": ms(bare.ssh_ready.saturating_sub(bare.pre_spawn)),
            "ready_report_ms": ms(run.create.saturating_sub(run.ssh_ready)),
            "stage_boot_ms": stage("boot"),
            "stage_ssh_ms": stage("ssh"),
            "stage_ready_ms": stage("ready"),
            "daemon_steps_ms": daemon_steps(bench, &name)?,
        }));
    }
    if tap_made {
        let _ = run_ip(&["link", "delete", BARE_TAP]);
    }

    let column = |key: &str| -> Vec<f64> {
        rows.iter()
            .filter_map(|row| row.get(key).and_then(Value::as_f64))
            .collect()
    };
    let mut summary = serde_json::Map::new();
    for key in [
        "create_ms",
        "ssh_ready_ms",
        "bare_ssh_ready_ms",
        "host_overhead_ms",
        "end_to_end_overhead_ms",
        "ssh_ready_ratio",
        "pre_spawn_ms",
        "bare_pre_spawn_ms",
        "guest_boot_ms",
        "bare_guest_boot_ms",
        "ready_report_ms",
    ] {
        let mut values = column(key);
        if key == "ssh_ready_ratio" {
            // Ratios need more than one decimal.
            values.iter_mut().for_each(|v| *v *= 1000.0);
            let mut value = stats(&values);
            if let Some(object) = value.as_object_mut() {
                for v in object.values_mut() {
                    if let Some(x) = v.as_f64() {
                        *v = json!((x).round() / 1000.0);
                    }
                }
            }
            summary.insert(key.to_owned(), value);
        } else {
            summary.insert(key.to_owned(), stats(&values));
        }
    }
    let step_names: std::collections::BTreeSet<String> = rows
        .iter()
        .filter_map(|row| row.get("daemon_steps_ms").and_then(Value::as_object))
        .flat_map(|steps| steps.keys().cloned())
        .collect();
    let mut steps_summary = serde_json::Map::new();
    for step in step_names {
        let values: Vec<f64> = rows
            .iter()
            .filter_map(|row| row.get("daemon_steps_ms")?.get(&step)?.as_f64())
            .collect();
        steps_summary.insert(step, stats(&values));
    }
    summary.insert("daemon_steps_ms".to_owned(), Value::Object(steps_summary));
    let p50 = |key: &str| {
        summary
            .get(key)
            .and_then(|s| s.get("p50"))
            .and_then(Value::as_f64)
    };
    let overhead_p50 = p50("host_overhead_ms");
    let ssh_ratio_p50 = match (p50("ssh_ready_ms"), p50("bare_ssh_ready_ms")) {
        (Some(banger), Some(bare)) if bare > 0.0 => Some(banger / bare),
        _ => None,
    };
    if let Some(object) = environment.as_object_mut() {
        object.insert("load_average_start".into(), json!(load_start));
        object.insert("load_average_end".into(), json!(load_average()));
    }
    Ok(json!({
        "benchmark": "bench_create",
        "environment": environment,
        "create_ms": p50("create_ms"),
        "ssh_ready_ms": p50("ssh_ready_ms"),
        "host_overhead_ms": overhead_p50,
        "targets": {
            "host_overhead_ms_p50_below": 30,
            "host_overhead_met": overhead_p50.map(|v| v < 30.0),
            "ssh_ready_within_of_bare": 0.05,
            "ssh_ready_p50_ratio": ssh_ratio_p50.map(|r| (r * 1000.0).round() / 1000.0),
            "ssh_ready_met": ssh_ratio_p50.map(|r| r <= 1.05),
        },
        "summary": summary,
        "iterations": rows,
    }))
}
