//! bangerd: the daemon that owns all of banger's state.
//!
//! The modules form layers that import one way only (checked by
//! `tests/layering.rs`; the diagram is in `docs/architecture.md`):
//!
//! - `main.rs` wires everything and serves.
//! - [`api`]: the route table, extractors, the mapping of domain errors to
//!   HTTP statuses and error codes, progress streaming, the peer check. The
//!   only module that knows HTTP.
//! - [`usage`]: the host disk usage report (`system df`), above the domain
//!   modules it reads.
//! - Domain: [`sessions`], [`vms`], [`images`], [`kernels`], [`dns`]: what
//!   the daemon does, each with its own error enum.
//! - Below them: [`state`] (what every operation shares), [`store`] (SQLite),
//!   [`host`] (network, VMM choice, programs), [`progress`], [`error`],
//!   [`listener`], [`logging`] and [`step_timer`]; [`fault`] (test-only crash points) at
//!   the very bottom.

pub mod api;
pub mod dns;
pub mod error;
pub mod events;
pub mod fault;
pub mod host;
pub mod images;
pub mod kernels;
pub mod listener;
pub mod logging;
pub mod progress;
pub mod sessions;
pub mod state;
pub mod step_timer;
pub mod store;
pub mod usage;
pub mod vms;
