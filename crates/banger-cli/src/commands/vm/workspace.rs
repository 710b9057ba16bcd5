//! `vm workspace prepare|pull`: a git checkout into a VM and the guest's
//! work back, through `banger-workspace` (one tar stream over one ssh; a
//! git bundle back). The daemon only tells us how to reach the VM.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use banger_api::vms::VmInfo;
use banger_config::Paths;
use banger_workspace::{Mode, Plan, PrepareOptions, PrepareReport, PullOptions, PullOutcome};
use indicatif::{ProgressBar, ProgressStyle};

use super::ssh::{require_running, ssh_program, ssh_target};
use crate::args::{WorkspaceCommand, WorkspaceMode, WorkspacePrepareArgs, WorkspacePullArgs};
use crate::output;

pub async fn run(paths: &Paths, command: WorkspaceCommand) -> anyhow::Result<ExitCode> {
    match command {
        WorkspaceCommand::Prepare(args) => prepare_command(paths, args).await,
        WorkspaceCommand::Pull(args) => pull_command(paths, args).await,
    }
}

async fn prepare_command(paths: &Paths, args: WorkspacePrepareArgs) -> anyhow::Result<ExitCode> {
    let name = args.vm;
    let options = PrepareOptions {
        guest_path: args.guest_path.clone(),
        mode: match args.mode {
            WorkspaceMode::Shallow => Mode::Shallow,
            WorkspaceMode::FullCopy => Mode::FullCopy,
        },
        include_untracked: args.include_untracked,
        readonly: args.readonly,
        branch: None,
        from: None,
    };
    let plan = make_plan(&args.path, options).await?;
    if args.dry_run {
        let files = plan.files();
        if args.json {
            let files: Vec<String> = files
                .iter()
                .map(|file| file.display().to_string())
                .collect();
            output::json(&files)?;
        } else {
            // Escaped: a file name must not forge lines or drive the terminal.
            for line in plan.listing() {
                output::line(&line)?;
            }
        }
        eprintln!(
            "{} entries would be sent to {}:{} ({} mode); nothing was sent",
            files.len(),
            name,
            plan.options().guest_path,
            plan.options().mode
        );
        return Ok(ExitCode::SUCCESS);
    }
    let client = super::super::connect(paths).await?;
    let vm = client.vm(&name).await?;
    let report = send(&vm, plan).await?;
    if args.json {
        output::json(&report_json(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Inspects the checkout (git runs, so off the async runtime).
pub async fn make_plan(path: &Path, options: PrepareOptions) -> anyhow::Result<Plan> {
    let path = path.to_owned();
    Ok(tokio::task::spawn_blocking(move || banger_workspace::plan(&path, &options)).await??)
}

/// Sends a planned checkout into a running VM, with a progress bar on a
/// terminal and a summary line on stderr.
pub async fn send(vm: &VmInfo, plan: Plan) -> anyhow::Result<PrepareReport> {
    require_running(vm)?;
    let target = ssh_target(vm);
    let program = ssh_program();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} copying {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    let progress_bar = bar.clone();
    let report = tokio::task::spawn_blocking(move || {
        banger_workspace::prepare(&plan, &program, &target, &mut |progress| {
            if let Some(bar) = &progress_bar {
                bar.set_message(format!(
                    "{}/{} entries, {}",
                    progress.files_sent,
                    progress.files_total,
                    super::human_bytes(progress.bytes_sent)
                ));
            }
        })
    })
    .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = report?;
    eprintln!(
        "copied {} entries ({}) to {}:{} in {:.1} s, at {}{}",
        report.files,
        super::human_bytes(report.bytes),
        vm.name,
        report.guest_path,
        report.elapsed.as_secs_f64(),
        short(&report.head),
        report
            .branch
            .as_deref()
            .map(|branch| format!(" on branch {branch}"))
            .unwrap_or_else(|| " (detached)".to_owned())
    );
    Ok(report)
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn report_json(report: &PrepareReport) -> serde_json::Value {
    serde_json::json!({
        "guest_path": report.guest_path,
        "entries": report.files,
        "bytes": report.bytes,
        "elapsed_ms": report.elapsed.as_millis() as u64,
        "head": report.head,
        "branch": report.branch,
    })
}

async fn pull_command(paths: &Paths, args: WorkspacePullArgs) -> anyhow::Result<ExitCode> {
    let name = args.vm;
    let host_path = match args.path {
        Some(path) => path,
        None => std::env::current_dir()?,
    };
    let client = super::super::connect(paths).await?;
    let vm = client.vm(&name).await?;
    require_running(&vm)?;
    let target = ssh_target(&vm);
    let program = ssh_program();
    let options = PullOptions {
        vm: name.to_string(),
        guest_path: args.guest_path,
        branch: args.branch,
        force: args.force,
    };
    let outcome = {
        let host_path: PathBuf = host_path.clone();
        tokio::task::spawn_blocking(move || {
            banger_workspace::pull(&host_path, &options, &program, &target)
        })
        .await??
    };
    match &outcome {
        PullOutcome::NothingToPull { base } => {
            eprintln!(
                "nothing to pull: the guest copy in VM {name} has no new commits and no uncommitted changes since {}",
                short(base)
            );
            if args.json {
                output::json(&serde_json::json!({"pulled": false, "base": base}))?;
            }
        }
        PullOutcome::Pulled(report) => {
            let mut message = format!(
                "branch {} now at {} ({} new commit{}{})",
                report.branch,
                short(&report.tip),
                report.commits,
                if report.commits == 1 { "" } else { "s" },
                if report.uncommitted_commit {
                    ", the last one holding the guest's uncommitted changes"
                } else {
                    ""
                }
            );
            if let Some(old) = &report.old_tip {
                message.push_str(&format!(
                    "; it was at {}{}",
                    short(old),
                    if report.rewound {
                        " (not an ancestor; recover it with `git reflog`)"
                    } else {
                        ""
                    }
                ));
            }
            eprintln!("{message}; your working tree and current branch are untouched");
            eprintln!("see it with `git log {}`", report.branch);
            if args.json {
                output::json(&serde_json::json!({
                    "pulled": true,
                    "branch": report.branch,
                    "tip": report.tip,
                    "old_tip": report.old_tip,
                    "rewound": report.rewound,
                    "commits": report.commits,
                    "uncommitted_commit": report.uncommitted_commit,
                }))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
