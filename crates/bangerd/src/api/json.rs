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
        if !is_json(request.headers()) {
            return Err(ApiFailure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::BadRequest,
                "expected a request with `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| too_large_or(rejection.status(), rejection.body_text()))?;
        // serde reads a struct from a JSON array too (fields by position),
        // so `[]` would pass as "all defaults" for a body whose fields are
        // all optional: every request body of this API is an object.
        if let Some(first) = bytes.iter().find(|byte| !byte.is_ascii_whitespace())
            && *first != b'{'
        {
            return Err(ApiFailure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::BadRequest,
                "the request body must be a JSON object ({...})",
            ));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(reject(&rejection)),
        }
    }
}

/// Whether the request says its body is JSON (`application/json` or
/// `application/*+json`), as `axum::Json` requires.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn too_large_or(status: StatusCode, text: String) -> ApiFailure {
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
    ApiFailure::new(status, ErrorCode::BadRequest, text)
}

fn reject(rejection: &JsonRejection) -> ApiFailure {
    too_large_or(rejection.status(), rejection.body_text())
}
