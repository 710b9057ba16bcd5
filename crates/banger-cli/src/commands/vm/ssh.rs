//! `vm ssh`: the system ssh with banger's key and strict host key checking.

use std::path::Path;
use std::process::ExitCode;

use banger_api::VmName;
use banger_api::vms::{VmInfo, VmState};
use banger_client::DaemonClient;
pub use banger_client::ssh::{ssh_program, ssh_target};
use banger_config::Paths;
use banger_host::ssh::{TtyMode, ssh_command};

use crate::args::VmSshArgs;
use crate::output;

/// ssh's exit status when it could not connect or authenticate.
const SSH_FAILED: i32 = 255;

pub async fn ssh(paths: &Paths, args: VmSshArgs) -> anyhow::Result<ExitCode> {
    let name = args.name;
    let client = super::super::connect(paths).await?;
    let vm = wake(paths, &client, client.vm(&name).await?).await?;
    let code = run_ssh(&vm, &args.command).await?;
    if code != SSH_FAILED {
        remind_if_running(&client, &name).await;
    }
    Ok(exit_code(code))
}

/// Runs ssh into `vm` (a shell when `command` is empty); returns its exit status.
pub async fn run_ssh(vm: &VmInfo, command: &[String]) -> anyhow::Result<i32> {
    let tty = if command.is_empty() {
        TtyMode::detect()
    } else {
        TtyMode::Batch
    };
    run_ssh_with(vm, command, tty).await
}

/// [`run_ssh`] with an explicit terminal mode.
pub async fn run_ssh_with(vm: &VmInfo, command: &[String], tty: TtyMode) -> anyhow::Result<i32> {
    require_running(vm)?;
    let target = ssh_target(vm);
    // One argument is a shell command line (as with plain ssh: pipes,
    // redirections, `;` work); several are an argv, passed through exactly.
    let command: Vec<String> = match command {
        [line] => vec!["sh".to_owned(), "-c".to_owned(), line.clone()],
        argv => argv.to_vec(),
    };
    let program = ssh_program();
    let mut child = ssh_command(Path::new(&program), &target, &command, tty)
        .spawn()
        .map_err(|error| {
            anyhow::anyhow!(
                "cannot run {}: {error}; install openssh-client",
                program.display()
            )
        })?;
    // ssh owns the terminal now; the CLI just waits (ignoring Ctrl-C, which
    // the remote side handles).
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    Ok(status_code(status))
}

/// A child's exit status as a shell reports it: its code, or 128 plus the
/// signal that ended it.
pub fn status_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Fails unless `vm` is running, naming the fix.
pub fn require_running(vm: &VmInfo) -> anyhow::Result<()> {
    if vm.state != VmState::Running {
        anyhow::bail!(
            "VM {} is {}; start it with `banger vm start {}`",
            vm.name,
            vm.state,
            vm.name
        );
    }
    Ok(())
}

/// `vm` itself, or resumed first when it is paused and `auto_resume` is on
/// (the default; a config that cannot be read counts as the default).
pub async fn wake(paths: &Paths, client: &DaemonClient, vm: VmInfo) -> anyhow::Result<VmInfo> {
    if vm.state != VmState::Paused {
        return Ok(vm);
    }
    let auto_resume =
        banger_config::LoadedConfig::load(paths).map_or(true, |loaded| loaded.config.auto_resume);
    if !auto_resume {
        anyhow::bail!(
            "VM {} is paused and auto_resume is off; resume it with `banger vm resume {}`",
            vm.name,
            vm.name
        );
    }
    eprintln!("{} is paused; resuming it first (auto_resume)", vm.name);
    Ok(client
        .resume_vm(&vm.name, &mut |progress| output::progress_line(progress))
        .await?)
}

/// One line on stderr when the VM keeps running after the session.
pub async fn remind_if_running(client: &DaemonClient, name: &VmName) {
    if let Ok(vm) = client.vm(name).await {
        if vm.state == VmState::Running {
            eprintln!("VM {name} is still running; stop it with `banger vm stop {name}`");
        }
    }
}

/// A process exit code from a status (clamped to 0..=255).
pub fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}
