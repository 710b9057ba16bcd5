//! The guest agent as a library: request handling ([`server`]) and the
//! session manager ([`sessions`]), so both can be tested on the host over
//! Unix sockets. The `banger-vsock-agent` binary serves them on vsock.
//! [`sshd`] is the SSH server for images without one, [`init`] the minimal
//! PID 1 for images without an init.

mod clock;
mod devpts;
mod identity;
pub mod init;
mod ports;
pub mod server;
pub mod sessions;
pub mod sshd;
mod stats;

pub use server::{Agent, Connection};
pub use sessions::{DEFAULT_SESSION_ROOT, SessionManager};
