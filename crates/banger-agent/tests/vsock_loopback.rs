//! Runs the real agent binary on the host and talks to it over vsock
//! loopback (CID 1), which needs `vsock_loopback` in the host kernel.
//!
//! Ignored by default: the CI machine's kernel is built without it
//! (`CONFIG_VSOCKETS_LOOPBACK` unset, so there is no module to load), and a
//! test that cannot run there must not look green. Run it with `--ignored`
//! on a host that has it; without it, it then fails under CI and reports
//! itself SKIPPED elsewhere (`banger_testkit::skip_or_fail`). The agent's
//! vsock path is also covered by banger-vmm's `qemu_boot` and the VM
//! end-to-end suites, through real guests.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use banger_agent_proto::{Envelope, MAX_FRAME_BYTES, PROTOCOL_VERSION, Request, Response};
use vsock::{VsockAddr, VsockStream};

/// `VMADDR_CID_LOCAL`: loopback within the host.
const CID_LOCAL: u32 = 1;

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ask(port: u32, request: Request) -> std::io::Result<Response> {
    let mut stream = VsockStream::connect(&VsockAddr::new(CID_LOCAL, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let frame = banger_agent_proto::encode(&Envelope {
        version: PROTOCOL_VERSION,
        request,
    })
    .map_err(std::io::Error::other)?;
    stream.write_all(&frame)?;
    let mut line = Vec::new();
    BufReader::new(stream)
        .take(MAX_FRAME_BYTES as u64)
        .read_until(b'\n', &mut line)?;
    banger_agent_proto::decode(&line).map_err(std::io::Error::other)
}

#[test]
#[ignore = "needs vsock_loopback in the host kernel; the CI kernel has CONFIG_VSOCKETS_LOOPBACK unset"]
fn agent_answers_over_vsock_loopback() {
    // A port unlikely to collide with another test run.
    let port = 20_000 + std::process::id() % 20_000;
    let child = Command::new(env!("CARGO_BIN_EXE_banger-vsock-agent"))
        .args(["--port", &port.to_string()])
        .stderr(Stdio::null())
        .spawn()
        .expect("agent starts");
    let mut agent = Agent(child);
    let started = Instant::now();
    let health = loop {
        match ask(port, Request::Health) {
            Ok(response) => break response,
            Err(error) => {
                let exited = agent.0.try_wait().ok().flatten().is_some();
                if exited || started.elapsed() > Duration::from_secs(3) {
                    banger_testkit::skip_or_fail(format!(
                        "no vsock loopback on this host ({error}; agent exited: {exited}); \
                         load the vsock_loopback module to run it"
                    ));
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert!(
        matches!(health, Response::Health { protocol_version, .. } if protocol_version == PROTOCOL_VERSION),
        "{health:?}"
    );

    // A TCP listener of ours must show up, owned by this test process.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let our_port = listener.local_addr().expect("addr").port();
    match ask(port, Request::ListeningPorts).expect("ports") {
        Response::ListeningPorts { sockets, .. } => {
            let ours = sockets
                .iter()
                .find(|s| s.port == our_port)
                .unwrap_or_else(|| panic!("port {our_port} missing from {sockets:?}"));
            let process = ours.process.as_ref().expect("owner found");
            assert_eq!(process.pid, std::process::id());
        }
        other => panic!("unexpected {other:?}"),
    }

    match ask(port, Request::Stats).expect("stats") {
        Response::Stats(stats) => {
            assert!(stats.mem_total_bytes > 0);
            assert!(stats.fs_root.is_some());
        }
        other => panic!("unexpected {other:?}"),
    }
}
