//! The session manager end to end on the host: requests go through
//! `Agent::serve` over Unix socket pairs, exactly as over vsock, with a
//! temporary session root.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use banger_agent::{Agent, SessionManager};
use banger_agent_proto::{
    AttachFrame, Envelope, LogStream, PROTOCOL_VERSION, Request, Response, SessionRefusal,
    SessionSignal, SessionSpec, SessionState, SessionStatus, StdinMode,
};

struct Fixture {
    root: tempfile::TempDir,
    agent: Arc<Agent>,
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().expect("tempdir");
    let agent = Arc::new(Agent::new(SessionManager::new(
        root.path().join("sessions"),
    )));
    Fixture { root, agent }
}

impl Fixture {
    /// Sends `request` on a fresh connection served by the agent on its own
    /// thread; returns the reply and the connection (for streams).
    fn open(&self, request: Request) -> (Response, BufReader<UnixStream>) {
        let (host, guest) = UnixStream::pair().expect("pair");
        let agent = self.agent.clone();
        std::thread::spawn(move || agent.serve(guest));
        let mut frame = banger_agent_proto::encode(&Envelope {
            version: PROTOCOL_VERSION,
            request,
        })
        .expect("encode");
        (&host).write_all(&frame).expect("send");
        frame.clear();
        let mut reader = BufReader::new(host);
        reader.read_until(b'\n', &mut frame).expect("reply");
        let response = banger_agent_proto::decode(&frame).expect("decode reply");
        (response, reader)
    }

    fn ask(&self, request: Request) -> Response {
        self.open(request).0
    }

    fn start(&self, name: &str, argv: &[&str], mode: StdinMode) -> Response {
        self.ask(Request::SessionStart(spec(name, argv, mode)))
    }

    fn show(&self, name: &str) -> SessionStatus {
        match self.ask(Request::SessionShow { name: name.into() }) {
            Response::Session { session } => session,
            other => panic!("show {name}: {other:?}"),
        }
    }

