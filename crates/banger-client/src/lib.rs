//! Typed async client for the bangerd API, and starting the daemon on demand.
//!
//! [`DaemonClient`] speaks HTTP/1.1 over the daemon's Unix socket, one short
//! connection per call, and turns JSON error bodies back into
//! [`banger_api::ApiError`]. [`autostart`] connects to a running daemon or
//! starts one, serialised by a lock so concurrent clients start exactly one.

pub mod autostart;
mod client;
mod events;
mod images;
mod kernels;
mod sessions;
mod snapshots;
pub mod ssh;
mod usage;
mod vms;

pub use autostart::{StartError, connect_or_start};
pub use client::{ByteStream, ClientError, DaemonClient, Operation, UpgradedConnection};
pub use events::EventStream;
pub use sessions::SessionAction;
