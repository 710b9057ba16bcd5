//! The web UI in a real browser: Debian's `chromium` (headless) driven by
//! `chromedriver` over WebDriver (fantoccini), against a real bangerd and
//! one real Debian guest under QEMU, inside a network namespace the test
//! creates (the daemon, its web UI on 127.0.0.1:7777, chromedriver and the
//! browser all live there; this test's WebDriver and raw HTTP connections
//! are made from a thread that entered it).
//!
//! One booted VM is shared by every check: the list shows it; its state
//! changes on the page when the CLI stops it; the start button (list) and
//! the stop button (VM page) work, the CLI agreeing; the browser logs no
//! error; a request without the cookie gets 401 and one with a foreign
//! Host 421. Screenshots of the list, the VM page and the create form go
//! to docs/images/ with `BANGER_UPDATE_SCREENSHOTS=1` (else to a temp dir).
//!
//! Two quick checks need neither browser nor VM: a non-loopback
//! `web_listen_addr` stops bangerd at start, and with the UI disabled
//! `banger web` says so.

mod common;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::vm_suite::Suite;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VM: &str = "webvm";
const WEB: &str = "127.0.0.1:7777";
const DRIVER_PORT: u16 = 9515;
/// A start under TCG: boot plus SSH.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// chromedriver, killed on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Moves the calling thread into the namespace, so the sockets it opens
/// (the WebDriver session's, the raw HTTP checks') are made there.
fn enter_namespace(name: &str) {
    let file = fs_err::File::open(format!("/var/run/netns/{name}")).expect("open the namespace");
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .expect("setns into the test's namespace");
}

/// Reads one HTTP/1.1 response: up to the end of its `Content-Length`
/// body, or to the end of the connection (chromedriver keeps it open).
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let read = async {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let count = stream.read(&mut chunk).await.expect("read");
            if count == 0 {
                break;
            }
            buffer.extend_from_slice(&chunk[..count]);
            let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok());
            if length.is_some_and(|length| buffer.len() >= end + 4 + length) {
                break;
            }
        }
        String::from_utf8_lossy(&buffer).into_owned()
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("an HTTP response within 30 s")
}

/// One raw HTTP/1.1 GET to the web UI: status code and body.
async fn raw_get(path: &str, host: &str, cookie: Option<&str>) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(WEB).await.expect("connect");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        request.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let response = read_response(&mut stream).await;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// One POST to chromedriver outside fantoccini (its log endpoint).
async fn driver_post(path: &str, body: &Value) -> Value {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", DRIVER_PORT))
        .await
        .expect("connect to chromedriver");
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{DRIVER_PORT}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let response = read_response(&mut stream).await;
    let json = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(json).unwrap_or(Value::Null)
}

