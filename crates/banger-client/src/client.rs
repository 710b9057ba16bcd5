//! One HTTP request per call over the daemon's Unix socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_api::daemon::{DaemonStatus, DaemonStopReply, DaemonStopRequest, IntegrityReport};
use banger_api::operation::{OperationEvent, Progress};
use banger_api::paths;
use banger_api::{ApiError, ImageName, KernelName, VmName};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use std::fmt;

/// How long one API call may take before the client gives up.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a progress stream may stay silent. Image builds run apt for
/// minutes between some events, so this is generous.
const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Longest accepted progress line.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Failures talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be connected.
    #[error("cannot connect to bangerd at {socket}")]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The connection closed in the middle of a request or its reply: the
    /// daemon exited (crashed, was killed) while doing the work.
    #[error(
        "bangerd exited while {operation}; see {check}, and bangerd.log in banger's state directory for why",
        check = operation.what_to_check()
    )]
    DaemonGone {
        /// What the client was doing.
        operation: Operation,
        /// The transport error that showed it (an incomplete message or an
        /// unexpected end of the body).
        #[source]
        source: hyper::Error,
    },
    /// The HTTP exchange failed.
    #[error("request {method} {path} to bangerd failed")]
    Transport {
        /// Method.
        method: Method,
        /// Path.
        path: String,
        /// The cause.
        #[source]
        source: hyper::Error,
    },
    /// The daemon did not answer in time.
    #[error("bangerd did not answer {method} {path} within {timeout:?}")]
    Timeout {
        /// Method.
        method: Method,
        /// Path.
        path: String,
        /// The limit.
        timeout: Duration,
    },
    /// The daemon answered with an error.
    #[error("{error}")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The daemon's explanation.
        error: ApiError,
    },
    /// The reply did not have the expected shape.
    #[error("bangerd sent an unexpected reply to {path} (status {status})")]
    Decode {
        /// Path.
        path: String,
        /// HTTP status.
        status: StatusCode,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A long operation reported failure.
    #[error("{error}")]
    Operation {
        /// The daemon's explanation.
        error: ApiError,
    },
    /// A progress stream ended without a result (the daemon died mid-way).
    #[error("bangerd closed the progress stream of {path} without a result; see its log")]
    StreamEnded {
        /// Path.
        path: String,
    },
    /// The daemon did not switch protocols for an upgrade request.
    #[error("bangerd did not upgrade {path} (status {status})")]
    NotUpgraded {
        /// Path.
        path: String,
        /// HTTP status.
        status: StatusCode,
    },
    /// A progress stream went silent for too long.
    #[error("bangerd sent no progress on {path} for {timeout:?}")]
    StreamIdle {
        /// Path.
        path: String,
        /// The limit.
        timeout: Duration,
    },
    /// The request could not be built (an invalid path).
    #[error("invalid request path {path:?}")]
    InvalidRequest {
        /// Path.
        path: String,
        /// The cause.
        #[source]
        source: hyper::http::Error,
    },
    /// The request body could not be encoded.
    #[error("cannot encode the request to {path}")]
    Encode {
        /// Path.
        path: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// What a request was doing, so [`ClientError::DaemonGone`] can say what was
/// interrupted and where to look at its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `vm create` (the name is `None` when the daemon picks one).
    CreateVm {
        /// The requested name.
        name: Option<VmName>,
    },
    /// `vm start`.
    StartVm {
        /// The VM.
        name: VmName,
    },
    /// `vm resume`.
    ResumeVm {
        /// The VM.
        name: VmName,
    },
    /// `vm restart`.
    RestartVm {
        /// The VM.
        name: VmName,
    },
    /// `vm snapshot create`.
    SnapshotVm {
        /// The VM.
        name: VmName,
    },
    /// `vm snapshot restore`.
    RestoreVm {
        /// The VM.
        name: VmName,
    },
    /// `vm fork`.
    ForkVm {
        /// The source VM.
        name: VmName,
    },
    /// `image build`.
    BuildImage {
        /// The image.
        name: ImageName,
    },
    /// `image pull`.
    PullImage {
        /// The image.
        name: ImageName,
    },
    /// `image register`.
    RegisterImage {
        /// The image.
        name: ImageName,
    },
    /// `image promote`.
    PromoteImage {
        /// The image.
        name: ImageName,
    },
    /// `kernel pull`.
    PullKernel {
        /// The kernel.
        name: KernelName,
    },
    /// `kernel import`.
    ImportKernel {
        /// The kernel.
        name: KernelName,
    },
    /// Any other API call.
    Request {
        /// Method.
        method: Method,
        /// Path.
        path: String,
    },
}

impl Operation {
    /// The command that shows the outcome, in backticks.
    pub fn what_to_check(&self) -> String {
        match self {
            Self::CreateVm { name: Some(name) }
            | Self::StartVm { name }
            | Self::ResumeVm { name }
            | Self::RestartVm { name }
            | Self::RestoreVm { name } => format!("`banger vm show {name}`"),
            Self::SnapshotVm { name } => format!("`banger vm snapshot list {name}`"),
            Self::ForkVm { .. } => "`banger vm list`".to_owned(),
            Self::CreateVm { name: None } => "`banger vm show`".to_owned(),
            Self::BuildImage { name }
            | Self::PullImage { name }
            | Self::RegisterImage { name }
            | Self::PromoteImage { name } => format!("`banger image show {name}`"),
            Self::PullKernel { name } | Self::ImportKernel { name } => {
                format!("`banger kernel show {name}`")
            }
            Self::Request { .. } => "`banger daemon status`".to_owned(),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CreateVm { name: Some(name) } => write!(f, "creating VM {name}"),
            Self::CreateVm { name: None } => f.write_str("creating a VM"),
            Self::StartVm { name } => write!(f, "starting VM {name}"),
            Self::ResumeVm { name } => write!(f, "resuming VM {name}"),
            Self::RestartVm { name } => write!(f, "restarting VM {name}"),
            Self::SnapshotVm { name } => write!(f, "taking a snapshot of VM {name}"),
            Self::RestoreVm { name } => write!(f, "restoring VM {name}"),
            Self::ForkVm { name } => write!(f, "forking VM {name}"),
            Self::BuildImage { name } => write!(f, "building image {name}"),
            Self::PullImage { name } => write!(f, "pulling image {name}"),
            Self::RegisterImage { name } => write!(f, "registering image {name}"),
            Self::PromoteImage { name } => write!(f, "promoting image {name}"),
            Self::PullKernel { name } => write!(f, "pulling kernel {name}"),
            Self::ImportKernel { name } => write!(f, "importing kernel {name}"),
            Self::Request { method, path } => write!(f, "answering {method} {path}"),
        }
    }
}

/// True when `error` means the connection closed before the reply was
/// complete: before the headers (an incomplete message), or in the middle of
/// the body (an unexpected end of file, a reset or a broken pipe).
fn connection_lost(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() || error.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            );
        }
        source = cause.source();
    }
    false
}

