//! `vm session ...`: long-lived guest processes kept by the guest agent.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use banger_agent_proto::AttachFrame;
use banger_api::sessions::{LogStream, SessionCreateRequest, SessionInfo, StdinMode};
use banger_client::SessionAction;
use banger_config::Paths;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::args::{
    LogStreamArg, SessionCommand, SessionLogsArgs, SessionRef, SessionStartArgs, StdinModeArg,
};
use crate::output;

/// The byte that detaches an attached client: Ctrl-] (as in telnet and
/// `virsh console`), rarely needed by programs on a pipe.
const DETACH_BYTE: u8 = 0x1d;

pub async fn run(paths: &Paths, command: SessionCommand) -> anyhow::Result<ExitCode> {
    let client = super::super::connect(paths).await?;
    match command {
        SessionCommand::Start(args) => start(&client, args).await,
        SessionCommand::List(args) => {
            let vm = args.vm;
            let sessions = client.sessions(&vm).await?;
            if args.json {
                output::json(&sessions)?;
            } else {
                output::line(&output::sanitize(&output::table(&list_rows(&sessions))))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        SessionCommand::Show(args) => {
            let vm = args.vm;
            let session = client.session(&vm, &args.session).await?;
            print_session(&session, args.json)?;
            Ok(ExitCode::SUCCESS)
        }
        SessionCommand::Logs(args) => logs(&client, args).await,
        SessionCommand::Stop(target) => signal(&client, target, SessionAction::Stop).await,
        SessionCommand::Kill(target) => signal(&client, target, SessionAction::Kill).await,
        SessionCommand::Rm(target) => {
            let vm = target.vm;
            client.remove_session(&vm, &target.session).await?;
            eprintln!("removed session {} of VM {vm}", target.session);
            Ok(ExitCode::SUCCESS)
        }
        SessionCommand::Attach(target) => attach(&client, target).await,
    }
}

async fn start(
    client: &banger_client::DaemonClient,
    args: SessionStartArgs,
) -> anyhow::Result<ExitCode> {
    let vm = args.vm;
    let request = SessionCreateRequest {
        name: args.name,
        command: args.command,
        cwd: args.cwd,
        stdin_mode: match args.stdin_mode {
            StdinModeArg::Detached => StdinMode::Detached,
            StdinModeArg::Pipe => StdinMode::Pipe,
        },
        require_commands: args.require_commands,
    };
    let session = client.create_session(&vm, &request).await?;
    print_session(&session, args.json)?;
    if !args.json {
        eprintln!(
            "session {} started in VM {vm}; output: `banger vm session logs {vm} {} -f`",
            session.name, session.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn signal(
    client: &banger_client::DaemonClient,
    target: SessionRef,
    action: SessionAction,
) -> anyhow::Result<ExitCode> {
    let vm = target.vm;
    let session = client.signal_session(&vm, &target.session, action).await?;
    eprintln!(
        "session {} of VM {vm}: {}",
        session.name,
        describe_state(&session)
    );
    Ok(ExitCode::SUCCESS)
}

fn describe_state(session: &SessionInfo) -> String {
    match (session.exit_code, session.signal) {
        (Some(code), _) => format!("{} (exit code {code})", session.state),
        (None, Some(signal)) => format!("{} (signal {signal})", session.state),
        (None, None) => session.state.to_string(),
    }
}

fn list_rows(sessions: &[SessionInfo]) -> Vec<Vec<String>> {
    let mut rows = vec![
        ["NAME", "STATE", "PID", "STDIN", "CWD", "COMMAND"]
            .map(String::from)
            .to_vec(),
    ];
    for session in sessions {
        rows.push(vec![
            session.name.to_string(),
            describe_state(session),
            session
                .pid
                .map_or_else(|| "-".to_owned(), |pid| pid.to_string()),
            if session.attached {
                format!("{} (attached)", session.stdin_mode.as_str())
            } else {
                session.stdin_mode.as_str().to_owned()
            },
            session.cwd.clone(),
            banger_host::ssh::command::remote_command_line(&session.command),
        ]);
    }
    rows
}

fn print_session(session: &SessionInfo, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(session);
    }
    let bytes =
        |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |value| value.to_string());
    let rows = vec![
        vec!["name".to_owned(), session.name.to_string()],
        vec!["vm".to_owned(), session.vm.to_string()],
        vec!["state".to_owned(), describe_state(session)],
        vec![
            "pid".to_owned(),
            session
                .pid
                .map_or_else(|| "-".to_owned(), |pid| pid.to_string()),
        ],
        vec![
            "command".to_owned(),
            banger_host::ssh::command::remote_command_line(&session.command),
        ],
        vec!["cwd".to_owned(), session.cwd.clone()],
        vec!["stdin".to_owned(), session.stdin_mode.as_str().to_owned()],
        vec!["attached".to_owned(), session.attached.to_string()],
        vec!["stdout bytes".to_owned(), bytes(session.stdout_bytes)],
        vec!["stderr bytes".to_owned(), bytes(session.stderr_bytes)],
    ];
    output::line(&output::sanitize(&output::table(&rows)))?;
    Ok(())
}

async fn logs(
    client: &banger_client::DaemonClient,
    args: SessionLogsArgs,
) -> anyhow::Result<ExitCode> {
    let vm = args.vm;
    let stream = match args.stream {
        LogStreamArg::Stdout => LogStream::Stdout,
        LogStreamArg::Stderr => LogStream::Stderr,
    };
    let mut body = client
        .session_logs(&vm, &args.session, stream, args.follow)
        .await?;
    // A pipe gets the exact bytes; a terminal gets text that cannot drive it.
    let terminal = std::io::stdout().is_terminal();
    while let Some(chunk) = body.next_chunk().await? {
        write_output(&mut std::io::stdout().lock(), &chunk, terminal)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_output(out: &mut dyn Write, bytes: &[u8], terminal: bool) -> std::io::Result<()> {
    if terminal {
        out.write_all(output::sanitize(&String::from_utf8_lossy(bytes)).as_bytes())?;
    } else {
        out.write_all(bytes)?;
    }
    out.flush()
}

/// What ended an attach.
enum AttachEnd {
    /// The user detached; the session runs on.
    Detached,
    /// The session exited while attached.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// The daemon or agent closed the connection.
    Closed,
}

async fn attach(
    client: &banger_client::DaemonClient,
    target: SessionRef,
) -> anyhow::Result<ExitCode> {
    let vm = target.vm;
    let connection = client.attach_session(&vm, &target.session).await?;
    eprintln!(
        "attached to session {} of VM {vm}; detach with Ctrl-] (then Enter on a terminal) or end of input",
        target.session
    );
    let (mut reader, mut writer) = tokio::io::split(connection);
    let mut input = spawn_stdin_reader();
    let terminal = std::io::stdout().is_terminal();
    let output = async {
        let mut buffer = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            while let Some(frame) = AttachFrame::decode(&mut buffer)? {
                match frame {
                    AttachFrame::Stdout(bytes) => {
                        write_output(&mut std::io::stdout().lock(), &bytes, terminal)?;
                    }
                    AttachFrame::Stderr(bytes) => {
                        write_output(&mut std::io::stderr().lock(), &bytes, terminal)?;
                    }
                    AttachFrame::Exit { code, signal } => {
                        return Ok::<_, anyhow::Error>(AttachEnd::Exited { code, signal });
                    }
                    AttachFrame::Stdin(_) | AttachFrame::Detach => {}
                }
            }
            let read = reader.read(&mut chunk).await?;
            if read == 0 {
                return Ok(AttachEnd::Closed);
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
    };
    let forward = async {
        let mut frame = Vec::new();
        while let Some(bytes) = input.recv().await {
            frame.clear();
            let (data, detach) = match bytes.iter().position(|byte| *byte == DETACH_BYTE) {
                Some(index) => (&bytes[..index], true),
                None => (&bytes[..], bytes.is_empty()),
            };
            if !data.is_empty() {
                AttachFrame::Stdin(data.to_vec()).encode(&mut frame);
            }
            if detach {
                AttachFrame::Detach.encode(&mut frame);
            }
            writer.write_all(&frame).await?;
            writer.flush().await?;
            if detach {
                break;
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    tokio::pin!(output);
    let end = tokio::select! {
        end = &mut output => end?,
        sent = forward => {
            sent?;
            // The agent answers a detach by closing; a session exit that
            // raced with it still arrives as an Exit frame.
            match tokio::time::timeout(std::time::Duration::from_secs(5), output).await {
                Ok(Ok(AttachEnd::Exited { code, signal })) => AttachEnd::Exited { code, signal },
                _ => AttachEnd::Detached,
            }
        }
    };
    Ok(match end {
        AttachEnd::Detached => {
            eprintln!(
                "detached; session {} keeps running (`banger vm session attach {vm} {}` to come back)",
                target.session, target.session
            );
            ExitCode::SUCCESS
        }
        AttachEnd::Exited { code, signal } => {
            match (code, signal) {
                (Some(code), _) => eprintln!("session {} exited with code {code}", target.session),
                (None, Some(signal)) => {
                    eprintln!("session {} was killed by signal {signal}", target.session);
                }
                (None, None) => eprintln!("session {} exited", target.session),
            }
            super::ssh::exit_code(code.unwrap_or_else(|| 128 + signal.unwrap_or(0)))
        }
        AttachEnd::Closed => {
            eprintln!("the connection to session {} closed", target.session);
            ExitCode::from(1)
        }
    })
}

/// Reads stdin on a plain thread (a blocked read must not keep the runtime
/// from exiting); an empty chunk means end of input.
fn spawn_stdin_reader() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let read = match stdin.read(&mut buffer) {
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if sender.blocking_send(buffer[..read].to_vec()).is_err() || read == 0 {
                return;
            }
        }
    });
    receiver
}
