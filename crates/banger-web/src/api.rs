//! The UI's own JSON API under `/api/`: each handler makes banger-client
//! calls and answers with the daemon's types. A daemon error keeps its
//! status and its `{code, message}` body, so the pages show the daemon's
//! own message.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use banger_api::operation::{NDJSON, OperationEvent};
use banger_api::sessions::LogStream;
use banger_api::vms::{VmCreateRequest, VmInfo};
use banger_api::{ApiError, ErrorCode, SessionName, VmName};
use banger_client::ClientError;
use banger_host::error_chain;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::StreamExt;

use crate::WebState;

/// Console bytes a VM page shows (the end of the log).
pub const CONSOLE_TAIL_BYTES: usize = 32 * 1024;
/// Session log bytes a VM page shows per stream (the end of the log).
pub const SESSION_LOG_TAIL_BYTES: usize = 32 * 1024;

/// The `/api` routes.
pub fn routes() -> axum::Router<WebState> {
    axum::Router::new()
        .route("/events", get(events))
        .route("/vms", get(vms).post(create_vm))
        .route("/vms/{name}", get(vm).delete(delete_vm))
        .route("/vms/{name}/stats", get(stats))
        .route("/vms/{name}/ports", get(ports))
        .route("/vms/{name}/console", get(console))
        .route("/vms/{name}/sessions", get(sessions))
        .route("/vms/{name}/sessions/{session}/logs", get(session_logs))
        .route("/vms/{name}/{action}", post(action))
        .route("/images", get(images))
        .route("/kernels", get(kernels))
        .route("/{*rest}", delete(not_found).get(not_found).post(not_found))
}

/// A daemon call that failed, as the page sees it.
#[derive(Debug)]
pub struct Failure(ClientError);

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Self(error)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, body) = match self.0 {
            ClientError::Api { status, error } => (
                StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
                error,
            ),
            ClientError::Operation { error } => (StatusCode::BAD_GATEWAY, error),
            other => (
                StatusCode::BAD_GATEWAY,
                ApiError {
                    code: ErrorCode::Unavailable,
                    message: error_chain(&other),
                },
            ),
        };
        (status, Json(body)).into_response()
    }
}

fn api_error(status: StatusCode, code: ErrorCode, message: String) -> Response {
    (status, Json(ApiError { code, message })).into_response()
}

async fn not_found() -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such web UI API route".to_owned(),
    )
}

