//! A fake Firecracker that validates every API request against the official
//! specification, for testing banger's Firecracker client where Firecracker
//! cannot boot guests.
//!
//! [`FakeFirecracker`] serves HTTP on a Unix socket like `firecracker
//! --api-sock`. Each request is checked by [`schema::ApiSpec`]; refused ones get
//! `400 {"fault_message": ...}` like Firecracker's. Beyond the schema it keeps
//! the little state Firecracker enforces: pre-boot-only operations are refused
//! after `InstanceStart`, `InstanceStart` needs a boot source, and
//! `SendCtrlAltDel` needs a started instance. `PUT /vsock` makes it listen on
//! `uds_path` and answer the hybrid-vsock handshake, echoing bytes afterwards.
//! Every request is recorded ([`RecordedRequest`]) so tests can assert the
//! exact sequence.
//!
//! [`run_as_process`] is the executable mode: a test binary started as
//! `<bin> --api-sock PATH` behaves like `firecracker`, appends its records to
//! `PATH.requests.jsonl` ([`read_records`]) and exits on `SendCtrlAltDel`.

pub mod schema;
#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banger_host::error_chain;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use schema::{ApiSpec, SpecLoadError, SpecNotFound, SpecViolation, default_spec_path};

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// Why the fake refuses a request; its text is the `fault_message`,
/// worded like Firecracker's.
#[derive(Debug, thiserror::Error)]
enum Fault {
    /// The spec does not allow the request.
    #[error(transparent)]
    Spec(#[from] SpecViolation),
    /// A pre-boot-only operation, or a second `InstanceStart`, after the start.
    #[error("The requested operation is not supported after starting the microVM.")]
    AfterStart,
    /// An action that needs a running instance, before the start.
    #[error("The requested operation is not supported before starting the microVM.")]
    BeforeStart,
    /// `InstanceStart` without `PUT /boot-source`.
    #[error("Cannot start microvm without kernel configuration.")]
    NoBootSource,
    /// `PUT /snapshot/create` while the vCPUs run.
    #[error("Cannot create a snapshot of a microVM that is not paused.")]
    NotPaused,
    /// A snapshot file could not be written or read.
    #[error("Cannot {action} snapshot file {path}: {error}")]
    SnapshotFile {
        /// `write` or `read`.
        action: &'static str,
        /// The file.
        path: String,
        /// Why (part of the message, as Firecracker words it).
        error: std::io::Error,
    },
    /// The vsock socket could not be bound.
    #[error("Cannot create vsock backend at {uds}: {error}")]
    VsockBackend {
        /// The requested `uds_path`.
        uds: String,
        /// The bind error (part of Firecracker's message, so not a source).
        error: std::io::Error,
    },
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Parsed JSON body (None when absent or not JSON).
    pub body: Option<Value>,
    /// Status the fake answered.
    pub status: u16,
    /// The fault message for refused requests.
    pub fault_message: Option<String>,
}

impl RecordedRequest {
    /// True for 2xx answers.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Debug)]
struct State {
    spec: ApiSpec,
    requests: Vec<RecordedRequest>,
    started: bool,
    has_boot_source: bool,
    machine_config: Value,
    record_file: Option<PathBuf>,
    tasks: Vec<JoinHandle<()>>,
    /// `uds_path` of `PUT /vsock`, recorded in snapshots.
    vsock_uds: Option<String>,
    /// After `PATCH /vm` Paused (a snapshot needs it).
    paused: bool,
    /// A snapshot was loaded with its vCPUs paused and not resumed yet: the
    /// resume is when the "guest" starts.
    loaded_paused: bool,
    /// The request being answered started the "guest".
    guest_started: bool,
}

/// A running fake Firecracker API server.
#[derive(Debug)]
pub struct FakeFirecracker {
    socket: PathBuf,
    state: Arc<Mutex<State>>,
    ctrl_alt_del: Arc<Notify>,
    instance_start: Arc<Notify>,
    server: JoinHandle<()>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A panicking handler leaves consistent data behind; keep serving.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeFirecracker {
    /// Binds `socket` and serves until dropped. Must run inside a tokio runtime.
    pub fn start(socket: &Path, spec: ApiSpec) -> std::io::Result<Self> {
        Self::start_recording(socket, spec, None)
    }

    /// Like [`Self::start`], also appending every record as a JSON line to
    /// `record_file`.
    pub fn start_recording(
        socket: &Path,
        spec: ApiSpec,
        record_file: Option<PathBuf>,
    ) -> std::io::Result<Self> {
        let listener = UnixListener::bind(socket)?;
        let state = Arc::new(Mutex::new(State {
            spec,
            requests: Vec::new(),
            started: false,
            has_boot_source: false,
            machine_config: json!({"vcpu_count": 1, "mem_size_mib": 128, "smt": false}),
            record_file,
            tasks: Vec::new(),
            vsock_uds: None,
            paused: false,
            loaded_paused: false,
            guest_started: false,
        }));
        let ctrl_alt_del = Arc::new(Notify::new());
        let instance_start = Arc::new(Notify::new());
        let server = {
            let state = state.clone();
            let notify = (ctrl_alt_del.clone(), instance_start.clone());
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let state = state.clone();
                    let notify = notify.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            handle(state.clone(), notify.clone(), request)
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        Ok(Self {
            socket: socket.to_path_buf(),
            state,
            ctrl_alt_del,
            instance_start,
            server,
        })
    }

    /// The API socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// True after an accepted `InstanceStart`.
    pub fn started(&self) -> bool {
        lock(&self.state).started
    }

    /// Resolves when an accepted `SendCtrlAltDel` arrives (also if it
    /// arrived before the call).
    pub async fn ctrl_alt_del(&self) {
        self.ctrl_alt_del.notified().await;
    }

    /// Resolves when an accepted `InstanceStart` arrives (also if it arrived
    /// before the call).
    pub async fn instance_start(&self) {
        self.instance_start.notified().await;
    }
}

impl Drop for FakeFirecracker {
    fn drop(&mut self) {
        self.server.abort();
        for task in lock(&self.state).tasks.drain(..) {
            task.abort();
        }
        let _ = fs_err::remove_file(&self.socket);
    }
}

fn reply(status: StatusCode, body: Option<Value>) -> Response<Full<Bytes>> {
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = status;
    if status != StatusCode::NO_CONTENT {
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
    }
    response
}

async fn handle(
    state: Arc<Mutex<State>>,
    (ctrl_alt_del, instance_start): (Arc<Notify>, Arc<Notify>),
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut state = lock(&state);
    let outcome = decide(&mut state, &method, &path, &body);
    let (status, response_body, fault_message) = match outcome {
        Ok((status, response_body)) => (status, response_body, None),
        Err(fault) => {
            let message = fault.to_string();
            (
                StatusCode::BAD_REQUEST,
                Some(json!({"fault_message": message})),
                Some(message),
            )
        }
    };
    let record = RecordedRequest {
        method,
        path: path.clone(),
        body: serde_json::from_slice(&body).ok(),
        status: status.as_u16(),
        fault_message,
    };
    if let Some(file) = &state.record_file {
        if let Ok(mut file) = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
        {
            let _ = writeln!(file, "{}", json!(record));
        }
    }
    let resumed_load = (record.accepted()
        && path == "/snapshot/load"
        && record.body.as_ref().and_then(|b| b.get("resume_vm")) == Some(&json!(true)))
        || std::mem::take(&mut state.guest_started);
    let action = if resumed_load {
        Some(json!("InstanceStart"))
    } else if record.accepted() && path == "/actions" {
        record
            .body
            .as_ref()
            .and_then(|b| b.get("action_type"))
            .cloned()
    } else {
        None
    };
    state.requests.push(record);
    drop(state);
    if action == Some(json!("SendCtrlAltDel")) {
        ctrl_alt_del.notify_one();
    } else if action == Some(json!("InstanceStart")) {
        instance_start.notify_one();
    }
    Ok(reply(status, response_body))
}

/// Applies one request to the fake's state: `Ok((status, body))` or a fault.
fn decide(
    state: &mut State,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(StatusCode, Option<Value>), Fault> {
    let matched = state.spec.check(method, path, body)?;
    if matched.pre_boot_only && state.started {
        return Err(Fault::AfterStart);
    }
    let body = matched.body.unwrap_or(Value::Null);
    match (method, matched.template.as_str()) {
        ("GET", "/") => {
            let run_state = if state.started {
                "Running"
            } else {
                "Not started"
            };
            let version = state.spec.version.clone();
            Ok((
                StatusCode::OK,
                Some(
                    json!({"app_name": "Firecracker", "id": "anonymous-instance",
                    "state": run_state, "vmm_version": version}),
                ),
            ))
        }
        ("GET", "/version") => Ok((
            StatusCode::OK,
            Some(json!({"firecracker_version": state.spec.version})),
        )),
        ("GET", "/machine-config") => Ok((StatusCode::OK, Some(state.machine_config.clone()))),
        ("GET", _) => Ok((StatusCode::OK, Some(json!({})))),
        ("PUT", "/machine-config") => {
            state.machine_config = body;
            Ok((StatusCode::NO_CONTENT, None))
        }
        ("PUT", "/boot-source") => {
            state.has_boot_source = true;
            Ok((StatusCode::NO_CONTENT, None))
        }
        ("PUT", "/vsock") => {
            if let Some(uds) = body.get("uds_path").and_then(Value::as_str) {
                listen_vsock(state, uds)?;
            }
            Ok((StatusCode::NO_CONTENT, None))
        }
        ("PATCH", "/vm") if !state.started => Err(Fault::BeforeStart),
        ("PATCH", "/vm") => {
            state.paused = body.get("state").and_then(Value::as_str) == Some("Paused");
            if !state.paused && state.loaded_paused {
                state.loaded_paused = false;
                state.guest_started = true;
            }
            Ok((StatusCode::NO_CONTENT, None))
        }
        // A drive can be pointed at another file only once it exists, as
        // Firecracker opens it at once.
        ("PATCH", "/drives/{drive_id}") if !state.started => Err(Fault::BeforeStart),
        ("PATCH", "/drives/{drive_id}") => {
            if let Some(path) = body.get("path_on_host").and_then(Value::as_str) {
                fs_err::metadata(path).map_err(|error| Fault::SnapshotFile {
                    action: "open drive",
                    path: path.to_owned(),
                    error,
                })?;
            }
            Ok((StatusCode::NO_CONTENT, None))
        }
        ("PUT", "/snapshot/create") if !state.started => Err(Fault::BeforeStart),
        ("PUT", "/snapshot/create") if !state.paused => Err(Fault::NotPaused),
        ("PUT", "/snapshot/create") => {
            // The "microVM state" records what a load needs; the "memory"
            // is a placeholder of the configured size's first page.
            let recorded = json!({ "vsock_uds": state.vsock_uds });
            for (field, contents) in [
                ("snapshot_path", recorded.to_string().into_bytes()),
                ("mem_file_path", vec![0u8; 4096]),
            ] {
                let path = body.get(field).and_then(Value::as_str).unwrap_or("");
                fs_err::write(path, contents).map_err(|error| Fault::SnapshotFile {
                    action: "write",
                    path: path.to_owned(),
                    error,
                })?;
            }
            Ok((StatusCode::NO_CONTENT, None))
        }
        ("PUT", "/snapshot/load") => {
            let read = |path: &str| {
                fs_err::read(path).map_err(|error| Fault::SnapshotFile {
                    action: "read",
                    path: path.to_owned(),
                    error,
                })
            };
            let snapshot = body
                .get("snapshot_path")
                .and_then(Value::as_str)
                .unwrap_or("");
            let recorded: Value = serde_json::from_slice(&read(snapshot)?).unwrap_or(Value::Null);
            let memory = body
                .pointer("/mem_backend/backend_path")
                .or_else(|| body.get("mem_file_path"))
                .and_then(Value::as_str)
                .unwrap_or("");
            read(memory)?;
            let uds = body
                .pointer("/vsock_override/uds_path")
                .or_else(|| recorded.get("vsock_uds"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(uds) = uds {
                listen_vsock(state, &uds)?;
            }
            state.started = true;
            state.paused = body.get("resume_vm") != Some(&json!(true));
            state.loaded_paused = state.paused;
            Ok((StatusCode::NO_CONTENT, None))
        }
        ("PUT", "/actions") => match body.get("action_type").and_then(Value::as_str) {
            Some("InstanceStart") if state.started => Err(Fault::AfterStart),
            Some("InstanceStart") if !state.has_boot_source => Err(Fault::NoBootSource),
            Some("InstanceStart") => {
                state.started = true;
                Ok((StatusCode::NO_CONTENT, None))
            }
            Some("SendCtrlAltDel") | Some("FlushMetrics") if !state.started => {
                Err(Fault::BeforeStart)
            }
            _ => Ok((StatusCode::NO_CONTENT, None)),
        },
        _ => Ok((StatusCode::NO_CONTENT, None)),
    }
}

/// Binds the hybrid-vsock socket at `uds` and serves it.
fn listen_vsock(state: &mut State, uds: &str) -> Result<(), Fault> {
    let listener = UnixListener::bind(uds).map_err(|error| Fault::VsockBackend {
        uds: uds.to_owned(),
        error,
    })?;
    state.vsock_uds = Some(uds.to_owned());
    state.tasks.push(tokio::spawn(serve_hybrid_vsock(listener)));
    Ok(())
}

/// Host side of hybrid vsock, as Firecracker does it: `CONNECT <port>\n` ->
/// `OK <port>\n`, then the "guest" echoes what it receives.
async fn serve_hybrid_vsock(listener: UnixListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(echo_connection(stream));
    }
}

async fn echo_connection(mut stream: UnixStream) {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 32 {
        match stream.read(&mut byte).await {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => line.push(byte[0]),
            _ => return,
        }
    }
    let Some(port) = std::str::from_utf8(&line)
        .ok()
        .and_then(|l| l.strip_prefix("CONNECT "))
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return;
    };
    if stream
        .write_all(format!("OK {port}\n").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let (mut read, mut write) = stream.into_split();
    let _ = tokio::io::copy(&mut read, &mut write).await;
}

/// Records written by a fake started with [`run_as_process`] for `api_sock`.
pub fn read_records(api_sock: &Path) -> Vec<RecordedRequest> {
    let text = fs_err::read_to_string(records_path(api_sock)).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// `<api_sock>.requests.jsonl`.
pub fn records_path(api_sock: &Path) -> PathBuf {
    let mut name = api_sock.as_os_str().to_owned();
    name.push(".requests.jsonl");
    PathBuf::from(name)
}

/// The executable name (a symlink to the test binary) that makes
/// [`run_as_process`] a wedged VMM: it accepts `SendCtrlAltDel` but never
/// shuts down, as a Firecracker whose guest ignores the request.
pub const WEDGED_NAME: &str = "wedged-firecracker";

/// Executable mode: behaves like `firecracker --api-sock PATH` (other
/// arguments are ignored). Serves the validating fake, prints a console line
/// after `InstanceStart`, and exits 0 on `SendCtrlAltDel`, unless started
/// under the name [`WEDGED_NAME`].
pub fn run_as_process(args: impl IntoIterator<Item = String>) -> ExitCode {
    let wedged = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .is_some_and(|argv0| argv0.file_name().is_some_and(|name| name == WEDGED_NAME));
    let mut args = args.into_iter();
    let mut api_sock = None;
    while let Some(arg) = args.next() {
        if arg == "--api-sock" {
            api_sock = args.next().map(PathBuf::from);
        }
    }
    let Some(api_sock) = api_sock else {
        eprintln!("fake firecracker: --api-sock PATH is required");
        return ExitCode::from(2);
    };
    let spec = match ApiSpec::load_default() {
        Ok(spec) => spec,
        Err(error) => {
            eprintln!("fake firecracker: {}", error_chain(&error));
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fake firecracker: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let fake = match FakeFirecracker::start_recording(
            &api_sock,
            spec,
            Some(records_path(&api_sock)),
        ) {
            Ok(fake) => fake,
            Err(error) => {
                eprintln!("fake firecracker: {}: {error}", api_sock.display());
                return ExitCode::FAILURE;
            }
        };
        if wedged {
            fake.instance_start().await;
            let _ = writeln!(std::io::stdout(), "fake-firecracker: guest started");
            // Requests are answered; the process never ends by itself.
            std::future::pending::<()>().await;
        }
        // stdout is the "serial console" a VMM writes.
        tokio::select! {
            () = fake.instance_start() => {
                let _ = writeln!(std::io::stdout(), "fake-firecracker: guest started");
                fake.ctrl_alt_del().await;
            }
            () = fake.ctrl_alt_del() => {}
        }
        let _ = writeln!(
            std::io::stdout(),
            "fake-firecracker: Ctrl+Alt+Del, shutting down"
        );
        // Let the 204 reach the client before the socket goes away.
        tokio::time::sleep(Duration::from_millis(100)).await;
        ExitCode::SUCCESS
    })
}
