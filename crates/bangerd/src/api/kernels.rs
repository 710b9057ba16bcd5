//! The `/v1/kernels` resource: list, catalog, show, pull, import, delete,
//! prune.

use std::path::PathBuf;

use axum::Json;
use axum::extract::State;

use axum::response::Response;
use banger_api::kernels::{CatalogKernel, KernelImportRequest, KernelInfo, KernelPullRequest};
use banger_api::operation::OperationEvent;
use banger_api::usage::{PruneReport, PruneRequest};
use banger_api::{ApiError, KernelName};

use super::path::NamePath;
use super::stream::stream_blocking;
use super::{ApiFailure, ApiJson, blocking};
use crate::kernels::{self, KernelError};
use crate::state::AppState;

impl From<KernelError> for ApiFailure {
    fn from(error: KernelError) -> Self {
        ApiFailure::from_error(error.code(), &error)
    }
}

/// Lists installed kernels.
#[utoipa::path(get, path = "/v1/kernels", tag = "kernels",
    responses((status = 200, description = "Installed kernels", body = Vec<KernelInfo>)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<KernelInfo>>, ApiFailure> {
    blocking(state, |state| kernels::list(&state.store()))
        .await
        .map(Json)
}

/// Lists the kernels the catalog offers.
#[utoipa::path(get, path = "/v1/kernels/catalog", tag = "kernels",
    responses((status = 200, description = "Catalog entries", body = Vec<CatalogKernel>)))]
pub async fn catalog(
    State(state): State<AppState>,
) -> Result<Json<Vec<CatalogKernel>>, ApiFailure> {
    blocking(state, |state| kernels::available(&state.store()))
        .await
        .map(Json)
}

/// Shows one installed kernel.
#[utoipa::path(get, path = "/v1/kernels/{name}", tag = "kernels",
    params(("name" = KernelName, Path, description = "Kernel name")),
    responses((status = 200, description = "The kernel", body = KernelInfo),
        (status = 404, description = "Not installed", body = ApiError)))]
pub async fn show(
    State(state): State<AppState>,
    NamePath(name): NamePath<KernelName>,
) -> Result<Json<KernelInfo>, ApiFailure> {
    blocking(state, move |state| kernels::show(&state.store(), &name))
        .await
        .map(Json)
}

/// Deletes an installed kernel (refused while an image uses it).
#[utoipa::path(delete, path = "/v1/kernels/{name}", tag = "kernels",
    params(("name" = KernelName, Path, description = "Kernel name")),
    responses((status = 200, description = "The deleted kernel", body = KernelInfo),
        (status = 404, description = "Not installed", body = ApiError),
        (status = 409, description = "In use", body = ApiError)))]
pub async fn delete(
    State(state): State<AppState>,
    NamePath(name): NamePath<KernelName>,
) -> Result<Json<KernelInfo>, ApiFailure> {
    blocking(state, move |state| kernels::delete(state, &name))
        .await
        .map(Json)
}

/// Installs a catalog kernel, streaming progress.
#[utoipa::path(post, path = "/v1/kernels/pull", tag = "kernels", request_body = KernelPullRequest,
    responses((status = 200, description = "NDJSON progress stream ending in the installed kernel",
        content_type = "application/x-ndjson", body = OperationEvent<KernelInfo>),
        (status = 400, description = "Bad request", body = ApiError)))]
pub async fn pull(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<KernelPullRequest>,
) -> Result<Response, ApiFailure> {
    Ok(stream_blocking(move |progress| {
        kernels::pull(&state, &request.name, progress).map_err(ApiFailure::from)
    }))
}

/// Imports a kernel file from the host, streaming progress.
#[utoipa::path(post, path = "/v1/kernels/import", tag = "kernels", request_body = KernelImportRequest,
    responses((status = 200, description = "NDJSON progress stream ending in the imported kernel",
        content_type = "application/x-ndjson", body = OperationEvent<KernelInfo>),
        (status = 400, description = "Bad request", body = ApiError)))]
pub async fn import(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<KernelImportRequest>,
) -> Result<Response, ApiFailure> {
    let name = request.name;
    let kernel = PathBuf::from(&request.kernel);
    let modules = request.modules.map(PathBuf::from);
    Ok(stream_blocking(move |progress| {
        kernels::import(
            &state,
            &name,
            &kernel,
            modules.as_deref(),
            "import",
            progress,
        )
        .map_err(ApiFailure::from)
    }))
}

/// Removes the installed kernels no image uses (not the catalog's default
/// kernel unless `all`), or with `dry_run` says what would go; lists what
/// was kept and why.
#[utoipa::path(post, path = "/v1/kernels/prune", tag = "kernels", request_body = PruneRequest,
    responses((status = 200, description = "What was removed, the space that came back, and what was kept and why", body = PruneReport)))]
pub async fn prune(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<PruneRequest>,
) -> Result<Json<PruneReport>, ApiFailure> {
    blocking(state, move |state| kernels::prune(state, &request))
        .await
        .map(Json)
}
