//! The daemon's one route table, its error responses and its OpenAPI document.
//!
//! Routes are registered through `utoipa-axum`, so the router and the
//! OpenAPI document are produced by the same code and cannot drift; the
//! checked-in `docs/api/openapi.json` is compared against [`openapi`] by a
//! test. Every failure, including malformed and oversized bodies, unknown
//! or mistyped query parameters, paths that are not UTF-8, unknown routes
//! and wrong methods, is answered with a JSON [`ApiError`].

mod daemon;
mod events;
mod images;
mod json;
mod kernels;
mod path;
pub mod peer;
mod query;
mod sessions;
mod snapshots;
mod stream;
mod usage;
mod vms;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use banger_api::{ApiError, ErrorCode};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use json::ApiJson;
pub use query::ApiQuery;

pub use crate::error::error_chain;
use crate::state::AppState;
use peer::{OwnerUid, require_owner};

/// Largest accepted request body. Requests are small JSON documents; anything
/// bigger is a mistake or an attack.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "bangerd API",
        description = "HTTP+JSON API of the banger daemon, served on a Unix socket owned by the user."
    ),
    components(schemas(ApiError, ErrorCode)),
    tags(
        (name = "daemon", description = "The daemon itself"),
        (name = "kernels", description = "Guest kernels and the kernel catalog"),
        (name = "images", description = "Base images: root filesystem, work seed and kernel"),
        (name = "vms", description = "Virtual machines"),
        (name = "sessions", description = "Long-lived guest processes kept by the guest agent"),
        (name = "snapshots", description = "VM snapshots (disks and memory at one instant) and forks"),
        (name = "usage", description = "Host disk space banger uses (system df)")
    )
)]
struct ApiDoc;

/// The route table, with its OpenAPI description.
fn route_table() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(daemon::status))
        .routes(routes!(daemon::stop))
        .routes(routes!(daemon::check))
        .routes(routes!(events::stream))
        .routes(routes!(kernels::list))
        .routes(routes!(kernels::catalog))
        .routes(routes!(kernels::show, kernels::delete))
        .routes(routes!(kernels::pull))
        .routes(routes!(kernels::import))
        .routes(routes!(kernels::prune))
        .routes(routes!(images::list))
        .routes(routes!(images::show, images::delete))
        .routes(routes!(images::register))
        .routes(routes!(images::build))
        .routes(routes!(images::pull))
        .routes(routes!(images::promote))
        .routes(routes!(images::prune))
        .routes(routes!(vms::list, vms::create))
        .routes(routes!(vms::adopt))
        .routes(routes!(vms::orphans))
        .routes(routes!(vms::show, vms::set, vms::delete))
        .routes(routes!(vms::start))
        .routes(routes!(vms::stop))
        .routes(routes!(vms::restart))
        .routes(routes!(vms::pause))
        .routes(routes!(vms::resume))
        .routes(routes!(vms::kill))
        .routes(routes!(vms::console))
        .routes(routes!(vms::ports))
        .routes(routes!(vms::stats))
        .routes(routes!(vms::stats_history))
        .routes(routes!(vms::agent))
        .routes(routes!(sessions::list, sessions::create))
        .routes(routes!(sessions::show, sessions::remove))
        .routes(routes!(sessions::stop))
        .routes(routes!(sessions::kill))
        .routes(routes!(sessions::logs))
        .routes(routes!(sessions::attach))
        .routes(routes!(snapshots::list, snapshots::create))
        .routes(routes!(snapshots::delete))
        .routes(routes!(snapshots::restore))
        .routes(routes!(snapshots::fork))
        .routes(routes!(usage::report))
}

/// The OpenAPI document of the API, as served and checked in.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut document) = route_table().split_for_parts();
    document.info.version = banger_api::VERSION.to_owned();
    document
}

/// The OpenAPI document as pretty JSON with a trailing newline.
pub fn openapi_json() -> String {
    let mut text = openapi()
        .to_pretty_json()
        .unwrap_or_else(|error| format!("{{\"error\": {:?}}}", error.to_string()));
    text.push('\n');
    text
}

/// The complete application: routes, owner check, body limit and JSON
/// fallbacks. `owner` is the only uid allowed to connect.
pub fn router(state: AppState, owner: OwnerUid) -> Router {
    let (routes, _) = route_table().split_for_parts();
    routes
        .route(
            banger_api::paths::OPENAPI,
            axum::routing::get(|| async { Json(openapi()) }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(owner, require_owner))
        .with_state(state)
}

async fn not_found() -> ApiFailure {
    ApiFailure::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such API route",
    )
}

async fn method_not_allowed() -> ApiFailure {
    ApiFailure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}

/// A failed request: an HTTP status and the JSON body explaining it.
#[derive(Debug)]
pub struct ApiFailure {
    status: StatusCode,
    body: ApiError,
}

impl ApiFailure {
    /// A failure with an explicit status and code.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ApiError {
                code,
                message: message.into(),
            },
        }
    }

    /// 403: the peer may not use this daemon.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// The JSON body, for progress streams that end in failure.
    pub fn into_body(self) -> ApiError {
        self.body
    }

    /// 500 from an error, with its whole cause chain in the message.
    pub fn internal(error: &(dyn std::error::Error + 'static)) -> Self {
        Self::from_error(ErrorCode::Internal, error)
    }

    /// A domain error with its code; the message is its whole cause chain.
    pub fn from_error(code: ErrorCode, error: &(dyn std::error::Error + 'static)) -> Self {
        let message = error_chain(error);
        if code == ErrorCode::Internal {
            tracing::error!(error = %message, "request failed");
        }
        Self::new(status_of(code), code, message)
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// The HTTP status every response with error `code` carries.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::SshTimeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<banger_api::NameError> for ApiFailure {
    fn from(error: banger_api::NameError) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            error.to_string(),
        )
    }
}

/// Runs store-bound `work` on a blocking thread (SQLite fsyncs must not
/// stall the runtime) and maps its error to the API's.
pub(super) async fn blocking<T, E>(
    state: AppState,
    work: impl FnOnce(&AppState) -> Result<T, E> + Send + 'static,
) -> Result<T, ApiFailure>
where
    T: Send + 'static,
    E: Into<ApiFailure> + Send + 'static,
{
    match tokio::task::spawn_blocking(move || work(&state)).await {
        Ok(result) => result.map_err(Into::into),
        Err(join) => Err(ApiFailure::internal(&join)),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile_tests;
