//! `bangerd-root`: the root helper of a system install (docs/privileges.md).
//!
//! It serves the [`PrivilegedOps`](banger_host::privileged::PrivilegedOps)
//! calls, as [`banger_host::root_helper::proto`] requests, on a root-owned
//! Unix socket. [`socket::bind`] makes that socket (owner-only, stale
//! sockets replaced, nothing else ever removed); [`server::serve`] accepts
//! connections, refuses every peer whose `SO_PEERCRED` uid is not the
//! installed owner, reads bounded frames under a time limit, checks every
//! request against the install ([`policy::Policy`]) and only then calls the
//! operations. The helper keeps no state between requests: what exists on
//! the host (bridge, TAPs, nftables tables) is the only state, and the
//! daemon owns the decisions.

pub mod policy;
pub mod server;
pub mod socket;

pub use policy::{Policy, PolicyError, Refusal};
pub use server::serve;