impl ClientError {
    /// A transport error caused by the connection closing becomes
    /// [`ClientError::DaemonGone`] naming `operation`; other errors pass.
    fn interrupted(self, operation: Operation) -> Self {
        match self {
            Self::Transport { source, .. } if connection_lost(&source) => {
                Self::DaemonGone { operation, source }
            }
            other => other,
        }
    }

    /// True when nothing is serving the socket (missing or refused), as
    /// opposed to a daemon that answered badly.
    pub fn is_not_running(&self) -> bool {
        matches!(
            self,
            Self::Connect { source, .. }
                if matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused)
        )
    }
}

/// A client bound to one daemon socket.
#[derive(Debug, Clone)]
pub struct DaemonClient {
    socket: PathBuf,
}

impl DaemonClient {
    /// A client for the daemon at `socket`. Nothing is connected yet.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET /v1/daemon/status`.
    pub async fn status(&self) -> Result<DaemonStatus, ClientError> {
        self.call(Method::GET, paths::DAEMON_STATUS, None::<&()>)
            .await
    }

    /// `POST /v1/daemon/stop`.
    pub async fn stop(&self, reason: Option<String>) -> Result<DaemonStopReply, ClientError> {
        self.call(
            Method::POST,
            paths::DAEMON_STOP,
            Some(&DaemonStopRequest { reason }),
        )
        .await
    }

