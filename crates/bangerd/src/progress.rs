//! Progress of long operations, reported by domain code and streamed to the
//! client by the API layer.
//!
//! Domain functions report through a [`ProgressSink`]; it turns each report
//! into one NDJSON line of `banger_api::operation::OperationEvent` and hands
//! it to whoever made the sink (the API's streaming adapter, see
//! `api::stream`). The work never depends on anyone reading: events for a
//! disconnected client are dropped.

use banger_api::operation::{OperationEvent, Progress};
use serde::Serialize;
use tokio::sync::mpsc;

/// One serialised event: a JSON document followed by `\n`.
pub type EventLine = Vec<u8>;

/// Where an operation reports its progress. Cheap to clone; sending never
/// fails (events for a disconnected client are dropped).
#[derive(Debug, Clone)]
pub struct ProgressSink {
    sender: Option<mpsc::UnboundedSender<EventLine>>,
}

impl ProgressSink {
    /// A sink that discards everything (internal callers, tests).
    pub fn discard() -> Self {
        Self { sender: None }
    }

    /// A sink and the receiving end of its event lines.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<EventLine>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (
            Self {
                sender: Some(sender),
            },
            receiver,
        )
    }

    /// Sends one event as an NDJSON line (the final `done`/`failed` one too).
    pub fn send_event<T: Serialize>(&self, event: &OperationEvent<T>) {
        let Some(sender) = &self.sender else { return };
        if let Ok(mut line) = serde_json::to_vec(event) {
            line.push(b'\n');
            let _ = sender.send(line);
        }
    }

    /// Reports that the operation entered `stage`.
    pub fn stage(&self, stage: &str, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(stage, message = %message, "progress");
        self.send_event::<()>(&OperationEvent::Progress(Progress {
            stage: stage.to_owned(),
            message,
            fraction: None,
        }));
    }

    /// Reports `done` of `total` units within `stage`.
    pub fn fraction(&self, stage: &str, message: impl Into<String>, done: u64, total: Option<u64>) {
        let fraction = total
            .filter(|total| *total > 0)
            .map(|total| (done as f64 / total as f64).min(1.0) as f32);
        self.send_event::<()>(&OperationEvent::Progress(Progress {
            stage: stage.to_owned(),
            message: message.into(),
            fraction,
        }));
    }
}
