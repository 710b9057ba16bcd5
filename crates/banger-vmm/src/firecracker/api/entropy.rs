//! `PUT /entropy`: the virtio-rng entropy device (spec definition
//! `EntropyDevice`).
//!
//! Guests get it so that their kernel's random pool is seeded at boot from the
//! host instead of from interrupt jitter, which can take minutes on a busy or
//! emulated host and stalls everything that calls `getrandom` (sshd, udev).
//! No rate limiter: once the pool is seeded, the guest kernel reads the
//! device only at its reseed interval (about once a minute).

use serde::{Deserialize, Serialize};

/// Body of `PUT /entropy`: no fields are set, so Firecracker's defaults apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntropyConfig {}
