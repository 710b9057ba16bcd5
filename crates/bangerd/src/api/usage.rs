//! The `/v1/usage` resource: the host disk space banger uses
//! (`banger system df`).

use axum::Json;
use axum::extract::State;
use banger_api::usage::UsageReport;

use super::{ApiFailure, blocking};
use crate::state::AppState;
use crate::usage::{self, UsageError};

impl From<UsageError> for ApiFailure {
    fn from(error: UsageError) -> Self {
        ApiFailure::from_error(error.code(), &error)
    }
}

/// Host disk usage (allocated bytes) per VM, image, kernel and cache, with
/// a total.
#[utoipa::path(get, path = "/v1/usage", tag = "usage",
    responses((status = 200, description = "Usage per VM, image, kernel and cache", body = UsageReport)))]
pub async fn report(State(state): State<AppState>) -> Result<Json<UsageReport>, ApiFailure> {
    blocking(state, usage::report).await.map(Json)
}
