//! Wire types of the bangerd HTTP+JSON API, shared by the daemon and every client.
//!
//! This crate does no IO. The daemon serialises these types, the client
//! deserialises them, and the OpenAPI document is generated from the same
//! definitions, so the three can never disagree. Validation rules that every
//! component must apply identically (VM, image, kernel and session names)
//! live here too.

pub mod daemon;
pub mod error;
pub mod events;
pub mod images;
pub mod kernels;
pub mod names;
pub mod operation;
pub mod paths;
pub mod sessions;
pub mod snapshots;
pub mod usage;
pub mod vms;

pub use error::{ApiError, ErrorCode};
pub use names::{ImageName, KernelName, NameError, NameKind, SessionName, SnapshotName, VmName};

/// Version of this banger build; the daemon reports it and clients compare it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
