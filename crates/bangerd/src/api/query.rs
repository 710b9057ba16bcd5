//! A query-string extractor whose every rejection is a JSON [`ApiFailure`].
//!
//! axum's own `Query` answers an unknown parameter or a value of the wrong
//! type with plain text; clients of this API always get the same error
//! shape, `400 bad_request` naming the parameter.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use banger_api::ErrorCode;
use serde::de::DeserializeOwned;

use super::ApiFailure;

/// Like `axum::extract::Query`, with JSON errors for unknown, missing or
/// mistyped parameters (query types use `deny_unknown_fields`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(reject(&rejection)),
        }
    }
}

fn reject(rejection: &QueryRejection) -> ApiFailure {
    let status = rejection.status();
    let code = if status.is_server_error() {
        ErrorCode::Internal
    } else {
        ErrorCode::BadRequest
    };
    ApiFailure::new(status, code, rejection.body_text())
}
