//! `vm_exec` (a command in a running VM) and `vm_run` (a new VM, an
//! optional checkout copied in, a command there), over the system ssh.
//!
//! The environment travels on the command's stdin as `export` lines that
//! the guest shell evaluates, so values never appear on any command line
//! (host or guest `ps`) and are never echoed back. The guest's `timeout`
//! (coreutils, busybox) ends the command; the host kills ssh a little
//! later as a backstop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use banger_api::vms::VmInfo;
use banger_api::{ImageName, VmName};
use banger_host::ssh::command::shell_quote;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::vm::{Resources, VmSummary, create_vm};
use super::workspace::{PrepareSummary, checked_plan, send};
use super::{ToolError, Tools, arguments, guest_path, to_result};
use crate::bound::{self, DEFAULT_OUTPUT_BYTES};
use crate::remote;

/// Default command timeout.
const DEFAULT_TIMEOUT_SECS: u64 = 120;
/// Longest command timeout.
const MAX_TIMEOUT_SECS: u64 = 3 * 3600;
/// How much longer than the command's timeout the host waits for ssh.
const HOST_GRACE: Duration = Duration::from_secs(15);
/// Where commands run without a `cwd`.
const DEFAULT_CWD: &str = "/root";

/// The guest-side wrapper: `$1` timeout, `$2` working directory, then the
/// argv. The environment's `export` lines come on stdin. `timeout -k` is
/// tried first: old busyboxes have a `timeout` with other options.
const EXEC_SCRIPT: &str = r#"eval "$(cat)" || exit 125
cd "$2" || exit 125
t=$1
shift 2
if timeout -k 5 5 true >/dev/null 2>&1; then exec timeout -k 5 "$t" "$@"; fi
exec "$@""#;

/// A command to run in a guest.
#[derive(Debug)]
pub(super) struct GuestCommand {
    pub(super) argv: Vec<String>,
    pub(super) cwd: String,
    pub(super) env: BTreeMap<String, String>,
    pub(super) timeout: Duration,
    pub(super) limit: usize,
}

impl GuestCommand {
    /// Checks the parts an agent supplies.
    fn new(
        tool: &'static str,
        argv: Vec<String>,
        cwd: Option<String>,
        env: BTreeMap<String, String>,
        timeout_secs: Option<u64>,
        max_output_bytes: Option<u64>,
    ) -> Result<Self, ToolError> {
        if argv.is_empty() || argv[0].is_empty() {
            return Err(ToolError::BadArgument {
                tool,
                argument: "argv",
                why: "the command is empty".into(),
            });
        }
        let cwd = cwd.unwrap_or_else(|| DEFAULT_CWD.to_owned());
        guest_path(tool, "cwd", &cwd)?;
        if let Some(name) = env.keys().find(|name| !valid_env_name(name)) {
            return Err(ToolError::BadArgument {
                tool,
                argument: "env",
                why: format!("{name:?} is not a variable name (letters, digits, _)"),
            });
        }
        let timeout_secs = timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if timeout_secs == 0 || timeout_secs > MAX_TIMEOUT_SECS {
            return Err(ToolError::BadArgument {
                tool,
                argument: "timeout_secs",
                why: format!("must be 1 to {MAX_TIMEOUT_SECS}"),
            });
        }
        Ok(Self {
            argv,
            cwd,
            env,
            timeout: Duration::from_secs(timeout_secs),
            limit: bound::limit(max_output_bytes, DEFAULT_OUTPUT_BYTES),
        })
    }
}

fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// What a guest command did; environment values are never included.
#[derive(Debug, Serialize)]
pub(super) struct ExecOutput {
    exit_code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    stdout: String,
    stderr: String,
    stdout_bytes: u64,
    stderr_bytes: u64,
    truncated: bool,
    elapsed_ms: u64,
}

