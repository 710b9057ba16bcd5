//! `banger mcp`: a Model Context Protocol server over stdio, so coding
//! agents (Claude Code, opencode, Codex, pi) create and use sandboxes
//! themselves.
//!
//! - [`jsonrpc`] reads one JSON-RPC 2.0 message per line and answers every
//!   malformed one with a JSON-RPC error, then keeps serving.
//! - [`server`] speaks the MCP subset a tool server needs: `initialize`,
//!   `notifications/initialized`, `ping`, `tools/list` and `tools/call`.
//! - [`tools`] are the sandbox operations, talking to bangerd through
//!   `banger_client` and to guests through the system `ssh`, as the CLI does.
//! - [`safety`] keeps host paths under the allowed roots, and [`bound`]
//!   every output within fixed limits.
//! - [`install`] writes the server's entry into a client's MCP config.
//!
//! Why not the rmcp SDK: see `docs/mcp.md` ("Implementation").

pub mod bound;
pub mod install;
pub mod jsonrpc;
mod remote;
pub mod safety;
pub mod server;
pub mod tools;

pub use safety::{AllowedRoots, HostPathError};
pub use server::{ServeError, Server, ServerOptions, serve, serve_stdio};
