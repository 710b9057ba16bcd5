//! A JSON body extractor whose every rejection is a JSON [`ApiFailure`].
//!
//! axum's own `Json` answers bad bodies with plain text; clients of this API
//! always get the same error shape, whatever went wrong.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use banger_api::ErrorCode;
use serde::de::DeserializeOwned;

use super::ApiFailure;

/// Like `axum::Json`, with JSON errors for malformed, mistyped or oversized bodies.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiFailure;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(reject(&rejection)),
        }
    }
}

fn reject(rejection: &JsonRejection) -> ApiFailure {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiFailure::new(
            status,
            ErrorCode::PayloadTooLarge,
            format!(
                "request body is larger than the limit of {} bytes",
                super::MAX_BODY_BYTES
            ),
        );
    }
    ApiFailure::new(status, ErrorCode::BadRequest, rejection.body_text())
}
