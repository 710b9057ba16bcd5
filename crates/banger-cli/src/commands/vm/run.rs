//! `vm run [PATH]`: create and start a sandbox, copy a git checkout into
//! /root/repo when PATH is given, then a shell or a command (there, or in
//! /root without PATH), exiting with its status; `--rm` deletes the VM
//! afterwards.

use std::process::ExitCode;

use banger_api::vms::VmInfo;
use banger_api::{ErrorCode, VmName};
use banger_client::{ClientError, DaemonClient};
use banger_config::Paths;
use banger_host::ssh::TtyMode;
use banger_host::ssh::command::{remote_command_line, shell_quote};
use banger_workspace::{Mode, PrepareOptions};

use super::lifecycle::create_request;
use super::ssh::{exit_code, remind_if_running, run_ssh, run_ssh_with};
use crate::args::VmRunArgs;
use crate::progress::Reporter;

/// Where `vm run PATH` puts the checkout.
const REPO_DIR: &str = "/root/repo";

/// Where the background `mise install` writes its log in the guest
/// (its directory is created first).
const MISE_LOG: &str = "/root/.cache/banger/mise-install.log";

pub async fn run(paths: &Paths, args: VmRunArgs) -> anyhow::Result<ExitCode> {
    // Inspect the checkout before creating anything, so a bad path (not a
    // repository, submodules in shallow mode, an unknown --from) leaves no VM.
    let plan = match &args.path {
        Some(path) => Some(
            super::workspace::make_plan(
                path,
                PrepareOptions {
                    guest_path: REPO_DIR.to_owned(),
                    mode: Mode::Shallow,
                    include_untracked: false,
                    readonly: false,
                    branch: args.branch.clone(),
                    from: args.from.clone(),
                },
            )
            .await?,
        ),
        None => None,
    };
    let request = create_request(args.name, &args.resources, false);
    let client = super::super::connect(paths).await?;
    let mut reporter = Reporter::new();
    let created = client
        .create_vm(&request, &mut |progress| reporter.show(progress))
        .await;
    reporter.finish();
    let vm = match created {
        Ok(vm) => vm,
        Err(ClientError::Operation { error }) if error.code == ErrorCode::SshTimeout => {
            if args.rm {
                eprintln!(
                    "note: --rm ignored: the VM is kept so you can inspect why SSH never answered"
                );
            }
            anyhow::bail!("{}", error.message);
        }
        Err(error) => return Err(error.into()),
    };
    let name = vm.name.clone();
    eprintln!("VM {} is running at {}", vm.name, vm.ip);
    let interactive = args.command.is_empty();
    let code = match plan {
        Some(plan) => {
            let tool_files = plan.has_tool_files();
            if let Err(error) = super::workspace::send(&vm, plan).await {
                // The VM was made for this checkout and holds nothing else.
                delete(&client, &name).await;
                return Err(error.context(format!(
                    "cannot copy the checkout into VM {name}, so it was deleted"
                )));
            }
            if interactive && tool_files {
                start_mise_install(&vm).await;
            }
            in_repo(&vm, &args.command).await
        }
        None => run_ssh(&vm, &args.command).await,
    };
    if args.rm {
        delete(&client, &name).await;
    } else if interactive {
        remind_if_running(&client, &name).await;
    }
    Ok(exit_code(code?))
}

async fn delete(client: &DaemonClient, name: &VmName) {
    match client.delete_vm(name, true).await {
        Ok(_) => eprintln!("deleted VM {name}"),
        Err(error) => eprintln!(
            "error: cannot delete VM {name}: {:#}",
            anyhow::Error::from(error)
        ),
    }
}

/// A shell or `command` with /root/repo as the working directory.
async fn in_repo(vm: &VmInfo, command: &[String]) -> anyhow::Result<i32> {
    let (script, tty) = match command {
        [] => (
            format!("cd {REPO_DIR} && exec \"${{SHELL:-/bin/sh}}\" -l"),
            TtyMode::detect(),
        ),
        // One argument is a shell command line, as with `vm ssh`.
        [line] => (
            format!("cd {REPO_DIR} && exec sh -c {}", shell_quote(line)),
            TtyMode::Batch,
        ),
        argv => (
            format!("cd {REPO_DIR} && exec {}", remote_command_line(argv)),
            TtyMode::Batch,
        ),
    };
    run_ssh_with(vm, &["sh".to_owned(), "-c".to_owned(), script], tty).await
}

/// Starts a best-effort `mise install` in the guest, detached from the
/// session, logging to [`MISE_LOG`]; the user's shell does not wait for it.
async fn start_mise_install(vm: &VmInfo) {
    let script = mise_script(REPO_DIR, MISE_LOG);
    match run_ssh_with(
        vm,
        &["sh".to_owned(), "-c".to_owned(), script],
        TtyMode::Batch,
    )
    .await
    {
        Ok(0) => eprintln!(
            "installing the repository's tools with mise in the background (log: {MISE_LOG})"
        ),
        Ok(code) => eprintln!("warning: could not start `mise install` in the guest (exit {code})"),
        Err(error) => eprintln!("warning: could not start `mise install` in the guest: {error:#}"),
    }
}

/// The guest-side script: `mise trust` + `mise install` in `repo`, in its
/// own session with output to `log`, returning at once.
fn mise_script(repo: &str, log: &str) -> String {
    let log_dir = std::path::Path::new(log)
        .parent()
        .map_or_else(|| "/".to_owned(), |dir| dir.display().to_string());
    format!(
        "mkdir -p {log_dir} && cd {repo} && \
         PATH=/root/.local/bin:$PATH setsid sh -c 'if command -v mise >/dev/null 2>&1; then mise trust --yes . && mise install; else echo \"mise is not installed in this VM; tools were not installed\"; fi' \
         </dev/null >{log} 2>&1 &",
        log_dir = shell_quote(&log_dir),
        repo = shell_quote(repo),
        log = shell_quote(log),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_script(repo: &std::path::Path, log: &std::path::Path, path: &str) {
        let script = mise_script(repo.to_str().unwrap(), log.to_str().unwrap());
        let status = std::process::Command::new("sh")
            .args(["-c", &script])
            .env("PATH", path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_for(log: &std::path::Path, text: &str) -> String {
        for _ in 0..100 {
            let content = fs_err::read_to_string(log).unwrap_or_default();
            if content.contains(text) {
                return content;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("{} never contained {text:?}", log.display());
    }

    #[test]
    fn mise_runs_in_the_repo_in_the_background_and_logs() {
        let temp = tempfile::tempdir().unwrap();
        let repo = temp.path().join("repo");
        let bin = temp.path().join("bin");
        fs_err::create_dir_all(&repo).unwrap();
        fs_err::create_dir_all(&bin).unwrap();
        // A stand-in mise that records its arguments and working directory.
        banger_testkit::write_executable(
            &bin.join("mise"),
            "#!/bin/sh\necho \"mise $* in $(pwd)\"\n",
        );
        let log = temp.path().join("cache/banger/mise-install.log");
        run_script(&repo, &log, &format!("{}:/usr/bin:/bin", bin.display()));
        let content = wait_for(&log, "mise install in");
        assert!(
            content.contains(&format!("mise trust --yes . in {}", repo.display())),
            "{content}"
        );
    }

    #[test]
    fn without_mise_the_log_says_so() {
        let temp = tempfile::tempdir().unwrap();
        let repo = temp.path().join("repo");
        fs_err::create_dir_all(&repo).unwrap();
        let log = temp.path().join("cache/mise.log");
        run_script(&repo, &log, "/usr/bin:/bin");
        wait_for(&log, "mise is not installed in this VM");
    }
}
