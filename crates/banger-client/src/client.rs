//! One HTTP request per call over the daemon's Unix socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_api::ApiError;
use banger_api::daemon::{DaemonStatus, DaemonStopReply, DaemonStopRequest, IntegrityReport};
use banger_api::paths;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

/// How long one API call may take before the client gives up.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

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

impl ClientError {
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
            Ok(result) => result,
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
        let transport = |source| ClientError::Transport {
            method: method.clone(),
            path: path.to_owned(),
            source,
        };
        let body = match body {
            Some(body) => serde_json::to_vec(body).map_err(|source| ClientError::Encode {
                path: path.to_owned(),
                source,
            })?,
            None => Vec::new(),
        };
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ClientError::Connect {
                socket: self.socket.clone(),
                source,
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(transport)?;
        let driver = tokio::spawn(connection);
        let request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, "bangerd")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|source| ClientError::InvalidRequest {
                path: path.to_owned(),
                source,
            })?;
        let response = sender.send_request(request).await.map_err(transport)?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(transport)?
            .to_bytes();
        driver.abort();
        if status.is_success() {
            serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
                path: path.to_owned(),
                status,
                source,
            })
        } else {
            let error: ApiError =
                serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
                    path: path.to_owned(),
                    status,
                    source,
                })?;
            Err(ClientError::Api { status, error })
        }
    }
}