/// Waits until the page's text at `css` satisfies `done`.
async fn wait_text(
    browser: &Client,
    css: &str,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(element) = browser.find(Locator::Css(css)).await {
            if let Ok(text) = element.text().await {
                if done(&text) {
                    return text;
                }
                last = text;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let page = browser.source().await.unwrap_or_default();
    panic!("{css} did not get there within {timeout:?} (last text {last:?}); page:\n{page}");
}

/// Whether the button at `css` exists and is enabled.
async fn is_enabled(browser: &Client, css: &str) -> bool {
    match browser.find(Locator::Css(css)).await {
        Ok(button) => matches!(button.attr("disabled").await, Ok(None)),
        Err(_) => false,
    }
}

/// Waits until the button at `css` is enabled (the page disables a VM's
/// buttons while an action on it is in flight: a start answers only once
/// SSH does, after the state already shows `running`), then clicks it.
async fn click_when_enabled(browser: &Client, css: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if is_enabled(browser, css).await {
            if let Ok(button) = browser.find(Locator::Css(css)).await {
                button.click().await.expect("click");
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{css} was not enabled within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn screenshot(browser: &Client, dir: &Path, name: &str) {
    // Let charts and late requests settle.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let png = browser.screenshot().await.expect("screenshot");
    fs_err::write(dir.join(name), png).expect("write the screenshot");
}

fn vm_state(suite: &Suite) -> String {
    suite.json(&["vm", "show", VM, "--json"])["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Errors the page caught (`window.onerror`, unhandled rejections and
/// `console.error` after the collector was installed).
const COLLECTOR: &str = r#"
if (!window.__errors) {
  window.__errors = [];
  window.addEventListener("error", (e) => window.__errors.push(String(e.message)));
  window.addEventListener("unhandledrejection", (e) => window.__errors.push(String(e.reason)));
  const original = console.error;
  console.error = (...args) => { window.__errors.push(args.join(" ")); original(...args); };
}
"#;

async fn collected_errors(browser: &Client) -> Vec<Value> {
    let errors = browser
        .execute("return window.__errors || [];", vec![])
        .await
        .expect("read the collector");
    errors.as_array().cloned().unwrap_or_default()
}

async fn drive(suite: &Suite, login_url: &str, shots: &Path) {
    // Requests without the cookie are refused, and so is a foreign Host.
    let (status, _) = raw_get("/api/vms", WEB, None).await;
    assert_eq!(status, 401, "/api/vms without the cookie");
    let (status, _) = raw_get("/", WEB, None).await;
    assert_eq!(status, 401, "/ without the cookie");
    let secret = login_url.rsplit("token=").next().expect("a token");
    let (status, _) = raw_get(
        "/api/vms",
        "rebound.example:7777",
        Some(&format!("banger_web_7777={secret}")),
    )
    .await;
    assert_eq!(status, 421, "a foreign Host with the cookie");
    let (status, body) = raw_get("/api/vms", WEB, Some(&format!("banger_web_7777={secret}"))).await;
    assert_eq!(status, 200, "with the cookie: {body}");

    // Wait for chromedriver.
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", DRIVER_PORT))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--window-size=1280,860"]}),
    );
    capabilities.insert("goog:loggingPrefs".to_owned(), json!({"browser": "ALL"}));
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{DRIVER_PORT}"))
        .await
        .expect("a WebDriver session");

    // Logging in: the token URL sets the cookie and lands on the list,
    // which shows the VM running.
    let started = Instant::now();
    browser.goto(login_url).await.expect("open the URL");
    let url = browser.current_url().await.expect("url");
    assert!(!url.as_str().contains("token="), "the token stays in {url}");
    browser.execute(COLLECTOR, vec![]).await.expect("collector");
    let row_state = format!("tr[data-vm=\"{VM}\"] .state");
    wait_text(&browser, &row_state, PAGE_TIMEOUT, |text| text == "running").await;
    let paint = browser
        .execute(
            "const paint = performance.getEntriesByName('first-contentful-paint')[0]; return paint ? paint.startTime : null;",
            vec![],
        )
        .await
        .expect("paint timing");
    eprintln!(
        "first contentful paint at {paint} ms after navigation; the list with the VM after {} ms",
        started.elapsed().as_millis()
    );
    // The issue's budget is 200 ms on localhost (measured here: 130 to
    // 200 ms, debug build, busy host); the bound leaves room for a loaded
    // CI host.
    let paint = paint.as_f64().expect("a first contentful paint");
    assert!(paint < 500.0, "first contentful paint at {paint} ms");
    wait_text(&browser, "#live", PAGE_TIMEOUT, |text| text == "live").await;

    // The CLI stops it: the page follows through the event stream.
    suite.ok(&["vm", "stop", VM]);
    wait_text(&browser, &row_state, PAGE_TIMEOUT, |text| text == "stopped").await;

    // The list's start button starts it; the CLI agrees.
    click_when_enabled(
        &browser,
        &format!("tr[data-vm=\"{VM}\"] button[data-action=\"start\"]"),
        PAGE_TIMEOUT,
    )
    .await;
    wait_text(&browser, &row_state, BOOT_TIMEOUT, |text| text == "running").await;
    // The start answers once SSH does; the buttons come back then.
    let stop_in_row = format!("tr[data-vm=\"{VM}\"] button[data-action=\"stop\"]");
    let deadline = Instant::now() + BOOT_TIMEOUT;
    while !is_enabled(&browser, &stop_in_row).await {
        assert!(Instant::now() < deadline, "the start did not finish");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(vm_state(suite), "running");
    screenshot(&browser, shots, "web-vms.png").await;

    // The VM page: state, charts, ports, console; its stop button stops it.
    browser
        .goto(&format!("http://{WEB}/#/vm/{VM}"))
        .await
        .expect("VM page");
    browser.execute(COLLECTOR, vec![]).await.expect("collector");
    wait_text(&browser, "#vm-title .state", PAGE_TIMEOUT, |text| {
        text == "running"
    })
    .await;
    wait_text(&browser, "#console", PAGE_TIMEOUT, |text| !text.is_empty()).await;
    screenshot(&browser, shots, "web-vm.png").await;
    // A frozen VMM shows as the last error at once (the `vm_health`
    // event), and goes when it runs again.
    let pid = suite.json(&["vm", "show", VM, "--json"])["pid"]
        .as_u64()
        .expect("a running VM has a pid")
        .to_string();
    let status = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -STOP {pid}: {status}");
    wait_text(&browser, "#last-error", PAGE_TIMEOUT, |text| {
        text.starts_with("unhealthy: ") && text.contains("is stopped")
    })
    .await;
    let status = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -CONT {pid}: {status}");
    wait_text(&browser, "#last-error", PAGE_TIMEOUT, |text| text == "–").await;
    click_when_enabled(&browser, "button[data-action=\"stop\"]", PAGE_TIMEOUT).await;
    wait_text(&browser, "#vm-title .state", PAGE_TIMEOUT, |text| {
        text == "stopped"
    })
    .await;
    assert_eq!(vm_state(suite), "stopped");

    // The create form.
    browser
        .goto(&format!("http://{WEB}/#/create"))
        .await
        .expect("create page");
    browser.execute(COLLECTOR, vec![]).await.expect("collector");
    wait_text(&browser, "#f-image", PAGE_TIMEOUT, |text| {
        text.contains("debian-bookworm-minimal")
    })
    .await;
    screenshot(&browser, shots, "web-create.png").await;

    // No errors: neither the page's collector nor the browser's log.
    let errors = collected_errors(&browser).await;
    assert!(errors.is_empty(), "page errors: {errors:?}");
    let session = browser
        .session_id()
        .await
        .expect("session id")
        .unwrap_or_default();
    let mut log = driver_post(
        &format!("/session/{session}/se/log"),
        &json!({"type": "browser"}),
    )
    .await;
    if log["value"].as_array().is_none() {
        log = driver_post(
            &format!("/session/{session}/log"),
            &json!({"type": "browser"}),
        )
        .await;
    }
    let entries = log["value"].as_array().cloned().expect("the browser log");
    let severe: Vec<&Value> = entries
        .iter()
        .filter(|entry| entry["level"] == "SEVERE")
        .collect();
    assert!(severe.is_empty(), "browser console errors: {severe:?}");
    browser.close().await.expect("end the session");
}

#[test]
fn web_ui_in_a_real_browser() {
    for program in ["chromium", "chromedriver"] {
        if Command::new(program).arg("--version").output().is_err() {
            banger_testkit::skip_or_fail(format!(
                "{program} is not installed (scripts/install-deps.sh installs Debian's chromium and chromium-driver)"
            ));
            return;
        }
    }
    let suite = Suite::bare("web");
    // The image is built in the host namespace (it needs the mirror);
    // the VM then boots in the test's namespace, where the daemon serves
    // the UI on its default address.
    suite.create_in_host_namespace(VM);
    suite.ok(&["vm", "start", VM]);

    let login_url = suite.ok(&["web", "--no-open"]).trim().to_owned();
    assert!(
        login_url.starts_with(&format!("http://{WEB}/?token=")),
        "{login_url}"
    );
    let status = suite.ok(&["daemon", "status"]);
    assert!(status.contains(&login_url), "{status}");

    let shots: PathBuf = if std::env::var_os("BANGER_UPDATE_SCREENSHOTS").is_some() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/images")
    } else {
        suite.env.root().join("screenshots")
    };
    fs_err::create_dir_all(&shots).expect("screenshot dir");

    let mut chromedriver = Command::new("chromedriver");
    chromedriver
        .arg(format!("--port={DRIVER_PORT}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _driver = Driver(
        suite
            .netns
            .wrap(&chromedriver)
            .spawn()
            .expect("chromedriver starts"),
    );

    let namespace = suite.netns.name().to_owned();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter_namespace(&namespace);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(drive(&suite, &login_url, &shots));
            })
            .join()
            .expect("the browser checks pass");
    });
    suite.ok(&["vm", "delete", VM]);
}

