//! Printing an error with its causes, shared by every layer.
//!
//! Error types in bangerd never repeat their source in their own message;
//! the chain is printed once, where an error leaves the daemon (a log line,
//! an API response, a VM's `last_error`). The one implementation lives in
//! banger-host, so the daemon, the helpers and the test fakes print alike.

pub use banger_host::error_chain;
