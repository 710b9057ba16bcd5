//! `workspace_prepare` (a host checkout into a VM) and `workspace_pull`
//! (the guest's work back as a host branch), through `banger_workspace`
//! exactly as `banger vm workspace` does it. Both the path and the git
//! repository it belongs to must lie inside the allowed roots.

use std::path::{Path, PathBuf};

use banger_api::VmName;
use banger_api::vms::VmInfo;
use banger_client::ssh::{ssh_program, ssh_target};
use banger_workspace::{Mode, Plan, PrepareOptions, PullOptions, PullOutcome};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ToolError, Tools, arguments, guest_path, to_result};

/// A checkout copied into a guest.
#[derive(Debug, Serialize)]
pub(super) struct PrepareSummary {
    guest_path: String,
    entries: u64,
    bytes: u64,
    elapsed_ms: u64,
    head: String,
    branch: Option<String>,
}

/// Refuses `path` unless both it and its repository's top level are
/// inside the allowed roots; returns the resolved path.
fn allowed_checkout(tools: &Tools, path: &Path) -> Result<PathBuf, ToolError> {
    let resolved = tools.roots().check(path)?;
    let top = banger_workspace::toplevel(&resolved)?;
    let top = fs_err::canonicalize(&top).unwrap_or(top);
    if !tools.roots().contains(&top) {
        return Err(ToolError::RepositoryOutside {
            path: resolved,
            repo: top,
            roots: tools.roots().describe(),
        });
    }
    Ok(resolved)
}

/// Checks `path` and plans its copy (git runs off the async runtime).
pub(super) async fn checked_plan(
    tools: &Tools,
    path: &Path,
    options: PrepareOptions,
) -> Result<Plan, ToolError> {
    let resolved = allowed_checkout(tools, path)?;
    let plan = tokio::task::spawn_blocking(move || banger_workspace::plan(&resolved, &options))
        .await
        .map_err(|source| ToolError::Task {
            tool: "workspace_prepare",
            source,
        })??;
    Ok(plan)
}

/// Streams a planned checkout into the running `vm`.
pub(super) async fn send(vm: &VmInfo, plan: Plan) -> Result<PrepareSummary, ToolError> {
    let target = ssh_target(vm);
    let program = ssh_program();
    let report = tokio::task::spawn_blocking(move || {
        banger_workspace::prepare(&plan, &program, &target, &mut |_| {})
    })
    .await
    .map_err(|source| ToolError::Task {
        tool: "workspace_prepare",
        source,
    })??;
    Ok(PrepareSummary {
        guest_path: report.guest_path,
        entries: report.files,
        bytes: report.bytes,
        elapsed_ms: u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
        head: report.head,
        branch: report.branch,
    })
}

/// `mode` of `workspace_prepare`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ModeArg {
    #[default]
    Shallow,
    FullCopy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrepareArgs {
    vm: VmName,
    path: PathBuf,
    guest_path: Option<String>,
    #[serde(default)]
    mode: ModeArg,
    #[serde(default)]
    include_untracked: bool,
    #[serde(default)]
    readonly: bool,
}

pub(super) async fn prepare(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let args: PrepareArgs = arguments("workspace_prepare", args)?;
    let guest = args
        .guest_path
        .unwrap_or_else(|| banger_workspace::DEFAULT_GUEST_PATH.to_owned());
    guest_path("workspace_prepare", "guest_path", &guest)?;
    let options = PrepareOptions {
        guest_path: guest,
        mode: match args.mode {
            ModeArg::Shallow => Mode::Shallow,
            ModeArg::FullCopy => Mode::FullCopy,
        },
        include_untracked: args.include_untracked,
        readonly: args.readonly,
        branch: None,
        from: None,
    };
    let plan = checked_plan(tools, &args.path, options).await?;
    let vm = tools.running_vm(&args.vm).await?;
    to_result(send(&vm, plan).await?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PullArgs {
    vm: VmName,
    path: Option<PathBuf>,
    branch: Option<String>,
    guest_path: Option<String>,
}

pub(super) async fn pull(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let args: PullArgs = arguments("workspace_pull", args)?;
    let path = args
        .path
        .unwrap_or_else(|| tools.roots().first().to_owned());
    let host_path = allowed_checkout(tools, &path)?;
    let mut options = PullOptions::new(args.vm.as_str());
    if let Some(guest) = args.guest_path {
        guest_path("workspace_pull", "guest_path", &guest)?;
        options.guest_path = guest;
    }
    options.branch = args.branch;
    let vm = tools.running_vm(&args.vm).await?;
    let target = ssh_target(&vm);
    let program = ssh_program();
    let outcome = tokio::task::spawn_blocking(move || {
        banger_workspace::pull(&host_path, &options, &program, &target)
    })
    .await
    .map_err(|source| ToolError::Task {
        tool: "workspace_pull",
        source,
    })??;
    to_result(match outcome {
        PullOutcome::NothingToPull { base } => serde_json::json!({
            "pulled": false,
            "base": base,
        }),
        PullOutcome::Pulled(report) => serde_json::json!({
            "pulled": true,
            "branch": report.branch,
            "tip": report.tip,
            "old_tip": report.old_tip,
            "rewound": report.rewound,
            "commits": report.commits,
            "uncommitted_commit": report.uncommitted_commit,
        }),
    })
}