/// A web address off loopback stops the daemon at start, naming the key
/// that would allow it (no browser or VM needed; nothing is bound).
#[test]
fn a_non_loopback_web_address_stops_the_daemon_at_start() {
    let env = banger_testkit::TestEnv::new();
    let mut daemon = env
        .bangerd()
        .env("BANGER_WEB_LISTEN_ADDR", "0.0.0.0:7777")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bangerd runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = daemon.kill();
            panic!("bangerd started on a non-loopback web address");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = daemon.wait_with_output().expect("bangerd output");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("0.0.0.0:7777 is not a loopback address")
            && stderr.contains("web_allow_remote = true"),
        "{stderr}"
    );
}

/// With `web_listen_addr = ""` the daemon runs without the UI;
/// `banger web` says so and `daemon status` shows it disabled.
#[test]
fn with_the_ui_disabled_banger_web_says_so() {
    let env = banger_testkit::TestEnv::new();
    let banger = |args: &[&str]| {
        env.banger()
            .args(args)
            .env("BANGER_WEB_LISTEN_ADDR", "")
            .stdin(Stdio::null())
            .output()
            .expect("banger runs")
    };
    let status = banger(&["daemon", "status", "--json"]);
    assert!(status.status.success());
    let status: Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(status["web"]["serving"], false);
    assert_eq!(status["web"]["listen_addr"], "");
    assert!(status.get("web_url").is_none(), "{status}");
    let web = banger(&["web", "--no-open"]);
    assert!(!web.status.success());
    assert!(web.stdout.is_empty(), "stdout is data only");
    let stderr = String::from_utf8_lossy(&web.stderr);
    assert!(stderr.contains("does not serve the web UI"), "{stderr}");
    let _ = banger(&["daemon", "stop"]);
}