/// Runs `command` in the running `vm`.
pub(super) async fn run_in(vm: &VmInfo, command: &GuestCommand) -> Result<ExecOutput, ToolError> {
    let mut argv = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        EXEC_SCRIPT.to_owned(),
        "banger-exec".to_owned(),
        command.timeout.as_secs().to_string(),
        command.cwd.clone(),
    ];
    argv.extend(command.argv.iter().cloned());
    let stdin: String = command
        .env
        .iter()
        .map(|(name, value)| format!("export {name}={}\n", shell_quote(value)))
        .collect();
    let output = remote::run(
        vm,
        &argv,
        stdin.into_bytes(),
        command.limit,
        command.timeout + HOST_GRACE,
    )
    .await?;
    // `timeout` exits 124 (or 137 after its KILL) when it ended the command.
    let guest_timeout =
        matches!(output.exit_code, Some(124 | 137)) && output.elapsed >= command.timeout;
    Ok(ExecOutput {
        exit_code: output.exit_code,
        signal: output.signal,
        timed_out: output.killed_at_deadline || guest_timeout,
        truncated: output.stdout.truncated || output.stderr.truncated,
        stdout_bytes: output.stdout.bytes,
        stderr_bytes: output.stderr.bytes,
        stdout: output.stdout.text,
        stderr: output.stderr.text,
        elapsed_ms: u64::try_from(output.elapsed.as_millis()).unwrap_or(u64::MAX),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecArgs {
    vm: VmName,
    argv: Vec<String>,
    cwd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    timeout_secs: Option<u64>,
    max_output_bytes: Option<u64>,
}

pub(super) async fn exec(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let args: ExecArgs = arguments("vm_exec", args)?;
    let command = GuestCommand::new(
        "vm_exec",
        args.argv,
        args.cwd,
        args.env,
        args.timeout_secs,
        args.max_output_bytes,
    )?;
    let vm = tools.running_vm(&args.vm).await?;
    let output = run_in(&vm, &command).await?;
    to_result(serde_json::json!({ "vm": vm.name, "result": output }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunArgs {
    command: Vec<String>,
    path: Option<PathBuf>,
    name: Option<VmName>,
    image: Option<ImageName>,
    vcpu: Option<u8>,
    memory_mib: Option<u32>,
    disk_gib: Option<u32>,
    #[serde(default)]
    nat: bool,
    #[serde(default)]
    env: BTreeMap<String, String>,
    timeout_secs: Option<u64>,
    max_output_bytes: Option<u64>,
    #[serde(default)]
    delete_after: bool,
}

pub(super) async fn run(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let args: RunArgs = arguments("vm_run", args)?;
    // One string is a shell command line, as with `banger vm run -- "..."`.
    let argv = match args.command.as_slice() {
        [line] => vec!["sh".to_owned(), "-c".to_owned(), line.clone()],
        argv => argv.to_vec(),
    };
    let cwd = args
        .path
        .as_ref()
        .map(|_| banger_workspace::DEFAULT_GUEST_PATH.to_owned());
    let command = GuestCommand::new(
        "vm_run",
        argv,
        cwd,
        args.env,
        args.timeout_secs,
        args.max_output_bytes,
    )?;
    // Check and plan the checkout before creating anything, so a refused
    // path leaves no VM.
    let plan = match &args.path {
        Some(path) => Some(checked_plan(tools, path, Default::default()).await?),
        None => None,
    };
    let resources = Resources {
        name: args.name,
        image: args.image,
        vcpu: args.vcpu,
        memory_mib: args.memory_mib,
        disk_gib: args.disk_gib,
        nat: args.nat,
    };
    let vm = create_vm(tools, &resources).await?;
    let workspace: Option<PrepareSummary> = match plan {
        Some(plan) => match send(&vm, plan).await {
            Ok(report) => Some(report),
            Err(error) => {
                // The VM was made for this checkout and holds nothing else.
                let _ = delete_created(tools, &vm.name).await;
                return Err(error);
            }
        },
        None => None,
    };
    let output = run_in(&vm, &command).await;
    let deleted = args.delete_after && delete_created(tools, &vm.name).await.is_ok();
    let output = output?;
    to_result(serde_json::json!({
        "vm": VmSummary::new(tools, &vm),
        "workspace": workspace,
        "result": output,
        "deleted": deleted,
    }))
}

async fn delete_created(tools: &Tools, name: &VmName) -> Result<(), ToolError> {
    tools.client().await?.delete_vm(name, true).await?;
    tools.forget(name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_checked() {
        let ok = GuestCommand::new(
            "vm_exec",
            vec!["true".into()],
            None,
            BTreeMap::from([("API_TOKEN".to_owned(), "secret".to_owned())]),
            None,
            Some(10),
        )
        .unwrap();
        assert_eq!(ok.cwd, "/root");
        assert_eq!(ok.limit, 10);
        assert_eq!(ok.timeout, Duration::from_secs(DEFAULT_TIMEOUT_SECS));
        let bad = |argv: Vec<String>, cwd: Option<&str>, env: &[(&str, &str)], timeout| {
            GuestCommand::new(
                "vm_exec",
                argv,
                cwd.map(str::to_owned),
                env.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                timeout,
                None,
            )
            .unwrap_err()
            .to_string()
        };
        assert!(bad(vec![], None, &[], None).contains("argv"));
        assert!(bad(vec!["ls".into()], Some("tmp"), &[], None).contains("cwd"));
        assert!(bad(vec!["ls".into()], None, &[("A=B", "x")], None).contains("env"));
        assert!(bad(vec!["ls".into()], None, &[], Some(0)).contains("timeout_secs"));
        assert!(!bad(vec!["ls".into()], None, &[("1X", "secret")], None).contains("secret"));
    }

    /// The wrapper script run by a local `sh`: environment from stdin,
    /// working directory, argv passed through exactly.
    #[test]
    fn the_exec_script_sets_env_and_cwd_and_keeps_argv() {
        use std::io::Write;
        let temp = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sh")
            .args(["-c", EXEC_SCRIPT, "banger-exec", "5"])
            .arg(temp.path())
            .args([
                "sh",
                "-c",
                "pwd; printf '%s|' \"$GREETING\" \"$@\"",
                "x",
                "a b",
                "'c'",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("export GREETING={}\n", shell_quote("it's $HOME")).as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        let dir = fs_err::canonicalize(temp.path()).unwrap();
        assert_eq!(stdout, format!("{}\nit's $HOME|a b|'c'|", dir.display()));
    }
}
