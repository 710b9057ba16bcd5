//! The URL paths of the daemon API, in one place so the router and the client
//! cannot drift apart.

/// `GET`: daemon status.
pub const DAEMON_STATUS: &str = "/v1/daemon/status";
/// `POST`: graceful daemon stop.
pub const DAEMON_STOP: &str = "/v1/daemon/stop";
/// `POST`: database integrity check.
pub const DAEMON_CHECK: &str = "/v1/daemon/check";
/// `GET`: the OpenAPI document of this API.
pub const OPENAPI: &str = "/v1/openapi.json";
