//! The `/v1/vms` resource: list, show, create, start, stop, restart, kill,
//! set, delete, the serial console, and orphaned VM directories (list,
//! adopt).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use banger_api::operation::OperationEvent;
use banger_api::vms::{
    VmAdoptRequest, VmCreateRequest, VmDeleted, VmInfo, VmKillRequest, VmOrphan, VmSetRequest,
};
use banger_api::{ApiError, VmName};
use serde::Deserialize;
use utoipa::IntoParams;

use super::path::NamePath;
use super::stream::stream_async;
use super::{ApiFailure, ApiJson, ApiQuery, blocking};
use crate::state::AppState;
use crate::vms::{self, VmError};

impl From<VmError> for ApiFailure {
    fn from(error: VmError) -> Self {
        ApiFailure::from_error(error.code(), &error)
    }
}

/// Lists VMs.
#[utoipa::path(get, path = "/v1/vms", tag = "vms", responses((status = 200, description = "VMs", body = Vec<VmInfo>)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<VmInfo>>, ApiFailure> {
    blocking(state, vms::list).await.map(Json)
}

/// Shows one VM.
#[utoipa::path(get, path = "/v1/vms/{name}", tag = "vms",
    params(("name" = VmName, Path, description = "VM name")),
    responses((status = 200, description = "The VM", body = VmInfo), (status = 404, description = "No such VM", body = ApiError)))]
pub async fn show(
    State(state): State<AppState>,
    NamePath(name): NamePath<VmName>,
) -> Result<Json<VmInfo>, ApiFailure> {
    blocking(state, move |state| vms::show(state, &name))
        .await
        .map(Json)
}

/// Creates a VM and (unless `no_start`) boots it until SSH answers, streaming progress.
#[utoipa::path(post, path = "/v1/vms", tag = "vms", request_body = VmCreateRequest,
    responses((status = 200, description = "NDJSON progress stream ending in the VM",
        content_type = "application/x-ndjson", body = OperationEvent<VmInfo>),
        (status = 400, description = "Bad request", body = ApiError)))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<VmCreateRequest>,
) -> Result<Response, ApiFailure> {
    vms::check_resources(&state, vms::resource_request(&request))?;
    Ok(stream_async(move |progress| async move {
        vms::create(&state, &request, &progress)
            .await
            .map_err(ApiFailure::from)
    }))
}

/// Re-registers an orphaned VM directory (`<state dir>/vms/<name>` that no
/// VM owns) as VM `<name>` in state `created`, its disks as they are.
#[utoipa::path(post, path = "/v1/orphans/adopt", tag = "vms", request_body = VmAdoptRequest,
    responses((status = 200, description = "The adopted VM", body = VmInfo),
        (status = 400, description = "Not a VM directory of banger, or a file in it is unusable", body = ApiError),
        (status = 404, description = "No such directory or image", body = ApiError),
        (status = 409, description = "A VM already owns the directory", body = ApiError)))]
pub async fn adopt(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<VmAdoptRequest>,
) -> Result<Json<VmInfo>, ApiFailure> {
    vms::adopt(&state, &request)
        .await
        .map(Json)
        .map_err(ApiFailure::from)
}

/// Lists directories under `<state dir>/vms/` that no VM owns.
#[utoipa::path(get, path = "/v1/orphans", tag = "vms",
    responses((status = 200, description = "Orphaned VM directories", body = Vec<VmOrphan>)))]
pub async fn orphans(State(state): State<AppState>) -> Result<Json<Vec<VmOrphan>>, ApiFailure> {
    blocking(state, vms::orphans).await.map(Json)
}

/// Starts a VM and waits for SSH, streaming progress.
#[utoipa::path(post, path = "/v1/vms/{name}/start", tag = "vms",
    params(("name" = VmName, Path, description = "VM name")),
    responses((status = 200, description = "NDJSON progress stream ending in the VM",
        content_type = "application/x-ndjson", body = OperationEvent<VmInfo>)))]
pub async fn start(
    State(state): State<AppState>,
    NamePath(name): NamePath<VmName>,
) -> Result<Response, ApiFailure> {
    Ok(stream_async(move |progress| async move {
        vms::start(&state, &name, &progress)
            .await
            .map_err(ApiFailure::from)
    }))
}

/// Restarts a VM (stop, then start), streaming progress.
#[utoipa::path(post, path = "/v1/vms/{name}/restart", tag = "vms",
    params(("name" = VmName, Path, description = "VM name")),
    responses((status = 200, description = "NDJSON progress stream ending in the VM",
        content_type = "application/x-ndjson", body = OperationEvent<VmInfo>)))]
