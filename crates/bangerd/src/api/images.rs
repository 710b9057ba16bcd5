//! The `/v1/images` resource: list, show, register, build, pull, promote,
//! delete, prune.

use axum::Json;
use axum::extract::State;

use axum::response::Response;
use banger_api::events::OperationKind;
use banger_api::images::{
    ImageBuildRequest, ImageDeleted, ImageInfo, ImagePullRequest, ImageRegisterRequest,
};
use banger_api::operation::OperationEvent;
use banger_api::usage::{PruneReport, PruneRequest};
use banger_api::{ApiError, ImageName};
use serde::Deserialize;
use utoipa::IntoParams;

use super::path::NamePath;
use super::stream::stream_blocking;
use super::{ApiFailure, ApiJson, ApiQuery, blocking};
use crate::images::{self, ImageError};
use crate::state::AppState;

impl From<ImageError> for ApiFailure {
    fn from(error: ImageError) -> Self {
        ApiFailure::from_error(error.code(), &error)
    }
}

/// Lists images.
#[utoipa::path(get, path = "/v1/images", tag = "images",
    responses((status = 200, description = "Images", body = Vec<ImageInfo>)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<ImageInfo>>, ApiFailure> {
    blocking(state, |state| images::list(&state.store()))
        .await
        .map(Json)
}

/// Shows one image.
#[utoipa::path(get, path = "/v1/images/{name}", tag = "images",
    params(("name" = ImageName, Path, description = "Image name")),
    responses((status = 200, description = "The image", body = ImageInfo),
        (status = 404, description = "No such image", body = ApiError)))]
pub async fn show(
    State(state): State<AppState>,
    NamePath(name): NamePath<ImageName>,
) -> Result<Json<ImageInfo>, ApiFailure> {
    blocking(state, move |state| images::show(&state.store(), &name))
        .await
        .map(Json)
}

/// Options of image deletion.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Delete even while VMs use the image (they will no longer start).
    #[serde(default)]
    force: bool,
}

/// Deletes an image (managed: with its files).
#[utoipa::path(delete, path = "/v1/images/{name}", tag = "images",
    params(("name" = ImageName, Path, description = "Image name"), DeleteQuery),
    responses((status = 200, description = "What was deleted and what it broke", body = ImageDeleted),
        (status = 404, description = "No such image", body = ApiError),
        (status = 409, description = "In use", body = ApiError)))]
pub async fn delete(
    State(state): State<AppState>,
    NamePath(name): NamePath<ImageName>,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> Result<Json<ImageDeleted>, ApiFailure> {
    blocking(state, move |state| {
        images::delete(state, &name, query.force)
    })
    .await
    .map(Json)
}

/// Registers (or updates) an unmanaged image, streaming progress (a
/// `--kernel` file is imported on the way).
#[utoipa::path(post, path = "/v1/images/register", tag = "images", request_body = ImageRegisterRequest,
    responses((status = 200, description = "NDJSON progress stream ending in the image",
        content_type = "application/x-ndjson", body = OperationEvent<ImageInfo>)))]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ImageRegisterRequest>,
) -> Result<Response, ApiFailure> {
    Ok(stream_blocking(move |progress| {
        images::register(&state, &request, progress).map_err(ApiFailure::from)
    }))
}

/// Builds a Debian image into the managed store, streaming progress.
#[utoipa::path(post, path = "/v1/images/build", tag = "images", request_body = ImageBuildRequest,
    responses((status = 200, description = "NDJSON progress stream ending in the image",
        content_type = "application/x-ndjson", body = OperationEvent<ImageInfo>)))]
pub async fn build(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ImageBuildRequest>,
) -> Result<Response, ApiFailure> {
    Ok(stream_blocking(move |progress| {
        // Announced here rather than in images::build: a VM create that
        // builds its default image reports that as its own progress.
        let progress = progress.announced(
            state.events(),
            OperationKind::ImageBuild,
            Some(request.name.to_string()),
        );
        let result = images::build(&state, &request, &progress);
        progress.finish(&result, ImageError::code);
        result.map_err(ApiFailure::from)
    }))
}

/// Pulls an OCI image (registry, `docker-archive:`, `oci:`) into the
/// managed store, streaming progress (bytes per layer).
#[utoipa::path(post, path = "/v1/images/pull", tag = "images", request_body = ImagePullRequest,
    responses((status = 200, description = "NDJSON progress stream ending in the image",
        content_type = "application/x-ndjson", body = OperationEvent<ImageInfo>)))]
pub async fn pull(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ImagePullRequest>,
) -> Result<Response, ApiFailure> {
    Ok(stream_blocking(move |progress| {
        let progress = progress.announced(
            state.events(),
            OperationKind::ImagePull,
            Some(request.name.to_string()),
        );
        let result = images::pull(&state, &request, &progress);
        progress.finish(&result, ImageError::code);
        result.map_err(ApiFailure::from)
    }))
}

/// Copies an unmanaged image into the managed store and verifies it.
#[utoipa::path(post, path = "/v1/images/{name}/promote", tag = "images",
    params(("name" = ImageName, Path, description = "Image name")),
    responses((status = 200, description = "NDJSON progress stream ending in the image",
        content_type = "application/x-ndjson", body = OperationEvent<ImageInfo>)))]
pub async fn promote(
    State(state): State<AppState>,
    NamePath(name): NamePath<ImageName>,
) -> Result<Response, ApiFailure> {
    Ok(stream_blocking(move |progress| {
        images::promote(&state, &name, progress).map_err(ApiFailure::from)
    }))
}

/// Removes the managed images no VM uses (not the default image unless
/// `all`), or with `dry_run` says what would go; lists what was kept and why.
#[utoipa::path(post, path = "/v1/images/prune", tag = "images", request_body = PruneRequest,
    responses((status = 200, description = "What was removed, the space that came back, and what was kept and why", body = PruneReport)))]
pub async fn prune(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<PruneRequest>,
) -> Result<Json<PruneReport>, ApiFailure> {
    blocking(state, move |state| images::prune(state, &request))
        .await
        .map(Json)
}
