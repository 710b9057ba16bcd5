//! The `/v1/daemon` resource: status, graceful stop and database check.

use axum::Json;
use axum::extract::State;
use banger_api::ApiError;
use banger_api::daemon::{
    DaemonStatus, DaemonStopReply, DaemonStopRequest, IntegrityReport, ListenerStatus,
};

use super::{ApiFailure, ApiJson};
use crate::state::AppState;

/// Reports the daemon's identity, paths, listeners and uptime.
#[utoipa::path(
    get,
    path = "/v1/daemon/status",
    tag = "daemon",
    responses((status = 200, description = "The daemon's status", body = DaemonStatus))
)]
pub async fn status(State(state): State<AppState>) -> Json<DaemonStatus> {
    let paths = state.paths();
    let config = state.config();
    Json(DaemonStatus {
        pid: std::process::id(),
        version: banger_api::VERSION.to_owned(),
        socket: paths.socket().display().to_string(),
        log_file: paths.log_file().display().to_string(),
        state_dir: paths.state_dir.display().to_string(),
        database: paths.database().display().to_string(),
        dns: ListenerStatus {
            listen_addr: config.dns_listen_addr.to_string(),
            serving: state.dns().serving().await,
        },
        web: ListenerStatus {
            listen_addr: config
                .web_listen_addr
                .map(|addr| addr.to_string())
                .unwrap_or_default(),
            serving: state.web_url().is_some(),
        },
        web_url: state.web_url(),
        uptime_secs: state.started().elapsed().as_secs(),
    })
}

/// Stops the daemon gracefully after answering.
#[utoipa::path(
    post,
    path = "/v1/daemon/stop",
    tag = "daemon",
    request_body = DaemonStopRequest,
    responses(
        (status = 200, description = "The daemon is stopping", body = DaemonStopReply),
        (status = 400, description = "Malformed body", body = ApiError),
        (status = 413, description = "Body too large", body = ApiError)
    )
)]
pub async fn stop(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<DaemonStopRequest>,
) -> Json<DaemonStopReply> {
    let reason = request.reason.as_deref().unwrap_or("requested by a client");
    tracing::info!(reason, "stopping");
    state.request_shutdown();
    Json(DaemonStopReply {
        pid: std::process::id(),
    })
}

/// Runs SQLite's integrity and foreign-key checks on the state database.
#[utoipa::path(
    post,
    path = "/v1/daemon/check",
    tag = "daemon",
    responses(
        (status = 200, description = "The check ran; `ok` tells the verdict", body = IntegrityReport),
        (status = 500, description = "The check could not run", body = ApiError)
    )
)]
pub async fn check(State(state): State<AppState>) -> Result<Json<IntegrityReport>, ApiFailure> {
    let report = state
        .with_store(|store| store.integrity_check())
        .await
        .map_err(|error| ApiFailure::internal(&error))?;
    report
        .map(Json)
        .map_err(|error| ApiFailure::internal(&error))
}