    fn wait_exited(&self, name: &str) -> SessionState {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = self.show(name).state;
            if state != SessionState::Running {
                return state;
            }
            assert!(Instant::now() < deadline, "{name} did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn logs(&self, name: &str, stream: LogStream, follow: bool) -> String {
        let (response, mut reader) = self.open(Request::SessionLogs {
            name: name.into(),
            stream,
            offset: 0,
            follow,
        });
        assert!(
            matches!(response, Response::LogStream { .. }),
            "{response:?}"
        );
        let mut text = String::new();
        reader.read_to_string(&mut text).expect("log bytes");
        text
    }

    fn session_dir(&self, name: &str) -> std::path::PathBuf {
        self.root.path().join("sessions").join(name)
    }
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

fn refused(response: Response) -> SessionRefusal {
    match response {
        Response::SessionRefused { reason } => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn output_goes_to_the_logs_and_the_exit_code_is_recorded() {
    let f = fixture();
    let started = f.start(
        "job",
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        StdinMode::Detached,
    );
    assert!(
        matches!(started, Response::SessionStarted { .. }),
        "{started:?}"
    );
    assert_eq!(
        f.wait_exited("job"),
        SessionState::Exited {
            code: Some(3),
            signal: None
        }
    );
    assert_eq!(f.logs("job", LogStream::Stdout, false), "out\n");
    assert_eq!(f.logs("job", LogStream::Stderr, false), "err\n");
    let status = f.show("job");
    assert_eq!((status.stdout_bytes, status.stderr_bytes), (4, 4));
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| path.metadata().expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&f.session_dir("job")), 0o700);
    assert_eq!(mode(&f.session_dir("job").join("stdout.log")), 0o600);
    // The environment is the fixed session one.
    f.start(
        "env",
        &["sh", "-c", "echo $HOME $PATH $TERM"],
        StdinMode::Detached,
    );
    f.wait_exited("env");
    assert_eq!(
        f.logs("env", LogStream::Stdout, false),
        format!("/root {} dumb\n", banger_agent_proto::SESSION_PATH)
    );
}

#[test]
fn missing_commands_and_cwd_and_duplicates_are_refused() {
    let f = fixture();
    assert_eq!(
        refused(f.start("a", &["no-such-command-xyz"], StdinMode::Detached)),
        SessionRefusal::MissingCommand {
            command: "no-such-command-xyz".into()
        }
    );
    let mut with_requires = spec("a", &["true"], StdinMode::Detached);
    with_requires.require_commands = vec!["sh".into(), "missing-one".into(), "missing-two".into()];
    assert_eq!(
        refused(f.ask(Request::SessionStart(with_requires))),
        SessionRefusal::MissingCommand {
            command: "missing-one".into()
        }
    );
    let mut bad_cwd = spec("a", &["true"], StdinMode::Detached);
    bad_cwd.cwd = "/no/such/dir".into();
    assert_eq!(
        refused(f.ask(Request::SessionStart(bad_cwd))),
        SessionRefusal::MissingCwd {
            path: "/no/such/dir".into()
        }
    );
    assert!(matches!(
        refused(f.start("../x", &["true"], StdinMode::Detached)),
        SessionRefusal::InvalidName { .. }
    ));
    assert!(!f.session_dir("a").exists(), "refused starts leave nothing");
    assert!(matches!(
        f.start("a", &["sleep", "1000"], StdinMode::Detached),
        Response::SessionStarted { .. }
    ));
    assert_eq!(
        refused(f.start("a", &["true"], StdinMode::Detached)),
        SessionRefusal::AlreadyExists { name: "a".into() }
    );
    assert_eq!(
        f.ask(Request::SessionSignal {
            name: "a".into(),
            signal: SessionSignal::Kill
        }),
        Response::Done
    );
    assert_eq!(
        f.wait_exited("a"),
        SessionState::Exited {
            code: None,
            signal: Some(9)
        }
    );
}

#[test]
fn terminate_stops_the_session_and_remove_needs_it_exited() {
    let f = fixture();
    f.start("sleeper", &["sleep", "1000"], StdinMode::Detached);
    assert_eq!(
        refused(f.ask(Request::SessionRemove {
            name: "sleeper".into()
        })),
        SessionRefusal::StillRunning {
            name: "sleeper".into()
        }
    );
    // Follow the (empty) log: it must end once the session exits.
    let (response, mut follower) = f.open(Request::SessionLogs {
        name: "sleeper".into(),
        stream: LogStream::Stdout,
        offset: 0,
        follow: true,
    });
    assert_eq!(response, Response::LogStream { size: 0 });
    let follow = std::thread::spawn(move || {
        let mut rest = Vec::new();
        follower.read_to_end(&mut rest).map(|_| rest.len())
    });
    let listed = match f.ask(Request::SessionList) {
        Response::Sessions { sessions, .. } => sessions,
        other => panic!("{other:?}"),
    };
    assert_eq!(listed.len(), 1);
    assert_eq!(
        f.ask(Request::SessionSignal {
            name: "sleeper".into(),
            signal: SessionSignal::Terminate
        }),
        Response::Done
    );
    assert_eq!(
        f.wait_exited("sleeper"),
        SessionState::Exited {
            code: None,
            signal: Some(15)
        }
    );
    assert_eq!(follow.join().expect("follower").expect("read"), 0);
    assert_eq!(
        refused(f.ask(Request::SessionSignal {
            name: "sleeper".into(),
            signal: SessionSignal::Kill
        })),
        SessionRefusal::NotRunning {
            name: "sleeper".into()
        }
    );
    assert!(f.session_dir("sleeper").exists());
    assert_eq!(
        f.ask(Request::SessionRemove {
            name: "sleeper".into()
        }),
        Response::Done
    );
    assert!(!f.session_dir("sleeper").exists());
    assert_eq!(
        refused(f.ask(Request::SessionShow {
            name: "sleeper".into()
        })),
        SessionRefusal::NotFound {
            name: "sleeper".into()
        }
    );
}

#[test]
fn logs_follow_streams_new_output_until_exit() {
    let f = fixture();
    f.start(
        "ticker",
        &[
            "sh",
            "-c",
            "for i in 1 2 3; do echo tick $i; sleep 0.2; done",
        ],
        StdinMode::Detached,
    );
    assert_eq!(
        f.logs("ticker", LogStream::Stdout, true),
        "tick 1\ntick 2\ntick 3\n"
    );
    // Logs of a session the agent forgot (as after a reboot) are served
    // from the file; an unknown name is refused.
    let forgotten = fixture();
    let dir = forgotten.session_dir("old");
    fs_err::create_dir_all(&dir).expect("dir");
    fs_err::write(dir.join("stderr.log"), "from the last boot\n").expect("log");
    assert_eq!(
        forgotten.logs("old", LogStream::Stderr, true),
        "from the last boot\n"
    );
    assert!(matches!(
        refused(forgotten.ask(Request::SessionLogs {
            name: "nope".into(),
            stream: LogStream::Stdout,
            offset: 0,
            follow: false
        })),
        SessionRefusal::NotFound { .. }
    ));
}

/// Reads frames until one matches `wanted` (skipping others), with a deadline.
fn read_frame(reader: &mut BufReader<UnixStream>, buf: &mut Vec<u8>) -> Option<AttachFrame> {
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    loop {
        if let Some(frame) = AttachFrame::decode(buf).expect("valid frame") {
            return Some(frame);
        }
        let mut chunk = [0u8; 4096];
        match reader.read(&mut chunk).expect("read frame") {
            0 => return None,
            read => buf.extend_from_slice(&chunk[..read]),
        }
    }
}

fn send(reader: &BufReader<UnixStream>, frame: AttachFrame) {
    let mut bytes = Vec::new();
    frame.encode(&mut bytes);
    reader.get_ref().write_all(&bytes).expect("send frame");
}

#[test]
fn attach_forwards_stdin_and_output_and_survives_detach() {
    let f = fixture();
    f.start("cat", &["cat"], StdinMode::Pipe);
    let (response, mut attached) = f.open(Request::SessionAttach { name: "cat".into() });
    assert!(
        matches!(&response, Response::Attached { session } if session.attached),
        "{response:?}"
    );
    assert_eq!(
        refused(f.ask(Request::SessionAttach { name: "cat".into() })),
        SessionRefusal::AlreadyAttached { name: "cat".into() }
    );
    let mut buf = Vec::new();
    send(&attached, AttachFrame::Stdin(b"hello\n".to_vec()));
    assert_eq!(
        read_frame(&mut attached, &mut buf),
        Some(AttachFrame::Stdout(b"hello\n".to_vec()))
    );
    send(&attached, AttachFrame::Detach);
    assert_eq!(
        read_frame(&mut attached, &mut buf),
        None,
        "closed after detach"
    );

    // The slot is free again and stdin is still open.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut again = loop {
        match f.open(Request::SessionAttach { name: "cat".into() }) {
            (Response::Attached { .. }, stream) => break stream,
            (other, _) => {
                assert!(Instant::now() < deadline, "{other:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let mut buf = Vec::new();
    send(&again, AttachFrame::Stdin(b"again\n".to_vec()));
    assert_eq!(
        read_frame(&mut again, &mut buf),
        Some(AttachFrame::Stdout(b"again\n".to_vec()))
    );
    // Dropping the connection detaches too.
    drop(again);
    f.wait_attached("cat", false);

    // Exit reaches the attacher as a frame, then the stream closes.
    let (_, mut last) = f.open(Request::SessionAttach { name: "cat".into() });
    f.ask(Request::SessionSignal {
        name: "cat".into(),
        signal: SessionSignal::Terminate,
    });
    let mut buf = Vec::new();
    assert_eq!(
        read_frame(&mut last, &mut buf),
        Some(AttachFrame::Exit {
            code: None,
            signal: Some(15)
        })
    );
    assert_eq!(read_frame(&mut last, &mut buf), None);
    assert_eq!(f.logs("cat", LogStream::Stdout, false), "hello\nagain\n");
    // Detached sessions cannot be attached to.
    f.start("quiet", &["sleep", "1000"], StdinMode::Detached);
    assert_eq!(
        refused(f.ask(Request::SessionAttach {
            name: "quiet".into()
        })),
        SessionRefusal::NotPipeMode {
            name: "quiet".into()
        }
    );
    f.ask(Request::SessionSignal {
        name: "quiet".into(),
        signal: SessionSignal::Kill,
    });
}

impl Fixture {
    fn wait_attached(&self, name: &str, attached: bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.show(name).attached != attached {
            assert!(Instant::now() < deadline, "{name} attached != {attached}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