pub async fn restart(
    State(state): State<AppState>,
    NamePath(name): NamePath<VmName>,
) -> Result<Response, ApiFailure> {
    Ok(stream_async(move |progress| async move {
        vms::restart(&state, &name, &progress)
            .await
            .map_err(ApiFailure::from)
    }))
}

/// Stops a VM gracefully (killed after a timeout).
#[utoipa::path(post, path = "/v1/vms/{name}/stop", tag = "vms",
    params(("name" = VmName, Path, description = "VM name")),
    responses((status = 200, description = "The stopped VM", body = VmInfo), (status = 404, description = "No such VM", body = ApiError)))]
pub async fn stop(
    State(state): State<AppState>,
    NamePath(name): NamePath<VmName>,
) -> Result<Json<VmInfo>, ApiFailure> {
    vms::stop(&state, &name)
        .await
        .map(Json)
        .map_err(ApiFailure::from)
}

/// Pauses a running VM: its memory goes to a file in its directory and its
/// VMM ends.
#[utoipa::path(post, path = "/v1/vms/{name}/pause", tag = "vms",
    params(("name" = VmName, Path, description = "VM name")),
    responses((status = 200, description = "The paused VM", body = VmInfo),
        (status = 404, description = "No such VM", body = ApiError),
        (status = 409, description = "Not running", body = ApiError),
        (status = 503, description = "Not enough free space for its memory", body = ApiError)))]
pub async fn pause(
    State(state): State<AppState>,
    NamePath(name): NamePath<VmName>,
) -> Result<Json<VmInfo>, ApiFailure> {
    vms::pause(&state, &name)
        .await
        .map(Json)
        .map_err(ApiFailure::from)
}

/// Resumes a paused VM from its saved memory and waits for SSH, streaming
/// progress.
#[utoipa::path(post, path = "/v1/vms/{name}/resume", tag = "vms",
    params(("name" = VmName, Path, description = "VM name")),
    responses((status = 200, description = "NDJSON progress stream ending in the VM",
        content_type = "application/x-ndjson", body = OperationEvent<VmInfo>)))]
pub async fn resume(
    State(state): State<AppState>,
    NamePath(name): NamePath<VmName>,
) -> Result<Response, ApiFailure> {
    Ok(stream_async(move |progress| async move {
        vms::resume(&state, &name, &progress)
            .await
            .map_err(ApiFailure::from)
    }))
}

/// Sends a signal to a VM's VMM.
#[utoipa::path(post, path = "/v1/vms/{name}/kill", tag = "vms", request_body = VmKillRequest,
    params(("name" = VmName, Path, description = "VM name")),
    responses((status = 200, description = "The VM after the signal", body = VmInfo), (status = 409, description = "Not running", body = ApiError)))]
pub async fn kill(
    State(state): State<AppState>,
    NamePath(name): NamePath<VmName>,
    ApiJson(request): ApiJson<VmKillRequest>,
) -> Result<Json<VmInfo>, ApiFailure> {
    vms::kill(&state, &name, request.signal)
        .await
        .map(Json)
        .map_err(ApiFailure::from)
}

/// Changes a stopped VM's vCPUs, memory or disk size.
#[utoipa::path(patch, path = "/v1/vms/{name}", tag = "vms", request_body = VmSetRequest,
    params(("name" = VmName, Path, description = "VM name")),
    responses((status = 200, description = "The changed VM", body = VmInfo),
        (status = 400, description = "A value past its bound", body = ApiError),
        (status = 404, description = "No such VM", body = ApiError),
        (status = 409, description = "Not stopped", body = ApiError)))]
pub async fn set(
    State(state): State<AppState>,
    NamePath(name): NamePath<VmName>,
    ApiJson(request): ApiJson<VmSetRequest>,
) -> Result<Json<VmInfo>, ApiFailure> {
    vms::set(&state, &name, &request)
        .await
        .map(Json)
        .map_err(ApiFailure::from)
}

/// Options of VM deletion.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Stop a running VM first instead of refusing.
    #[serde(default)]
    force: bool,
}

/// Deletes a VM and everything it owns.
#[utoipa::path(delete, path = "/v1/vms/{name}", tag = "vms",
    params(("name" = VmName, Path, description = "VM name"), DeleteQuery),
    responses((status = 200, description = "What was removed", body = VmDeleted), (status = 409, description = "Running", body = ApiError)))]
pub async fn delete(
    State(state): State<AppState>,
    NamePath(name): NamePath<VmName>,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> Result<Json<VmDeleted>, ApiFailure> {
    vms::delete(&state, &name, query.force)
        .await
        .map(Json)
        .map_err(ApiFailure::from)
}

/// Where to read the console from.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsoleQuery {
    /// Byte offset to read from (default 0). If the log was rotated and the
    /// offset is past its end, reading restarts at 0.
    #[serde(default)]
    offset: u64,
}

