//! Benchmark: `banger_workspace::prepare` against the `git archive HEAD |
//! ssh VM tar -x` baseline, alternating, on a generated repository.
//!
//! ```text
//! cargo run --release -p banger-workspace --example bench_prepare -- --vm devbox
//! cargo run --release -p banger-workspace --example bench_prepare -- --fake-local
//! ```
//!
//! Options: `--iterations N` (3), `--files N` (10000), `--mib N` (200),
//! `--repo DIR` (reuse or create the generated repository there),
//! `--guest-root DIR` (where run directories go; `/root/banger-bench` in a
//! VM, a temp dir with `--fake-local`, e.g. `/dev/shm/x` to leave the
//! disk out of a local measurement). Prints
//! one JSON object; see `docs/workspaces.md`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use banger_host::ssh::{SshTarget, TtyMode, ssh_command};
use banger_workspace::{PlanError, PrepareError, PrepareOptions, plan, prepare};

const FAKE_SSH: &str = include_str!("../tests/fake_ssh.sh");

struct Args {
    vm: Option<String>,
    fake_local: bool,
    iterations: usize,
    files: usize,
    mib: usize,
    repo: Option<PathBuf>,
    guest_root: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        vm: None,
        fake_local: false,
        iterations: 3,
        files: 10_000,
        mib: 200,
        repo: None,
        guest_root: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next().ok_or_else(|| BenchError::MissingValue {
                option: arg.clone(),
            })
        };
        match arg.as_str() {
            "--vm" => args.vm = Some(value()?),
            "--fake-local" => args.fake_local = true,
            "--iterations" => args.iterations = parse("--iterations", &value()?)?,
            "--files" => args.files = parse("--files", &value()?)?,
            "--mib" => args.mib = parse("--mib", &value()?)?,
            "--repo" => args.repo = Some(PathBuf::from(value()?)),
            "--guest-root" => args.guest_root = Some(value()?),
            other => {
                return Err(BenchError::UnknownArgument {
                    argument: other.to_owned(),
                });
            }
        }
    }
    if args.vm.is_some() == args.fake_local {
        return Err(BenchError::Mode);
    }
    Ok(args)
}

/// Parses `text` as the count given to `option`.
fn parse(option: &'static str, text: &str) -> Result<usize> {
    text.parse().map_err(|source| BenchError::NotANumber {
        option,
        value: text.to_owned(),
        source,
    })
}

