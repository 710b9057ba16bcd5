//! Path parameters parsed into the name types at the edge.
//!
//! A route's `{name}` (or a session route's `{name}/sessions/{session}`)
//! arrives as text; these extractors parse it with the name rule before the
//! handler runs, so handlers and the domain below them only see valid names,
//! and a bad name is a `400 bad_request` carrying the rule's message, in the
//! same JSON shape as every other error.

use std::str::FromStr;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use banger_api::{ErrorCode, NameError, VmName};

use super::ApiFailure;

/// The one name in a route's path (`/v1/vms/{name}`, `/v1/images/{name}`,
/// `/v1/kernels/{name}`), parsed as `T` (`VmName`, `ImageName`, `KernelName`).
#[derive(Debug, Clone)]
pub struct NamePath<T>(pub T);

impl<S, T> FromRequestParts<S> for NamePath<T>
where
    S: Send + Sync,
    T: FromStr<Err = NameError> + Send,
{
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(reject)?;
        Ok(Self(raw.parse()?))
    }
}

/// The VM and the item below it of `/v1/vms/{name}/sessions/{session}[/...]`
/// (`T` = `SessionName`) and `/v1/vms/{name}/snapshots/{snapshot}[/...]`
/// (`T` = `SnapshotName`).
#[derive(Debug, Clone)]
pub struct VmItemPath<T> {
    /// The VM.
    pub vm: VmName,
    /// The item (session, snapshot).
    pub item: T,
}

impl<S, T> FromRequestParts<S> for VmItemPath<T>
where
    S: Send + Sync,
    T: FromStr<Err = NameError> + Send,
{
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((vm, item)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(reject)?;
        Ok(Self {
            vm: VmName::parse(&vm)?,
            item: item.parse()?,
        })
    }
}

/// axum's own path rejections (a segment that is not UTF-8, a route
/// without the parameter), as JSON.
fn reject(rejection: PathRejection) -> ApiFailure {
    let status = rejection.status();
    let code = if status.is_server_error() {
        ErrorCode::Internal
    } else {
        ErrorCode::BadRequest
    };
    ApiFailure::new(status, code, rejection.body_text())
}
