//! The daemon's live event stream (`GET /v1/events`): what changed, as it
//! happens, for clients that watch (the TUI, the web UI, scripts).
//!
//! The stream is NDJSON, one [`DaemonEvent`] per line, starting with the
//! events after the request was made. A client that reads too slowly is not
//! waited for: it gets one [`EventKind::Lagged`] event saying how many it
//! missed, and the stream ends; it reconnects and re-reads the state it
//! shows.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::VmName;
use crate::vms::{VmState, VmStats};

/// One event on the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DaemonEvent {
    /// Increases by one per event the daemon published (gaps mean missed
    /// events); starts at 1 when the daemon starts.
    pub seq: u64,
    /// When it happened, milliseconds since the Unix epoch.
    pub time_unix_ms: u64,
    /// What happened.
    pub event: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EventKind {
    /// A VM was recorded (by `vm create` or `vm adopt`), in state `created`.
    VmCreated {
        /// The VM.
        vm: VmName,
    },
    /// A VM changed state.
    VmState {
        /// The VM.
        vm: VmName,
        /// The state it left.
        from: VmState,
        /// The state it is in now.
        to: VmState,
        /// Why, when the change records a reason (an error, an exit).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A VM's record was removed.
    VmDeleted {
        /// The VM.
        vm: VmName,
    },
    /// A new stats sample of a running VM.
    Stats {
        /// The VM.
        vm: VmName,
        /// The sample.
        stats: VmStats,
    },
    /// This client read too slowly and missed events; the stream ends.
    Lagged {
        /// How many events it missed.
        missed: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_by_type() {
        let event = DaemonEvent {
            seq: 7,
            time_unix_ms: 1,
            event: EventKind::VmState {
                vm: VmName::parse("dev").unwrap(),
                from: VmState::Starting,
                to: VmState::Running,
                reason: None,
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"seq": 7, "time_unix_ms": 1, "event":
                {"type": "vm_state", "vm": "dev", "from": "starting", "to": "running"}})
        );
        assert_eq!(serde_json::from_value::<DaemonEvent>(json).unwrap(), event);
    }
}
