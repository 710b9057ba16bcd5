//! The guest agent as a library: request handling ([`server`]) and the
//! session manager ([`sessions`]), so both can be tested on the host over
//! Unix sockets. The `banger-vsock-agent` binary serves them on vsock.

mod ports;
pub mod server;
pub mod sessions;
mod stats;

pub use server::{Agent, Connection};
pub use sessions::{DEFAULT_SESSION_ROOT, SessionManager};
