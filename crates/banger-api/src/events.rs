//! The daemon's live event stream (`GET /v1/events`): what changed, as it
//! happens, for clients that watch (the TUI, the web UI, scripts).
//!
//! The stream is NDJSON, one [`DaemonEvent`] per line, starting with the
//! events after the request was made. A client that reads too slowly is not
//! waited for: it gets one [`EventKind::Lagged`] event saying how many it
//! missed, and the stream ends; it reconnects and re-reads the state it
//! shows.
//!
//! Long operations (VM create, image build, image pull) report the same
//! [`Progress`] their own NDJSON stream carries, at most a few times a
//! second, and one [`EventKind::OperationFinished`]; events of one run
//! share an `operation_id`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::operation::Progress;
use crate::sessions::SessionState;
use crate::vms::{VmState, VmStats};
use crate::{ApiError, SessionName, VmName};

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
    /// A running VM's health changed while its state stayed `running`:
    /// its VMM stopped answering (SIGSTOP, a debugger) or a helper it needs
    /// exited, or that was mended. The VM's `last_error` now holds the same
    /// text.
    VmHealth {
        /// The VM.
        vm: VmName,
        /// What is wrong and what to do about it (it starts `unhealthy: `);
        /// absent when the VM is healthy again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warning: Option<String>,
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
    /// A long operation moved on (published at most 5 times a second per
    /// operation; its own stream gets every step).
    Progress {
        /// Identifies this run of the operation across its events.
        operation_id: u64,
        /// Which operation.
        operation: OperationKind,
        /// The VM or image it makes; absent until known (a VM created
        /// without a name gets one when it is recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The step, as the operation's NDJSON stream reports it.
        progress: Progress,
    },
    /// A long operation ended; its last event.
    OperationFinished {
        /// Identifies this run of the operation across its events.
        operation_id: u64,
        /// Which operation.
        operation: OperationKind,
        /// The VM or image it made or tried to make, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Whether it succeeded.
        ok: bool,
        /// Why it failed (absent when it succeeded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ApiError>,
    },
    /// A session was started in a VM.
    SessionStarted {
        /// The VM.
        vm: VmName,
        /// The session.
        session: SessionName,
    },
    /// A session ended: its process exited (as the daemon learns when it
    /// asks the guest agent), or it was lost (the VM stopped, or the agent
    /// no longer knows it).
    SessionEnded {
        /// The VM.
        vm: VmName,
        /// The session.
        session: SessionName,
        /// `exited` or `lost`.
        state: SessionState,
        /// Exit code, when it exited normally.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// Signal number, when a signal ended it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
    /// An ended session was removed (its logs are gone).
    SessionRemoved {
        /// The VM.
        vm: VmName,
        /// The session.
        session: SessionName,
    },
    /// This client read too slowly and missed events; the stream ends.
    Lagged {
        /// How many events it missed.
        missed: u64,
    },
}

/// A long operation that reports progress on the event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// `POST /v1/vms` (`banger vm create`, `vm run`).
    VmCreate,
    /// `POST /v1/images/build`.
    ImageBuild,
    /// `POST /v1/images/pull`.
    ImagePull,
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

    #[test]
    fn progress_carries_the_streams_progress_object() {
        let event = EventKind::Progress {
            operation_id: 3,
            operation: OperationKind::ImagePull,
            name: Some("alpine".to_owned()),
            progress: Progress {
                stage: "download".to_owned(),
                message: "layer 1/2".to_owned(),
                fraction: Some(0.5),
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "progress", "operation_id": 3, "operation": "image_pull",
                "name": "alpine", "progress": {"stage": "download", "message": "layer 1/2", "fraction": 0.5}})
        );
        assert_eq!(serde_json::from_value::<EventKind>(json).unwrap(), event);
        let ended = EventKind::SessionEnded {
            vm: VmName::parse("dev").unwrap(),
            session: SessionName::parse("build").unwrap(),
            state: SessionState::Exited,
            exit_code: Some(0),
            signal: None,
        };
        assert_eq!(
            serde_json::to_value(&ended).unwrap(),
            serde_json::json!({"type": "session_ended", "vm": "dev", "session": "build",
                "state": "exited", "exit_code": 0})
        );
    }
}
