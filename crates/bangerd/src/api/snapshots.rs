//! A VM's snapshots (`/v1/vms/{name}/snapshots`: list, create, delete,
//! restore) and forks (`/v1/vms/{name}/fork`).

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use banger_api::operation::OperationEvent;
use banger_api::snapshots::{SnapshotCreateRequest, SnapshotDeleted, SnapshotInfo, VmForkRequest};
use banger_api::vms::VmInfo;
use banger_api::{ApiError, SnapshotName, VmName};

use super::path::{NamePath, VmItemPath};
use super::stream::stream_async;
use super::{ApiFailure, ApiJson, blocking};
use crate::state::AppState;
use crate::vms::snapshot::{self, SnapshotError};

impl From<SnapshotError> for ApiFailure {
    fn from(error: SnapshotError) -> Self {
        ApiFailure::from_error(error.code(), &error)
    }
}

/// Lists a VM's snapshots, oldest first.
#[utoipa::path(get, path = "/v1/vms/{name}/snapshots", tag = "snapshots",
    params(("name" = VmName, Path, description = "VM name")),
    responses((status = 200, description = "Its snapshots", body = Vec<SnapshotInfo>),
        (status = 404, description = "No such VM", body = ApiError)))]
pub async fn list(
    State(state): State<AppState>,
    NamePath(name): NamePath<VmName>,
) -> Result<Json<Vec<SnapshotInfo>>, ApiFailure> {
    blocking(state, move |state| snapshot::list(state, &name))
        .await
        .map(Json)
}

/// Takes a snapshot (disks, and memory when the VM runs or is paused; a
/// running VM is paused for the copy and resumed), streaming progress.
#[utoipa::path(post, path = "/v1/vms/{name}/snapshots", tag = "snapshots",
    request_body = SnapshotCreateRequest,
    params(("name" = VmName, Path, description = "VM name")),
    responses((status = 200, description = "NDJSON progress stream ending in the snapshot",
        content_type = "application/x-ndjson", body = OperationEvent<SnapshotInfo>)))]
pub async fn create(
    State(state): State<AppState>,
    NamePath(name): NamePath<VmName>,
    ApiJson(request): ApiJson<SnapshotCreateRequest>,
) -> Result<Response, ApiFailure> {
    Ok(stream_async(move |progress| async move {
        snapshot::create(&state, &name, &request, &progress)
            .await
            .map_err(ApiFailure::from)
    }))
}

/// Deletes a snapshot.
#[utoipa::path(delete, path = "/v1/vms/{name}/snapshots/{snapshot}", tag = "snapshots",
    params(("name" = VmName, Path, description = "VM name"),
        ("snapshot" = SnapshotName, Path, description = "Snapshot name")),
    responses((status = 200, description = "What was removed", body = SnapshotDeleted),
        (status = 404, description = "No such VM or snapshot", body = ApiError)))]
pub async fn delete(
    State(state): State<AppState>,
    VmItemPath { vm, item }: VmItemPath<SnapshotName>,
) -> Result<Json<SnapshotDeleted>, ApiFailure> {
    snapshot::delete(&state, &vm, &item)
        .await
        .map(Json)
        .map_err(ApiFailure::from)
}

/// Puts a stopped or paused VM back to a snapshot (resumed where it was
/// when the snapshot has memory), streaming progress.
#[utoipa::path(post, path = "/v1/vms/{name}/snapshots/{snapshot}/restore", tag = "snapshots",
    params(("name" = VmName, Path, description = "VM name"),
        ("snapshot" = SnapshotName, Path, description = "Snapshot name")),
    responses((status = 200, description = "NDJSON progress stream ending in the VM",
        content_type = "application/x-ndjson", body = OperationEvent<VmInfo>)))]
pub async fn restore(
    State(state): State<AppState>,
    VmItemPath { vm, item }: VmItemPath<SnapshotName>,
) -> Result<Response, ApiFailure> {
    Ok(stream_async(move |progress| async move {
        snapshot::restore(&state, &vm, &item, &progress)
            .await
            .map_err(ApiFailure::from)
    }))
}

/// Makes new VMs from a running or paused VM's memory and disks, each with
/// its own name, address, MAC, host key and machine id, streaming progress.
#[utoipa::path(post, path = "/v1/vms/{name}/fork", tag = "snapshots",
    request_body = VmForkRequest,
    params(("name" = VmName, Path, description = "Source VM name")),
    responses((status = 200, description = "NDJSON progress stream ending in the new VMs",
        content_type = "application/x-ndjson", body = OperationEvent<Vec<VmInfo>>)))]
pub async fn fork(
    State(state): State<AppState>,
    NamePath(name): NamePath<VmName>,
    ApiJson(request): ApiJson<VmForkRequest>,
) -> Result<Response, ApiFailure> {
    request.names().map_err(SnapshotError::from)?;
    Ok(stream_async(move |progress| async move {
        crate::vms::fork(&state, &name, &request, &progress)
            .await
            .map_err(ApiFailure::from)
    }))
}
