//! The `/v1/vms/{name}/sessions` resource: start, list, show, stop, kill,
//! remove, read logs of and attach to guest sessions.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use banger_agent_client::proto::SessionSignal;
use banger_api::sessions::{ATTACH_PROTOCOL, LogStream, SessionCreateRequest, SessionInfo};
use banger_api::{ApiError, ErrorCode, SessionName, VmName};
use serde::Deserialize;
use utoipa::IntoParams;

use super::path::{NamePath, VmItemPath};
use super::{ApiFailure, ApiJson, ApiQuery};
use crate::sessions::{self, SessionError};
use crate::state::AppState;

impl From<SessionError> for ApiFailure {
    fn from(error: SessionError) -> Self {
        ApiFailure::from_error(error.code(), &error)
    }
}

/// Lists a VM's sessions.
#[utoipa::path(get, path = "/v1/vms/{name}/sessions", tag = "sessions",
    params(("name" = VmName, Path, description = "VM name")),
    responses((status = 200, description = "Sessions, oldest first", body = Vec<SessionInfo>),
        (status = 404, description = "No such VM", body = ApiError)))]
pub async fn list(
    State(state): State<AppState>,
    NamePath(vm): NamePath<VmName>,
) -> Result<Json<Vec<SessionInfo>>, ApiFailure> {
    Ok(Json(sessions::list(&state, &vm).await?))
}

/// Starts a session after checking its cwd and commands in the guest.
#[utoipa::path(post, path = "/v1/vms/{name}/sessions", tag = "sessions", request_body = SessionCreateRequest,
    params(("name" = VmName, Path, description = "VM name")),
    responses((status = 201, description = "The started session", body = SessionInfo),
        (status = 400, description = "A missing command or cwd, or a bad name", body = ApiError),
        (status = 409, description = "Name taken or VM not running", body = ApiError)))]
pub async fn create(
    State(state): State<AppState>,
    NamePath(vm): NamePath<VmName>,
    ApiJson(request): ApiJson<SessionCreateRequest>,
) -> Result<(StatusCode, Json<SessionInfo>), ApiFailure> {
    let session = sessions::create(&state, &vm, &request).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

/// Shows one session.
#[utoipa::path(get, path = "/v1/vms/{name}/sessions/{session}", tag = "sessions",
    params(("name" = VmName, Path, description = "VM name"), ("session" = SessionName, Path, description = "Session name")),
    responses((status = 200, description = "The session", body = SessionInfo),
        (status = 404, description = "No such VM or session", body = ApiError)))]
pub async fn show(
    State(state): State<AppState>,
    VmItemPath { vm, item: session }: VmItemPath<SessionName>,
) -> Result<Json<SessionInfo>, ApiFailure> {
    Ok(Json(sessions::show(&state, &vm, &session).await?))
}

/// Forgets an ended session and deletes its logs in the guest.
#[utoipa::path(delete, path = "/v1/vms/{name}/sessions/{session}", tag = "sessions",
    params(("name" = VmName, Path, description = "VM name"), ("session" = SessionName, Path, description = "Session name")),
    responses((status = 200, description = "The removed session, as it was", body = SessionInfo),
        (status = 409, description = "Still running", body = ApiError)))]
pub async fn remove(
    State(state): State<AppState>,
    VmItemPath { vm, item: session }: VmItemPath<SessionName>,
) -> Result<Json<SessionInfo>, ApiFailure> {
    Ok(Json(sessions::remove(&state, &vm, &session).await?))
}

/// Sends SIGTERM to the session's process group.
#[utoipa::path(post, path = "/v1/vms/{name}/sessions/{session}/stop", tag = "sessions",
    params(("name" = VmName, Path, description = "VM name"), ("session" = SessionName, Path, description = "Session name")),
    responses((status = 200, description = "The session afterwards", body = SessionInfo),
        (status = 409, description = "Not running", body = ApiError)))]
pub async fn stop(
    State(state): State<AppState>,
    VmItemPath { vm, item: session }: VmItemPath<SessionName>,
) -> Result<Json<SessionInfo>, ApiFailure> {
    Ok(Json(
        sessions::signal(&state, &vm, &session, SessionSignal::Terminate).await?,
    ))
}

/// Sends SIGKILL to the session's process group.
#[utoipa::path(post, path = "/v1/vms/{name}/sessions/{session}/kill", tag = "sessions",
    params(("name" = VmName, Path, description = "VM name"), ("session" = SessionName, Path, description = "Session name")),
    responses((status = 200, description = "The session afterwards", body = SessionInfo),
        (status = 409, description = "Not running", body = ApiError)))]
pub async fn kill(
    State(state): State<AppState>,
    VmItemPath { vm, item: session }: VmItemPath<SessionName>,
) -> Result<Json<SessionInfo>, ApiFailure> {
    Ok(Json(
        sessions::signal(&state, &vm, &session, SessionSignal::Kill).await?,
    ))
}

/// Which log and whether to follow it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// `stdout` (default) or `stderr`.
    #[serde(default)]
    stream: LogStream,
    /// Keep the response open and send new output until the session ends.
    #[serde(default)]
    follow: bool,
}

/// A session's output from the beginning, as raw bytes; with `follow`, the
/// body stays open and carries new output until the session ends.
#[utoipa::path(get, path = "/v1/vms/{name}/sessions/{session}/logs", tag = "sessions",
    params(("name" = VmName, Path, description = "VM name"), ("session" = SessionName, Path, description = "Session name"), LogsQuery),
    responses((status = 200, description = "Log bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such VM or session", body = ApiError)))]
pub async fn logs(
    State(state): State<AppState>,
    VmItemPath { vm, item: session }: VmItemPath<SessionName>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> Result<Response, ApiFailure> {
    let connection = sessions::logs(&state, &vm, &session, query.stream, query.follow).await?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(connection));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

/// Attaches to a pipe-mode session. Send `Connection: upgrade` and
/// `Upgrade: banger-attach`; after `101 Switching Protocols` the connection
/// carries attach frames both ways (docs/sessions.md). One attacher at a time.
#[utoipa::path(get, path = "/v1/vms/{name}/sessions/{session}/attach", tag = "sessions",
    params(("name" = VmName, Path, description = "VM name"), ("session" = SessionName, Path, description = "Session name")),
    responses((status = 101, description = "Attached; the connection now carries attach frames"),
        (status = 409, description = "Not running, not pipe mode, or already attached", body = ApiError)))]
pub async fn attach(
    State(state): State<AppState>,
    VmItemPath { vm, item: session }: VmItemPath<SessionName>,
    request: Request,
) -> Result<Response, ApiFailure> {
    let wants_attach = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case(ATTACH_PROTOCOL));
    if !wants_attach {
        return Err(ApiFailure::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!(
                "attach needs the headers `Connection: upgrade` and `Upgrade: {ATTACH_PROTOCOL}`"
            ),
        ));
    }
    // Claim the agent's attach slot before answering 101, so refusals
    // (already attached, not pipe mode) arrive as ordinary JSON errors.
    let mut agent = sessions::attach(&state, &vm, &session).await?;
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let mut client = hyper_util::rt::TokioIo::new(upgraded);
                // Frames pass through unchanged; either side closing ends the
                // attach, which frees the agent's slot (the session runs on).
                let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
                tracing::info!(vm = %vm, session = %session, "detached");
            }
            Err(error) => {
                tracing::warn!(vm = %vm, session = %session, error = %error, "attach upgrade failed");
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, ATTACH_PROTOCOL)
        .body(Body::empty())
        .map_err(|error| ApiFailure::internal(&error))
}
