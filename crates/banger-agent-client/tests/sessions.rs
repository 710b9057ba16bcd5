//! Session calls end to end: a fake hybrid-vsock Unix socket does the
//! `CONNECT`/`OK` handshake and hands each connection to the real agent
//! handler (`banger_agent::Agent::serve`) with a temporary session root.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use banger_agent::{Agent, SessionManager};
use banger_agent_client::{
    AgentError, InvalidReply, session_attach, session_list, session_logs, session_remove,
    session_show, session_signal, session_start,
};
use banger_agent_proto::{
    AttachFrame, LogStream, SessionRefusal, SessionSignal, SessionSpec, SessionState, StdinMode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(5);

struct Vm {
    _dir: tempfile::TempDir,
    uds: PathBuf,
}

/// Reads the handshake line byte by byte, so nothing of the request is lost.
fn handshake(stream: &mut UnixStream) -> bool {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        match stream.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            _ => return false,
        }
    }
    line == b"CONNECT 1024\n" && stream.write_all(b"OK 1024\n").is_ok()
}

/// A fake agent that takes one connection, reads its request line and
/// answers with `reply` in a single write, whatever was asked.
fn replying_once(reply: Vec<u8>) -> Vm {
    let dir = tempfile::tempdir().expect("tempdir");
    let uds = dir.path().join("vsock.sock");
    let listener = UnixListener::bind(&uds).expect("bind");
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        assert!(handshake(&mut stream));
        let mut byte = [0u8; 1];
        while stream.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {}
        let _ = stream.write_all(&reply);
    });
    Vm { _dir: dir, uds }
}

fn vm() -> Vm {
    let dir = tempfile::tempdir().expect("tempdir");
    let uds = dir.path().join("vsock.sock");
    let listener = UnixListener::bind(&uds).expect("bind");
    let agent = Arc::new(Agent::new(SessionManager::new(dir.path().join("sessions"))));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let agent = agent.clone();
            std::thread::spawn(move || {
                if handshake(&mut stream) {
                    agent.serve(stream);
                }
            });
        }
    });
    Vm { _dir: dir, uds }
}

fn spec(name: &str, argv: &[&str], stdin_mode: StdinMode) -> SessionSpec {
    SessionSpec {
        name: name.into(),
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        cwd: "/".into(),
        stdin_mode,
        require_commands: vec![],
    }
}

async fn wait_exited(vm: &Vm, name: &str) -> SessionState {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = session_show(&vm.uds, name, TIMEOUT)
            .await
            .expect("show")
            .state;
        if state != SessionState::Running {
            return state;
        }
        assert!(Instant::now() < deadline, "{name} did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn start_list_logs_signal_remove() {
    let vm = vm();
    let status = session_start(
        &vm.uds,
        &spec(
            "job",
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            StdinMode::Detached,
        ),
        TIMEOUT,
    )
    .await
    .expect("start");
    assert_eq!(status.name, "job");
    assert!(status.pid > 0);
    assert_eq!(
        wait_exited(&vm, "job").await,
        SessionState::Exited {
            code: Some(3),
            signal: None
        }
    );
    let (size, mut stream) = session_logs(&vm.uds, "job", LogStream::Stdout, 0, false, TIMEOUT)
        .await
        .expect("logs");
    assert_eq!(size, 4);
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("log bytes");
    assert_eq!(text, "out\n", "no log byte was swallowed with the header");
    let (_, mut stream) = session_logs(&vm.uds, "job", LogStream::Stderr, 2, true, TIMEOUT)
        .await
        .expect("logs from an offset");
    text.clear();
    stream.read_to_string(&mut text).await.expect("log bytes");
    assert_eq!(text, "r\n");

    session_start(
        &vm.uds,
        &spec("sleeper", &["sleep", "1000"], StdinMode::Detached),
        TIMEOUT,
    )
    .await
    .expect("start sleeper");
    let names: Vec<String> = session_list(&vm.uds, TIMEOUT)
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["job", "sleeper"]);

    let error = session_remove(&vm.uds, "sleeper", TIMEOUT)
        .await
        .expect_err("still running");
    assert!(matches!(
        &error,
        AgentError::SessionRefused {
            reason: SessionRefusal::StillRunning { .. }
        }
    ));
    assert_eq!(
        error.to_string(),
        "session \"sleeper\" is still running (stop it first)"
    );
    session_signal(&vm.uds, "sleeper", SessionSignal::Terminate, TIMEOUT)
        .await
        .expect("terminate");
    assert_eq!(
        wait_exited(&vm, "sleeper").await,
        SessionState::Exited {
            code: None,
            signal: Some(15)
        }
    );
    session_remove(&vm.uds, "sleeper", TIMEOUT)
        .await
        .expect("remove");
    let error = session_start(
        &vm.uds,
        &spec("x", &["no-such-command-xyz"], StdinMode::Detached),
        TIMEOUT,
    )
    .await
    .expect_err("missing command");
    assert!(
        error
            .to_string()
            .starts_with("command \"no-such-command-xyz\" is not on the guest PATH"),
        "{error}"
    );
}

