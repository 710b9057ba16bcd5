//! `vm opencode`: attach this host's opencode to the guest's opencode server
//! (port 4096, HTTP basic auth, user `opencode`).
//!
//! The password is made in the guest by the image's `opencode-serve` on the
//! server's first start and kept in [`PASSWORD_FILE`]; it is read over SSH
//! each time (the host keeps no copy) and handed to `opencode attach`
//! through its environment, never its argv, which other users can read.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use banger_api::vms::VmInfo;
use banger_client::ssh::{ssh_program, ssh_target};
use banger_config::Paths;
use banger_host::ssh::TtyMode;
use banger_host::ssh::ssh_command;

use super::ssh::{exit_code, require_running, status_code, wake};
use crate::args::VmOpencodeArgs;
use crate::output;

/// Where the guest keeps the server's password (see images/guest/opencode-serve).
pub const PASSWORD_FILE: &str = "/root/.config/banger/opencode-server-password";
/// The port of the guest's opencode server.
pub const OPENCODE_PORT: u16 = 4096;
/// The basic-auth user opencode's server expects by default.
const OPENCODE_USER: &str = "opencode";

pub async fn opencode(paths: &Paths, args: VmOpencodeArgs) -> anyhow::Result<ExitCode> {
    let client = super::super::connect(paths).await?;
    let vm = client.vm(&args.vm).await?;
    let vm = wake(paths, &client, vm).await?;
    require_running(&vm)?;
    let password = read_password(&vm).await?;
    let url = format!("http://{}:{OPENCODE_PORT}", vm.ssh.ip);
    if args.print {
        output::line(&url)?;
        output::line(&password)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut attach = Command::new("opencode");
    attach
        .arg("attach")
        .arg(&url)
        .args(&args.args)
        .env("OPENCODE_SERVER_USERNAME", OPENCODE_USER)
        .env("OPENCODE_SERVER_PASSWORD", &password);
    let mut child = attach.spawn().map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!(
            "opencode is not installed on this host (npm install -g opencode-ai); `banger vm opencode {} --print` prints the URL and password for another client",
            vm.name
        ),
        _ => anyhow::anyhow!("cannot run opencode: {error}"),
    })?;
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    Ok(exit_code(status_code(status)))
}

/// The server's password, read from the guest over SSH.
async fn read_password(vm: &VmInfo) -> anyhow::Result<String> {
    let target = ssh_target(vm);
    let program = ssh_program();
    // The server makes it on its first start, which may still be under way
    // right after a boot: wait up to 10 s for it.
    let script = format!(
        "i=0; while [ ! -s {PASSWORD_FILE} ] && [ $i -lt 20 ]; do sleep 0.5; i=$((i+1)); done; cat {PASSWORD_FILE}"
    );
    let argv = ["sh".to_owned(), "-c".to_owned(), script];
    let mut command = ssh_command(Path::new(&program), &target, &argv, TtyMode::Batch);
    command.stdin(Stdio::null());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await?
        .map_err(|error| {
            anyhow::anyhow!(
                "cannot run {}: {error}; install openssh-client",
                program.display()
            )
        })?;
    let password = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || password.is_empty() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        anyhow::bail!(
            "VM {} has no opencode server password at {PASSWORD_FILE} ({}); its image predates banger's password-protected opencode service or has no opencode: rebuild the image (`banger image build`) or start `opencode serve` yourself",
            vm.name,
            stderr.trim()
        );
    }
    Ok(password)
}