/// Most console bytes returned by one call.
const CONSOLE_CHUNK: u64 = 1 << 20;

/// Reads a VM's serial console log from an offset; the `X-Next-Offset`
/// header says where to continue.
#[utoipa::path(get, path = "/v1/vms/{name}/console", tag = "vms",
    params(("name" = VmName, Path, description = "VM name"), ConsoleQuery),
    responses((status = 200, description = "Console bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such VM", body = ApiError)))]
pub async fn console(
    State(state): State<AppState>,
    NamePath(name): NamePath<VmName>,
    ApiQuery(query): ApiQuery<ConsoleQuery>,
) -> Result<Response, ApiFailure> {
    let (bytes, next) = blocking(state, move |state| {
        let vm = vms::show(state, &name)?;
        Ok::<_, VmError>(read_from(
            std::path::Path::new(&vm.console_log),
            query.offset,
        ))
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::HeaderName::from_static("x-next-offset"),
                next.to_string(),
            ),
        ],
        Body::from(bytes),
    )
        .into_response())
}

fn read_from(path: &std::path::Path, offset: u64) -> (Vec<u8>, u64) {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = fs_err::File::open(path) else {
        return (Vec::new(), 0);
    };
    let len = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    let start = if offset > len { 0 } else { offset };
    if file.seek(SeekFrom::Start(start)).is_err() {
        return (Vec::new(), start);
    }
    let mut bytes = Vec::new();
    let _ = file.take(CONSOLE_CHUNK).read_to_end(&mut bytes);
    let next = start + bytes.len() as u64;
    (bytes, next)
}

/// The guest's listening sockets as host endpoints (`<name>.vm:PORT`), with
/// web listeners detected by short HTTP/HTTPS probes. Process data is
/// reported by the guest and not verified.
#[utoipa::path(get, path = "/v1/vms/{name}/ports", tag = "vms",
    params(("name" = VmName, Path, description = "VM name")),
    responses((status = 200, description = "Listening ports", body = banger_api::vms::VmPorts),
        (status = 409, description = "Not running", body = ApiError)))]
pub async fn ports(
    State(state): State<AppState>,
    NamePath(name): NamePath<VmName>,
) -> Result<Json<banger_api::vms::VmPorts>, ApiFailure> {
    vms::agent::ports(&state, &name)
        .await
        .map(Json)
        .map_err(ApiFailure::from)
}

/// A fresh stats sample: host side (VMM CPU and RSS, disk allocation) and
/// guest side (load, memory, disks, uptime) from the agent.
#[utoipa::path(get, path = "/v1/vms/{name}/stats", tag = "vms",
    params(("name" = VmName, Path, description = "VM name")),
    responses((status = 200, description = "Stats", body = banger_api::vms::VmStats),
        (status = 404, description = "No such VM", body = ApiError),
        (status = 409, description = "Not running", body = ApiError)))]
pub async fn stats(
    State(state): State<AppState>,
    NamePath(name): NamePath<VmName>,
) -> Result<Json<banger_api::vms::VmStats>, ApiFailure> {
    vms::agent::stats(&state, &name)
        .await
        .map(Json)
        .map_err(ApiFailure::from)
}

/// Recent stats samples kept by the daemon's poller, oldest first.
#[utoipa::path(get, path = "/v1/vms/{name}/stats/history", tag = "vms",
    params(("name" = VmName, Path, description = "VM name")),
    responses((status = 200, description = "Samples", body = Vec<banger_api::vms::VmStats>),
        (status = 404, description = "No such VM", body = ApiError)))]
pub async fn stats_history(
    State(state): State<AppState>,
    NamePath(name): NamePath<VmName>,
) -> Result<Json<Vec<banger_api::vms::VmStats>>, ApiFailure> {
    blocking(state, move |state| {
        vms::row(&state.store(), &name)?;
        Ok::<_, VmError>(state.stats_history(&name))
    })
    .await
    .map(Json)
}

/// Whether the VM's guest agent answers.
#[utoipa::path(get, path = "/v1/vms/{name}/agent", tag = "vms",
    params(("name" = VmName, Path, description = "VM name")),
    responses((status = 200, description = "Agent status", body = banger_api::vms::AgentStatus),
        (status = 409, description = "Not running", body = ApiError)))]
pub async fn agent(
    State(state): State<AppState>,
    NamePath(name): NamePath<VmName>,
) -> Result<Json<banger_api::vms::AgentStatus>, ApiFailure> {
    vms::agent::agent_status(&state, &name)
        .await
        .map(Json)
        .map_err(ApiFailure::from)
}
