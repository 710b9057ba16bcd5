//! bangerd: the daemon that owns all of banger's state.
//!
//! The binary (`main.rs`) wires these pieces together: [`listener`] claims the
//! single-instance lock and binds the private API socket, [`logging`] writes
//! size-capped JSON logs, [`store`] is the SQLite database with versioned
//! migrations, and [`api`] is the one route table serving the HTTP+JSON API,
//! from which the OpenAPI document is also generated.

pub mod api;
pub mod dns;
pub mod host;
pub mod images;
pub mod kernels;
pub mod listener;
pub mod logging;
pub mod operations;
pub mod peer;
pub mod sessions;
pub mod state;
pub mod store;
pub mod vms;