async fn next_frame(stream: &mut tokio::net::UnixStream, buf: &mut Vec<u8>) -> Option<AttachFrame> {
    loop {
        if let Some(frame) = AttachFrame::decode(buf).expect("valid frame") {
            return Some(frame);
        }
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(TIMEOUT, stream.read(&mut chunk))
            .await
            .expect("frame in time")
            .expect("read");
        if read == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_round_trip() {
    let vm = vm();
    session_start(&vm.uds, &spec("cat", &["cat"], StdinMode::Pipe), TIMEOUT)
        .await
        .expect("start");
    let (status, mut stream) = session_attach(&vm.uds, "cat", TIMEOUT)
        .await
        .expect("attach");
    assert!(status.attached);
    let error = session_attach(&vm.uds, "cat", TIMEOUT)
        .await
        .expect_err("second attach");
    assert!(matches!(
        error,
        AgentError::SessionRefused {
            reason: SessionRefusal::AlreadyAttached { .. }
        }
    ));
    let mut bytes = Vec::new();
    AttachFrame::Stdin(b"hello\n".to_vec()).encode(&mut bytes);
    stream.write_all(&bytes).await.expect("stdin");
    let mut buf = Vec::new();
    assert_eq!(
        next_frame(&mut stream, &mut buf).await,
        Some(AttachFrame::Stdout(b"hello\n".to_vec()))
    );
    session_signal(&vm.uds, "cat", SessionSignal::Kill, TIMEOUT)
        .await
        .expect("kill");
    assert_eq!(
        next_frame(&mut stream, &mut buf).await,
        Some(AttachFrame::Exit {
            code: None,
            signal: Some(9)
        })
    );
    assert_eq!(next_frame(&mut stream, &mut buf).await, None);
}

/// A fake agent that sends the reply line and the first stream bytes in one
/// write: the client must leave those bytes in the returned stream.
#[tokio::test(flavor = "multi_thread")]
async fn bytes_right_after_the_header_stay_in_the_stream() {
    let vm = replying_once(b"{\"type\":\"log_stream\",\"size\":9}\nraw\nbytes".to_vec());
    let (size, mut stream) = session_logs(&vm.uds, "web", LogStream::Stdout, 0, false, TIMEOUT)
        .await
        .expect("logs");
    assert_eq!(size, 9);
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.expect("rest");
    assert_eq!(rest, b"raw\nbytes");
}

/// Hostile session replies: bad names and a status for another session are
/// refused, escape sequences in argv are neutralised.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_session_replies_are_refused_or_sanitised() {
    async fn reply(line: &'static str) -> Result<banger_agent_proto::SessionStatus, AgentError> {
        let vm = replying_once(line.as_bytes().to_vec());
        session_show(&vm.uds, "web", TIMEOUT).await
    }
    let status = |name: &str, argv: &str| {
        format!(
            "{{\"type\":\"session\",\"session\":{{\"name\":\"{name}\",\"argv\":[{argv}],\"cwd\":\"/\",\"stdin_mode\":\"pipe\",\"pid\":5,\"started_at_unix\":1,\"state\":{{\"kind\":\"running\"}},\"attached\":false,\"stdout_bytes\":0,\"stderr_bytes\":0}}}}\n"
        )
    };
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    assert!(matches!(
        reply(leak(status("../etc", "\"sh\""))).await,
        Err(AgentError::Invalid {
            reason: InvalidReply::SessionName { .. },
            ..
        })
    ));
    assert!(matches!(
        reply(leak(status("other", "\"sh\""))).await,
        Err(AgentError::Invalid {
            reason: InvalidReply::OtherSession { .. },
            ..
        })
    ));
    assert!(matches!(
        reply(leak(status("web", ""))).await,
        Err(AgentError::Invalid {
            reason: InvalidReply::SessionArgCount { count: 0, .. },
            ..
        })
    ));
    let clean = reply(leak(status("web", "\"\\u001b]0;pwned\\u0007sh\"")))
        .await
        .expect("status");
    assert!(
        !clean.argv[0].chars().any(char::is_control),
        "{:?}",
        clean.argv
    );
}