/// Why the benchmark stopped. `main` prints it with its causes.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    /// An option was given without its value.
    #[error("{option} needs a value")]
    MissingValue {
        /// The option.
        option: String,
    },
    /// An argument this tool does not know.
    #[error("unknown argument {argument}")]
    UnknownArgument {
        /// The argument.
        argument: String,
    },
    /// Neither or both of `--vm` and `--fake-local`.
    #[error("pass exactly one of --vm NAME or --fake-local")]
    Mode,
    /// A count option's value is not a number.
    #[error("invalid {option} {value:?}")]
    NotANumber {
        /// The option.
        option: &'static str,
        /// The value given.
        value: String,
        /// The parse error.
        source: std::num::ParseIntError,
    },
    /// A file operation failed (`fs_err` errors name the path).
    #[error(transparent)]
    Fs(#[from] std::io::Error),
    /// The scratch directory could not be created.
    #[error("cannot create a temporary directory")]
    TempDir(#[source] std::io::Error),
    /// A program could not be started or waited for.
    #[error("cannot run {command}")]
    Spawn {
        /// The command line (`Debug` form).
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A program exited unsuccessfully.
    #[error("{command} failed: {status}")]
    Failed {
        /// The command line (`Debug` form).
        command: String,
        /// How it exited.
        status: ExitStatus,
    },
    /// `banger vm show NAME --json` failed.
    #[error("banger vm show {name} failed: {stderr}")]
    VmShow {
        /// The VM.
        name: String,
        /// What banger printed on stderr.
        stderr: String,
    },
    /// `banger vm show --json` printed something else than a VM.
    #[error("vm show JSON")]
    VmShowJson(#[source] serde_json::Error),
    /// `git archive` was spawned without a stdout pipe.
    #[error("git archive: no stdout")]
    NoArchiveStdout,
    /// The `git archive | ssh tar -x` baseline failed.
    #[error("baseline failed: ssh {ssh}, git archive {archive}")]
    Baseline {
        /// How ssh exited.
        ssh: ExitStatus,
        /// How git archive exited.
        archive: ExitStatus,
    },
    /// Planning the workspace failed.
    #[error("cannot plan the workspace")]
    Plan(#[from] PlanError),
    /// Sending the workspace failed.
    #[error("cannot prepare the workspace")]
    Prepare(#[from] PrepareError),
}

type Result<T> = std::result::Result<T, BenchError>;

/// xorshift64*: deterministic, fast, good enough for fake source text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Writes `files` source-like files totalling about `mib` MiB and commits them.
fn generate(repo: &Path, files: usize, mib: usize) -> Result<()> {
    let mut rng = Rng(0x5eed_ba4e_0000_0001);
    let vocabulary: Vec<String> = (0..4000)
        .map(|_| {
            let len = 3 + rng.below(10) as usize;
            (0..len)
                .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz_"[rng.below(27) as usize]))
                .collect()
        })
        .collect();
    let keywords = [
        "fn", "let", "pub", "struct", "impl", "match", "return", "if", "for",
    ];
    let per_file = mib * (1 << 20) / files.max(1);
    for i in 0..files {
        let dir = repo.join(format!("src/m{:02}/p{}", i % 50, i % 7));
        fs_err::create_dir_all(&dir)?;
        // Like real code, a file mostly repeats its own few identifiers:
        // zlib gets it to ~27% (this repository's Rust: ~23%).
        let local: Vec<&str> = (0..48)
            .map(|_| vocabulary[rng.below(vocabulary.len() as u64) as usize].as_str())
            .collect();
        let mut text = String::with_capacity(per_file + 128);
        while text.len() < per_file {
            for _ in 0..rng.below(4) {
                text.push_str("    ");
            }
            text.push_str(keywords[rng.below(keywords.len() as u64) as usize]);
            for _ in 0..2 + rng.below(8) {
                text.push(' ');
                if rng.below(8) == 0 {
                    text.push_str(&vocabulary[rng.below(vocabulary.len() as u64) as usize]);
                } else {
                    text.push_str(local[rng.below(local.len() as u64) as usize]);
                }
            }
            text.push_str(";\n");
        }
        let path = dir.join(format!("file{i}.rs"));
        fs_err::write(&path, text)?;
    }
    run(Command::new("git").arg("-C").arg(repo).args(["add", "-A"]))?;
    run(Command::new("git").arg("-C").arg(repo).args([
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@example.com",
        "commit",
        "-q",
        "-m",
        "generated",
    ]))
}

fn run(command: &mut Command) -> Result<()> {
    let status = command.status().map_err(|source| BenchError::Spawn {
        command: format!("{command:?}"),
        source,
    })?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| BenchError::Failed {
            command: format!("{command:?}"),
            status,
        })
}

/// ssh details of a running VM from `banger vm show NAME --json`.
fn vm_target(name: &str) -> Result<SshTarget> {
    let banger = std::env::var_os("BANGER_BIN").unwrap_or_else(|| "banger".into());
    let output = Command::new(&banger)
        .args(["vm", "show", name, "--json"])
        .output()
        .map_err(|source| BenchError::Spawn {
            command: "banger vm show".into(),
            source,
        })?;
    if !output.status.success() {
        return Err(BenchError::VmShow {
            name: name.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let vm: banger_api::vms::VmInfo =
        serde_json::from_slice(&output.stdout).map_err(BenchError::VmShowJson)?;
    Ok(SshTarget {
        user: vm.ssh.user,
        ip: vm.ssh.ip,
        port: banger_host::ssh::command::DEFAULT_PORT,
        alias: vm.ssh.host_alias,
        identity: vm.ssh.identity.into(),
        known_hosts: vm.ssh.known_hosts.into(),
    })
}

fn remote(ssh: &Path, target: &SshTarget, script: &str, arg: &str) -> Command {
    let argv = [
        "sh".to_owned(),
        "-c".to_owned(),
        script.to_owned(),
        "sh".to_owned(),
        arg.to_owned(),
    ];
    ssh_command(ssh, target, &argv, TtyMode::Batch)
}

fn baseline(repo: &Path, ssh: &Path, target: &SshTarget, dest: &str) -> Result<()> {
    let mut archive = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["archive", "HEAD"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|source| BenchError::Spawn {
            command: "git archive".into(),
            source,
        })?;
    let stdout = archive.stdout.take().ok_or(BenchError::NoArchiveStdout)?;
    let status = remote(ssh, target, "mkdir -p \"$1\" && tar -x -C \"$1\"", dest)
        .stdin(stdout)
        .status()
        .map_err(|source| BenchError::Spawn {
            command: "ssh".into(),
            source,
        })?;
    let archived = archive.wait().map_err(|source| BenchError::Spawn {
        command: "git archive".into(),
        source,
    })?;
    (status.success() && archived.success())
        .then_some(())
        .ok_or(BenchError::Baseline {
            ssh: status,
            archive: archived,
        })
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> std::process::ExitCode {
    match bench() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "bench_prepare: {}",
                banger_host::error_chain(&error)
            );
            std::process::ExitCode::FAILURE
        }
    }
}

fn bench() -> Result<()> {
    let args = parse_args()?;
    let scratch = tempfile::tempdir().map_err(BenchError::TempDir)?;
    let repo = args
        .repo
        .clone()
        .unwrap_or_else(|| scratch.path().join("repo"));
    if !repo.join(".git").exists() {
        fs_err::create_dir_all(&repo)?;
        run(Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["init", "-q"]))?;
        let started = Instant::now();
        generate(&repo, args.files, args.mib)?;
        let _ = writeln!(
            std::io::stderr(),
            "generated {} in {:.1}s",
            repo.display(),
            started.elapsed().as_secs_f64()
        );
    }
    let (ssh, target, guest_root) = if args.fake_local {
        let ssh = scratch.path().join("ssh");
        fs_err::write(&ssh, FAKE_SSH)?;
        fs_err::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755))?;
        let target = SshTarget {
            user: "root".into(),
            ip: std::net::Ipv4Addr::LOCALHOST,
            port: 22,
            alias: "fake-local.vm".into(),
            identity: scratch.path().join("id"),
            known_hosts: scratch.path().join("known_hosts"),
        };
        let guest = args
            .guest_root
            .clone()
            .unwrap_or_else(|| scratch.path().join("guest").to_string_lossy().into_owned());
        (ssh, target, guest)
    } else {
        let name = args.vm.clone().unwrap_or_default();
        let ssh = std::env::var_os("BANGER_SSH_BIN").map_or_else(|| "ssh".into(), PathBuf::from);
        let guest = args
            .guest_root
            .clone()
            .unwrap_or_else(|| "/root/banger-bench".to_owned());
        (ssh, vm_target(&name)?, guest)
    };
    let cleanup = |dir: &str| run(&mut remote(&ssh, &target, "rm -rf -- \"$1\"", dir));

    let mut prepare_ms = Vec::new();
    let mut plan_ms = Vec::new();
    let mut archive_ms = Vec::new();
    let mut bytes = 0;
    let mut files = 0;
    for i in 0..args.iterations {
        // Alternate which side goes first so warm caches favour neither.
        for which in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            let dest = format!("{guest_root}/run-{i}-{which}");
            cleanup(&dest)?;
            let started = Instant::now();
            if which == 0 {
                let options = PrepareOptions {
                    guest_path: dest.clone(),
                    ..PrepareOptions::default()
                };
                let plan = plan(&repo, &options)?;
                plan_ms.push(started.elapsed().as_secs_f64() * 1000.0);
                let report = prepare(&plan, &ssh, &target, &mut |_| {})?;
                prepare_ms.push(started.elapsed().as_secs_f64() * 1000.0);
                bytes = report.bytes;
                files = report.files;
            } else {
                baseline(&repo, &ssh, &target, &dest)?;
                archive_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            cleanup(&dest)?;
        }
    }
    let (p, a) = (median(&prepare_ms), median(&archive_ms));
    let ratio = if a > 0.0 { p / a } else { 0.0 };
    let report = serde_json::json!({
        "mode": if args.fake_local { "fake-local" } else { "vm" },
        "repo_files": args.files,
        "repo_mib": args.mib,
        "sent_entries": files,
        "sent_bytes": bytes,
        "prepare_ms": prepare_ms,
        "plan_ms_of_prepare": plan_ms,
        "archive_ms": archive_ms,
        "median_prepare_ms": p,
        "median_archive_ms": a,
        "ratio": ratio,
        "target": 1.2,
        "pass": ratio <= 1.2,
    });
    let _ = writeln!(std::io::stdout(), "{report:#}");
    Ok(())
}