/// The daemon's events (and `resync` notices) as server-sent events.
async fn events(State(state): State<WebState>) -> Response {
    let mut receiver = state.follower().subscribe();
    let (sender, items) = tokio::sync::mpsc::channel::<Event>(16);
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                item = receiver.recv() => match item {
                    Ok(text) => Event::default().data(text.as_ref()),
                    // This page fell behind: it re-reads instead.
                    Err(RecvError::Lagged(_)) => Event::default().data(r#"{"event":{"type":"resync"}}"#),
                    Err(RecvError::Closed) => break,
                },
                () = sender.closed() => break,
            };
            if sender.send(event).await.is_err() {
                break;
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(items).map(Ok::<_, Infallible>);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn vms(State(state): State<WebState>) -> Result<Response, Failure> {
    Ok(Json(state.client().vms().await?).into_response())
}

async fn vm(State(state): State<WebState>, Path(name): Path<VmName>) -> Result<Response, Failure> {
    Ok(Json(state.client().vm(&name).await?).into_response())
}

async fn stats(State(state): State<WebState>, Path(name): Path<VmName>) -> Response {
    Json(state.follower().history(&name)).into_response()
}

async fn ports(
    State(state): State<WebState>,
    Path(name): Path<VmName>,
) -> Result<Response, Failure> {
    Ok(Json(state.client().vm_ports(&name).await?).into_response())
}

/// The tail of `bytes`, at most `limit`, as text.
fn tail_text(bytes: &[u8], limit: usize) -> String {
    let start = bytes.len().saturating_sub(limit);
    String::from_utf8_lossy(bytes.get(start..).unwrap_or_default()).into_owned()
}

async fn console(
    State(state): State<WebState>,
    Path(name): Path<VmName>,
) -> Result<Response, Failure> {
    let (bytes, _) = state.client().vm_console(&name, 0).await?;
    Ok(text_response(tail_text(&bytes, CONSOLE_TAIL_BYTES)))
}

fn text_response(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

async fn sessions(
    State(state): State<WebState>,
    Path(name): Path<VmName>,
) -> Result<Response, Failure> {
    Ok(Json(state.client().sessions(&name).await?).into_response())
}

/// A session's stdout and stderr tails.
#[derive(Debug, serde::Serialize)]
struct SessionLogs {
    stdout: String,
    stderr: String,
}

async fn read_log(
    state: &WebState,
    vm: &VmName,
    session: &SessionName,
    stream: LogStream,
) -> Result<String, ClientError> {
    let mut body = state
        .client()
        .session_logs(vm, session, stream, false)
        .await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next_chunk().await? {
        bytes.extend_from_slice(&chunk);
        // Only the tail is shown: drop the front as the log streams in.
        if bytes.len() > 2 * SESSION_LOG_TAIL_BYTES {
            bytes.drain(..bytes.len() - SESSION_LOG_TAIL_BYTES);
        }
    }
    Ok(tail_text(&bytes, SESSION_LOG_TAIL_BYTES))
}

async fn session_logs(
    State(state): State<WebState>,
    Path((name, session)): Path<(VmName, SessionName)>,
) -> Result<Response, Failure> {
    let stdout = read_log(&state, &name, &session, LogStream::Stdout).await?;
    let stderr = read_log(&state, &name, &session, LogStream::Stderr).await?;
    Ok(Json(SessionLogs { stdout, stderr }).into_response())
}

/// What the VM page's buttons do.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum VmAction {
    Start,
    Stop,
    Restart,
    Pause,
    Resume,
}

async fn action(
    State(state): State<WebState>,
    Path((name, action)): Path<(VmName, VmAction)>,
) -> Result<Response, Failure> {
    let client = state.client();
    // Progress of start/restart/resume is not shown: the page follows the
    // VM's state through the event stream instead.
    let mut ignore = |_: &banger_api::operation::Progress| {};
    let vm: VmInfo = match action {
        VmAction::Start => client.start_vm(&name, &mut ignore).await?,
        VmAction::Stop => client.stop_vm(&name).await?,
        VmAction::Restart => client.restart_vm(&name, &mut ignore).await?,
        VmAction::Pause => client.pause_vm(&name).await?,
        VmAction::Resume => client.resume_vm(&name, &mut ignore).await?,
    };
    Ok(Json(vm).into_response())
}

async fn delete_vm(
    State(state): State<WebState>,
    Path(name): Path<VmName>,
) -> Result<Response, Failure> {
    // The page asked for confirmation; a running VM is stopped first.
    Ok(Json(state.client().delete_vm(&name, true).await?).into_response())
}

fn ndjson_line<T: serde::Serialize>(event: &OperationEvent<T>) -> Bytes {
    let mut line = serde_json::to_vec(event).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Creates a VM, streaming the daemon's progress as NDJSON
/// (`banger_api::operation::OperationEvent` lines, ending with `done` or
/// `failed`).
async fn create_vm(
    State(state): State<WebState>,
    body: Result<Json<VmCreateRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                rejection.body_text(),
            );
        }
    };
    let (sender, lines) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        let progress_sender = sender.clone();
        let mut on_progress = move |progress: &banger_api::operation::Progress| {
            let _ = progress_sender.send(ndjson_line(&OperationEvent::<VmInfo>::Progress(
                progress.clone(),
            )));
        };
        let last = match state.client().create_vm(&request, &mut on_progress).await {
            Ok(vm) => OperationEvent::Done { result: vm },
            Err(ClientError::Api { error, .. } | ClientError::Operation { error }) => {
                OperationEvent::Failed { error }
            }
            Err(other) => OperationEvent::Failed {
                error: ApiError {
                    code: ErrorCode::Unavailable,
                    message: error_chain(&other),
                },
            },
        };
        let _ = sender.send(ndjson_line(&last));
    });
    let body = tokio_stream::wrappers::UnboundedReceiverStream::new(lines).map(Ok::<_, Infallible>);
    ([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(body)).into_response()
}

async fn images(State(state): State<WebState>) -> Result<Response, Failure> {
    Ok(Json(state.client().images().await?).into_response())
}

async fn kernels(State(state): State<WebState>) -> Result<Response, Failure> {
    Ok(Json(state.client().kernels().await?).into_response())
}