    /// `POST /v1/daemon/check`.
    pub async fn check(&self) -> Result<IntegrityReport, ClientError> {
        self.call(Method::POST, paths::DAEMON_CHECK, None::<&()>)
            .await
    }

    /// Sends one request and decodes the JSON reply.
    pub async fn call<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let exchange = self.exchange(method.clone(), path, body);
        match tokio::time::timeout(CALL_TIMEOUT, exchange).await {
            Ok(result) => result.map_err(|error| {
                error.interrupted(Operation::Request {
                    method,
                    path: path.to_owned(),
                })
            }),
            Err(_) => Err(ClientError::Timeout {
                method,
                path: path.to_owned(),
                timeout: CALL_TIMEOUT,
            }),
        }
    }

    async fn exchange<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let (status, _, response) = self.send(method.clone(), path, body).await?;
        let bytes = response
            .collect()
            .await
            .map_err(|source| transport(&method, path, source))?
            .to_bytes();
        if status.is_success() {
            serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
                path: path.to_owned(),
                status,
                source,
            })
        } else {
            Err(api_error(path, status, &bytes))
        }
    }

    /// Sends a request and returns the status and the still-streaming body.
    async fn send<B: serde::Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Incoming), ClientError> {
        let body = match body {
            Some(body) => serde_json::to_vec(body).map_err(|source| ClientError::Encode {
                path: path.to_owned(),
                source,
            })?,
            None => Vec::new(),
        };
        let response = self
            .dispatch(
                &method,
                path,
                &[(hyper::header::CONTENT_TYPE, "application/json")],
                Bytes::from(body),
            )
            .await?;
        let status = response.status();
        let (parts, body) = response.into_parts();
        Ok((status, parts.headers, body))
    }

    /// [`Self::send`] bounded by the call timeout (the body may then stream
    /// for as long as it likes).
    async fn send_within<B: serde::Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Incoming), ClientError> {
        match tokio::time::timeout(CALL_TIMEOUT, self.send(method.clone(), path, body)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                method,
                path: path.to_owned(),
                timeout: CALL_TIMEOUT,
            }),
        }
    }

    /// Connects, does the HTTP/1 handshake and sends one request with
    /// `headers` (plus `Host`); returns the response with its body still
    /// streaming. The connection task runs until the response is consumed
    /// (or an upgraded connection closes).
    async fn dispatch(
        &self,
        method: &Method,
        path: &str,
        headers: &[(hyper::header::HeaderName, &str)],
        body: Bytes,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ClientError::Connect {
                socket: self.socket.clone(),
                source,
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| transport(method, path, source))?;
        tokio::spawn(connection.with_upgrades());
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, "bangerd");
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let request =
            request
                .body(Full::new(body))
                .map_err(|source| ClientError::InvalidRequest {
                    path: path.to_owned(),
                    source,
                })?;
        sender
            .send_request(request)
            .await
            .map_err(|source| transport(method, path, source))
    }

    /// A non-JSON reply (console bytes) with its `X-Next-Offset` header.
    pub async fn raw(&self, method: Method, path: &str) -> Result<(Vec<u8>, u64), ClientError> {
        let exchange = async {
            let (status, headers, body) = self.send(method.clone(), path, None::<&()>).await?;
            let bytes = body
                .collect()
                .await
                .map_err(|source| transport(&method, path, source))?
                .to_bytes();
            if !status.is_success() {
                return Err(api_error(path, status, &bytes));
            }
            let next = headers
                .get("x-next-offset")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse().ok())
                .unwrap_or(0);
            Ok((bytes.to_vec(), next))
        };
        match tokio::time::timeout(CALL_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                method,
                path: path.to_owned(),
                timeout: CALL_TIMEOUT,
            }),
        }
    }

    /// A raw byte stream (e.g. session logs): the body, chunk by chunk.
    pub async fn byte_stream(&self, method: Method, path: &str) -> Result<ByteStream, ClientError> {
        let (status, _, body) = self.send_within(method.clone(), path, None::<&()>).await?;
        if !status.is_success() {
            let bytes = body
                .collect()
                .await
                .map_err(|source| transport(&method, path, source))?
                .to_bytes();
            return Err(api_error(path, status, &bytes));
        }
        Ok(ByteStream {
            body,
            path: path.to_owned(),
        })
    }

    /// `GET path` with `Upgrade: protocol`; after `101 Switching Protocols`
    /// returns the raw connection.
    pub async fn upgrade(
        &self,
        path: &str,
        protocol: &str,
    ) -> Result<UpgradedConnection, ClientError> {
        let method = Method::GET;
        let exchange = async {
            let response = self
                .dispatch(
                    &method,
                    path,
                    &[
                        (hyper::header::CONNECTION, "upgrade"),
                        (hyper::header::UPGRADE, protocol),
                    ],
                    Bytes::new(),
                )
                .await?;
            let status = response.status();
            if status != StatusCode::SWITCHING_PROTOCOLS {
                let bytes = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|source| transport(&method, path, source))?
                    .to_bytes();
                return Err(if status.is_success() {
                    ClientError::NotUpgraded {
                        path: path.to_owned(),
                        status,
                    }
                } else {
                    api_error(path, status, &bytes)
                });
            }
            let upgraded = hyper::upgrade::on(response)
                .await
                .map_err(|source| transport(&method, path, source))?;
            Ok(TokioIo::new(upgraded))
        };
        match tokio::time::timeout(CALL_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                method: Method::GET,
                path: path.to_owned(),
                timeout: CALL_TIMEOUT,
            }),
        }
    }

    /// Starts a long operation and follows its NDJSON progress stream,
    /// calling `on_progress` for each step; returns the final result. If the
    /// connection closes before the result, the error is
    /// [`ClientError::DaemonGone`] naming `operation`.
    pub async fn stream<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        operation: Operation,
        method: Method,
        path: &str,
        body: Option<&B>,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<T, ClientError> {
        self.follow(method, path, body, on_progress)
            .await
            .map_err(|error| error.interrupted(operation))
    }

    async fn follow<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<T, ClientError> {
        let (status, _, mut response) = self.send_within(method.clone(), path, body).await?;
        if !status.is_success() {
            let bytes = response
                .collect()
                .await
                .map_err(|source| transport(&method, path, source))?
                .to_bytes();
            return Err(api_error(path, status, &bytes));
        }
        let mut pending: Vec<u8> = Vec::new();
        loop {
            while let Some(newline) = pending.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = pending.drain(..=newline).collect();
                let event: OperationEvent<T> =
                    serde_json::from_slice(&line).map_err(|source| ClientError::Decode {
                        path: path.to_owned(),
                        status,
                        source,
                    })?;
                match event {
                    OperationEvent::Progress(progress) => on_progress(&progress),
                    OperationEvent::Done { result } => return Ok(result),
                    OperationEvent::Failed { error } => {
                        return Err(ClientError::Operation { error });
                    }
                }
            }
            if pending.len() > MAX_EVENT_BYTES {
                return Err(ClientError::StreamEnded {
                    path: path.to_owned(),
                });
            }
            let frame = match tokio::time::timeout(STREAM_IDLE_TIMEOUT, response.frame()).await {
                Err(_) => {
                    return Err(ClientError::StreamIdle {
                        path: path.to_owned(),
                        timeout: STREAM_IDLE_TIMEOUT,
                    });
                }
                Ok(None) => {
                    return Err(ClientError::StreamEnded {
                        path: path.to_owned(),
                    });
                }
                Ok(Some(frame)) => frame.map_err(|source| transport(&method, path, source))?,
            };
            if let Ok(data) = frame.into_data() {
                pending.extend_from_slice(&data);
            }
        }
    }
}

/// A connection the daemon switched to another protocol (attach).
pub type UpgradedConnection = TokioIo<hyper::upgrade::Upgraded>;

/// A streaming response body of raw bytes.
#[derive(Debug)]
pub struct ByteStream {
    body: Incoming,
    path: String,
}

impl ByteStream {
    /// The next chunk, or `None` at the end of the stream.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(source)) => return Err(transport(&Method::GET, &self.path, source)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

fn transport(method: &Method, path: &str, source: hyper::Error) -> ClientError {
    ClientError::Transport {
        method: method.clone(),
        path: path.to_owned(),
        source,
    }
}

fn api_error(path: &str, status: StatusCode, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ApiError>(bytes) {
        Ok(error) => ClientError::Api { status, error },
        Err(source) => ClientError::Decode {
            path: path.to_owned(),
            status,
            source,
        },
    }
}
