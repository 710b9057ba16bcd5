//! The program behind one SSH session channel: started with pipes or on a
//! pseudo-terminal, its output forwarded to the channel, its stdin fed from
//! it, and its exit status sent before the channel is closed.

use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use russh::ChannelId;
use russh::server::Handle;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

/// PATH of programs started over SSH (the usual Debian/Alpine default).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Shell when `/etc/passwd` names none that exists.
const FALLBACK_SHELL: &str = "/bin/sh";
/// How long output may still arrive after the program exited: a background
/// child holding the pipes must not keep the channel open forever.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Terminal size from `pty-req` / `window-change`.
#[derive(Debug, Clone, Copy)]
pub struct PtySize(rustix::termios::Winsize);

impl PtySize {
    /// From the SSH message's fields (clamped to the kernel's u16).
    pub fn new(cols: u32, rows: u32, pix_width: u32, pix_height: u32) -> Self {
        let clamp = |value: u32| u16::try_from(value).unwrap_or(u16::MAX);
        Self(rustix::termios::Winsize {
            ws_row: clamp(rows),
            ws_col: clamp(cols),
            ws_xpixel: clamp(pix_width),
            ws_ypixel: clamp(pix_height),
        })
    }
}

/// What to start.
pub struct Launch {
    /// `exec`'s command line, run as `shell -c COMMAND`; None: a login shell.
    pub command: Option<String>,
    /// A pseudo-terminal of this size, if one was requested.
    pub pty: Option<PtySize>,
    /// `TERM` from `pty-req`.
    pub term: Option<String>,
    /// Accepted `env` requests.
    pub env: Vec<(String, String)>,
    /// The client, for `SSH_CLIENT`.
    pub peer: Option<SocketAddr>,
}

/// The running program's input side, kept by the connection's handler.
pub struct ChannelIo {
    stdin: Option<mpsc::Sender<Vec<u8>>>,
    pty: Option<Arc<AsyncFd<OwnedFd>>>,
}

impl ChannelIo {
    /// Feeds `data` to the program (waits while it does not read, which
    /// holds back the client through SSH flow control).
    pub async fn stdin(&self, data: Vec<u8>) {
        if let Some(stdin) = &self.stdin {
            let _ = stdin.send(data).await;
        }
    }

    /// The client sent EOF: close the program's stdin (not on a PTY, where
    /// EOF is a ^D the client sends itself).
    pub fn close_stdin(&mut self) {
        if self.pty.is_none() {
            self.stdin = None;
        }
    }

    /// Resizes the PTY, if there is one.
    pub fn resize(&self, size: PtySize) {
        if let Some(master) = &self.pty {
            let _ = rustix::termios::tcsetwinsize(master.get_ref(), size.0);
        }
    }
}

/// The login shell of root from `/etc/passwd`, if it exists; else `/bin/sh`.
fn root_shell() -> String {
    let shell = fs_err::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd
                .lines()
                .find(|line| line.starts_with("root:"))
                .and_then(|line| line.split(':').nth(6))
                .map(str::to_owned)
        })
        .filter(|shell| shell.starts_with('/') && std::path::Path::new(shell).exists());
    shell.unwrap_or_else(|| FALLBACK_SHELL.to_owned())
}

fn command(launch: &Launch) -> std::process::Command {
    let shell = root_shell();
    let mut command = std::process::Command::new(&shell);
    match &launch.command {
        Some(line) => {
            command.arg("-c").arg(line);
        }
        None => {
            // A leading '-' in argv[0] makes it a login shell.
            let base = shell.rsplit('/').next().unwrap_or("sh");
            command.arg0(format!("-{base}"));
        }
    }
    let home = if std::path::Path::new("/root").is_dir() {
        "/root"
    } else {
        "/"
    };
    command
        .env_clear()
        .current_dir(home)
        .env("HOME", home)
        .env("USER", super::USER)
        .env("LOGNAME", super::USER)
        .env("SHELL", &shell)
        .env("PATH", PATH);
    if let Some(peer) = launch.peer {
        command.env("SSH_CLIENT", format!("{} {} 22", peer.ip(), peer.port()));
    }
    if let Some(term) = &launch.term {
        command.env("TERM", term);
    }
    for (key, value) in &launch.env {
        command.env(key, value);
    }
    command
}

/// Starts the program for `channel` and the tasks that serve it.
pub fn start(launch: Launch, channel: ChannelId, handle: Handle) -> std::io::Result<ChannelIo> {
    let command = command(&launch);
    match launch.pty {
        Some(size) => start_pty(command, size, channel, handle),
        None => start_pipes(command, channel, handle),
    }
}

