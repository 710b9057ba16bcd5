//! Running a command in a guest over the system `ssh`, with banger's key
//! and pinned host key (`banger_host::ssh::ssh_command`), as `banger vm ssh`
//! does: stdin from a buffer, stdout and stderr captured within limits,
//! and a deadline after which ssh is killed.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use banger_api::VmName;
use banger_api::vms::VmInfo;
use banger_client::ssh::{ssh_program, ssh_target};
use banger_host::ssh::{TtyMode, ssh_command};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::bound::{Bounded, Head};

/// What a guest command did.
#[derive(Debug)]
pub struct RemoteOutput {
    /// Exit status of the remote command (255: ssh itself failed).
    pub exit_code: Option<i32>,
    /// The signal that ended ssh, if one did.
    pub signal: Option<i32>,
    /// Its stdout, bounded.
    pub stdout: Bounded,
    /// Its stderr, bounded.
    pub stderr: Bounded,
    /// Whether the host-side deadline ended it.
    pub killed_at_deadline: bool,
    /// Wall time.
    pub elapsed: Duration,
}

/// Why a guest command could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// ssh could not be started.
    #[error("cannot run {program} for VM {vm}; install openssh-client")]
    Spawn {
        /// The VM.
        vm: VmName,
        /// The ssh program.
        program: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for ssh failed.
    #[error("waiting for ssh to VM {vm} failed")]
    Wait {
        /// The VM.
        vm: VmName,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Runs `argv` in `vm` (joined and quoted for the remote shell), feeding
/// `stdin` and keeping at most `limit` bytes of each output stream; after
/// `deadline` ssh is killed.
pub async fn run(
    vm: &VmInfo,
    argv: &[String],
    stdin: Vec<u8>,
    limit: usize,
    deadline: Duration,
) -> Result<RemoteOutput, RemoteError> {
    let started = Instant::now();
    let program = ssh_program();
    let mut command: tokio::process::Command =
        ssh_command(&program, &ssh_target(vm), argv, TtyMode::Batch).into();
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| RemoteError::Spawn {
        vm: vm.name.clone(),
        program: program.clone(),
        source,
    })?;
    let input = child.stdin.take().map(|mut pipe| {
        tokio::spawn(async move {
            // A command that does not read its input closes the pipe
            // early; that is not an error of the call.
            let _ = pipe.write_all(&stdin).await;
            let _ = pipe.shutdown().await;
        })
    });
    let stdout = child
        .stdout
        .take()
        .map(|pipe| tokio::spawn(capture(pipe, limit)));
    let stderr = child
        .stderr
        .take()
        .map(|pipe| tokio::spawn(capture(pipe, limit)));
    let wait_error = |source| RemoteError::Wait {
        vm: vm.name.clone(),
        source,
    };
    let (status, killed_at_deadline) = match tokio::time::timeout(deadline, child.wait()).await {
        Ok(status) => (status.map_err(wait_error)?, false),
        Err(_) => {
            // Best effort: the process may have exited just now.
            let _ = child.start_kill();
            (child.wait().await.map_err(wait_error)?, true)
        }
    };
    if let Some(input) = input {
        input.abort();
    }
    let stdout = collect(stdout, limit).await;
    let stderr = collect(stderr, limit).await;
    use std::os::unix::process::ExitStatusExt;
    Ok(RemoteOutput {
        exit_code: status.code(),
        signal: status.signal(),
        stdout,
        stderr,
        killed_at_deadline,
        elapsed: started.elapsed(),
    })
}

/// Reads a pipe to its end, keeping the first `limit` bytes.
async fn capture(mut pipe: impl AsyncRead + Unpin, limit: usize) -> Bounded {
    let mut head = Head::new(limit);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => head.push(&chunk[..read]),
        }
    }
    head.finish()
}

/// A capture's result; nothing when the pipe was missing or its reader
/// was lost. A background process in the guest can keep the pipe open
/// after ssh was killed, so the wait is short.
async fn collect(task: Option<tokio::task::JoinHandle<Bounded>>, limit: usize) -> Bounded {
    let empty = || Head::new(limit).finish();
    let Some(mut task) = task else {
        return empty();
    };
    match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
        Ok(Ok(bounded)) => bounded,
        Ok(Err(_)) => empty(),
        Err(_) => {
            task.abort();
            empty()
        }
    }
}
