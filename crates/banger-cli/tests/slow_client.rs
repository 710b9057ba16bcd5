//! One client sending its request a byte per second while 50 others use the
//! API at once (docs/reliability.md, "Fault matrix: the daemon"): nobody
//! waits on the slow one (every other request is answered quickly), and the
//! slow one is cut off when its request head has not arrived within the
//! daemon's header deadline (`bangerd::listener::HEADER_READ_TIMEOUT`,
//! 10 s). A real daemon; raw HTTP over its socket so the latency measured
//! is the daemon's, not process start-up's.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use banger_testkit::TestEnv;

/// Parallel clients.
const CLIENTS: usize = 50;
/// Requests each makes, one after another.
const REQUESTS_EACH: usize = 4;
/// The daemon's deadline for a request head.
const HEADER_DEADLINE: Duration = Duration::from_secs(10);

/// One `GET /v1/vms`; returns the status line and how long the answer took.
fn get_vms(socket: &Path) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream
        .write_all(b"GET /v1/vms HTTP/1.1\r\nHost: bangerd\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    let text = String::from_utf8_lossy(&answer);
    let status = text.lines().next().unwrap_or_default().to_owned();
    (status, started.elapsed())
}

/// Sends a request head a byte per second until the daemon closes the
/// connection; returns how long that took (or `None` if it never did
/// within twice the deadline).
fn trickle(socket: PathBuf) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = UnixStream::connect(&socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("read timeout");
    let request = b"GET /v1/vms HTTP/1.1\r\nHost: bangerd\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    for byte in request.iter().cycle() {
        if started.elapsed() > HEADER_DEADLINE * 2 {
            return None;
        }
        if stream.write_all(&[*byte]).is_err() {
            return Some(started.elapsed());
        }
        // Waits the second between bytes, and notices a close meanwhile.
        let mut buf = [0u8; 256];
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => panic!("the daemon answered a request it never fully got"),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn a_slow_client_delays_nobody_and_is_cut_off_at_the_header_deadline() {
    let env = TestEnv::new();
    let status = env
        .banger()
        .args(["daemon", "status"])
        .stdin(Stdio::null())
        .output()
        .expect("banger runs");
    assert!(status.status.success(), "the daemon starts");
    let socket = env.paths().socket();

    let slow = {
        let socket = socket.clone();
        std::thread::spawn(move || trickle(socket))
    };
    // The slow client is in the middle of its head when the others come.
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                (0..REQUESTS_EACH)
                    .map(|_| get_vms(&socket))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for client in clients {
        for (status, took) in client.join().expect("a client thread") {
            assert!(status.contains(" 200 "), "a request failed: {status}");
            latencies.push(took);
        }
    }
    let all_done = started.elapsed();
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let max = latencies[latencies.len() - 1];
    println!(
        "{} requests from {CLIENTS} clients in {:.2} s beside a slow client: median {:.1} ms, max {:.1} ms",
        latencies.len(),
        all_done.as_secs_f64(),
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    );
    // The slow client has 10 s; nobody may have waited anything near that.
    assert!(
        max < Duration::from_secs(3),
        "a request waited {max:?} (median {median:?})"
    );
    assert!(
        all_done < HEADER_DEADLINE - Duration::from_secs(2),
        "the others took {all_done:?}, as if they waited on the slow client"
    );

    let cut = slow.join().expect("the slow client thread");
    let cut = cut.expect("the daemon never closed the slow client's connection");
    println!(
        "the slow client was cut off after {:.1} s",
        cut.as_secs_f64()
    );
    assert!(
        cut >= HEADER_DEADLINE - Duration::from_secs(1)
            && cut < HEADER_DEADLINE + Duration::from_secs(4),
        "cut off after {cut:?}, expected about {HEADER_DEADLINE:?}"
    );
    // And the daemon serves on.
    let (status, _) = get_vms(&socket);
    assert!(status.contains(" 200 "), "{status}");
}