fn start_pipes(
    command: std::process::Command,
    channel: ChannelId,
    handle: Handle,
) -> std::io::Result<ChannelIo> {
    let mut command = tokio::process::Command::from(command);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let (stdin_tx, mut stdin_rx) = mpsc::channel::<Vec<u8>>(16);
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            while let Some(data) = stdin_rx.recv().await {
                if stdin.write_all(&data).await.is_err() {
                    break;
                }
            }
            // Dropping stdin here is the program's EOF.
        });
    }
    let stdout = child
        .stdout
        .take()
        .map(|out| tokio::spawn(forward(out, None, channel, handle.clone())));
    let stderr = child
        .stderr
        .take()
        .map(|err| tokio::spawn(forward(err, Some(1), channel, handle.clone())));
    tokio::spawn(async move {
        let status = child.wait().await;
        for pump in [stdout, stderr].into_iter().flatten() {
            let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, pump).await;
        }
        finish(status, channel, &handle).await;
    });
    Ok(ChannelIo {
        stdin: Some(stdin_tx),
        pty: None,
    })
}

/// Copies `from` to the channel (`ext` 1 is stderr) until EOF.
async fn forward(
    mut from: impl AsyncRead + Unpin,
    ext: Option<u32>,
    channel: ChannelId,
    handle: Handle,
) {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let data = buffer[..n].to_vec();
        let sent = match ext {
            Some(ext) => handle.extended_data(channel, ext, data).await,
            None => handle.data(channel, data).await,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Sends the exit status (a signal death as 128 + signal, as shells report
/// it), EOF and close.
async fn finish(status: std::io::Result<ExitStatus>, channel: ChannelId, handle: &Handle) {
    let code = match status {
        Ok(status) => status
            .code()
            .or_else(|| status.signal().map(|signal| 128 + signal))
            .unwrap_or(255),
        Err(_) => 255,
    };
    let _ = handle
        .exit_status_request(channel, u32::try_from(code).unwrap_or(255))
        .await;
    let _ = handle.eof(channel).await;
    let _ = handle.close(channel).await;
}

fn start_pty(
    mut command: std::process::Command,
    size: PtySize,
    channel: ChannelId,
    handle: Handle,
) -> std::io::Result<ChannelIo> {
    use rustix::fs::{Mode, OFlags};
    use rustix::pty::OpenptFlags;
    super::super::devpts::ensure_mounted();
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::termios::tcsetwinsize(&slave, size.0)?;
    command
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    // SAFETY: the closure runs in the forked child before exec and only
    // makes raw syscalls (setsid, ioctl), which are async-signal-safe; it
    // allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(|| {
            rustix::process::setsid()?;
            // SAFETY: fd 0 is the PTY slave, set up by Stdio above, and
            // stays open for the duration of the call.
            let stdin = BorrowedFd::borrow_raw(0);
            rustix::process::ioctl_tiocsctty(stdin)?;
            Ok(())
        });
    }
    let mut child = tokio::process::Command::from(command).spawn()?;
    // The Command (and with it our copies of the slave) is gone: the master
    // reads EIO once the program and its children closed the terminal.
    rustix::fs::fcntl_setfl(&master, OFlags::NONBLOCK)?;
    // SAFETY: `master` is an OwnedFd moved into the AsyncFd, so the
    // descriptor stays open and the same until the AsyncFd is dropped.
    let master = unsafe { AsyncFd::register(master) }.map_err(std::io::Error::from)?;
    let master = Arc::new(master);

    let (stdin_tx, mut stdin_rx) = mpsc::channel::<Vec<u8>>(16);
    let writer = master.clone();
    tokio::spawn(async move {
        while let Some(data) = stdin_rx.recv().await {
            if write_all(&writer, &data).await.is_err() {
                break;
            }
        }
    });
    let reader = master.clone();
    let output = {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 32 * 1024];
            while let Ok(n) = read_some(&reader, &mut buffer).await {
                if n == 0 || handle.data(channel, buffer[..n].to_vec()).await.is_err() {
                    break;
                }
            }
        })
    };
    tokio::spawn(async move {
        let status = child.wait().await;
        let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, output).await;
        finish(status, channel, &handle).await;
    });
    Ok(ChannelIo {
        stdin: Some(stdin_tx),
        pty: Some(master),
    })
}

/// Reads from the non-blocking PTY master; EIO (every slave closed) is EOF.
async fn read_some(master: &AsyncFd<OwnedFd>, buffer: &mut [u8]) -> std::io::Result<usize> {
    loop {
        let mut guard = master.readable().await?;
        match guard.try_io(|fd| match rustix::io::read(fd.get_ref(), &mut *buffer) {
            Ok(n) => Ok(n),
            // Every slave closed: the terminal's end of file.
            Err(rustix::io::Errno::IO) => Ok(0),
            Err(error) => Err(error.into()),
        }) {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

/// Writes all of `data` to the non-blocking PTY master.
async fn write_all(master: &AsyncFd<OwnedFd>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let mut guard = master.writable().await?;
        match guard.try_io(|fd| Ok(rustix::io::write(fd.get_ref().as_fd(), data)?)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(error)) => return Err(error),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}
