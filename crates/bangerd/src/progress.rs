//! Progress of long operations, reported by domain code and streamed to the
//! client by the API layer.
//!
//! Domain functions report through a [`ProgressSink`]; it turns each report
//! into one NDJSON line of `banger_api::operation::OperationEvent` and hands
//! it to whoever made the sink (the API's streaming adapter, see
//! `api::stream`). The work never depends on anyone reading: events for a
//! disconnected client are dropped.
//!
//! A sink can also announce its operation on the event bus
//! ([`ProgressSink::announced`]): VM create, image build and image pull
//! publish the same [`Progress`] as `progress` events, throttled to one per
//! [`ANNOUNCE_INTERVAL`] (watchers want to see it move, not every file
//! written), and one `operation_finished` event ([`ProgressSink::finish`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use banger_api::events::{EventKind, OperationKind};
use banger_api::operation::{OperationEvent, Progress};
use banger_api::{ApiError, ErrorCode};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::events::EventBus;

/// The least time between two `progress` events of one operation on the
/// bus (so at most 5 a second).
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(200);

/// Numbers announced operations, so watchers can tell concurrent ones apart.
static NEXT_OPERATION_ID: AtomicU64 = AtomicU64::new(1);

/// One serialised event: a JSON document followed by `\n`.
pub type EventLine = Vec<u8>;

/// Where an operation reports its progress. Cheap to clone; sending never
/// fails (events for a disconnected client are dropped).
#[derive(Debug, Clone)]
pub struct ProgressSink {
    sender: Option<mpsc::UnboundedSender<EventLine>>,
    announce: Option<Arc<Announce>>,
}

/// An operation whose progress also goes to the event bus.
#[derive(Debug)]
struct Announce {
    bus: EventBus,
    id: u64,
    operation: OperationKind,
    state: Mutex<AnnounceState>,
}

/// What changes while an announced operation runs.
#[derive(Debug, Default)]
struct AnnounceState {
    /// The VM or image, once known.
    name: Option<String>,
    /// When the last `progress` event was published.
    last: Option<Instant>,
    /// Whether `operation_finished` was published (only once).
    finished: bool,
}

impl Announce {
    fn state(&self) -> std::sync::MutexGuard<'_, AnnounceState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn progress(&self, progress: &Progress) {
        let name = {
            let mut state = self.state();
            let now = Instant::now();
            let due = state
                .last
                .is_none_or(|last| now.duration_since(last) >= ANNOUNCE_INTERVAL);
            if state.finished || !due {
                return;
            }
            state.last = Some(now);
            state.name.clone()
        };
        self.bus.publish(EventKind::Progress {
            operation_id: self.id,
            operation: self.operation,
            name,
            progress: progress.clone(),
        });
    }

    fn finish(&self, error: Option<ApiError>) {
        let name = {
            let mut state = self.state();
            if state.finished {
                return;
            }
            state.finished = true;
            state.name.clone()
        };
        self.bus.publish(EventKind::OperationFinished {
            operation_id: self.id,
            operation: self.operation,
            name,
            ok: error.is_none(),
            error,
        });
    }
}

impl ProgressSink {
    /// A sink that discards everything (internal callers, tests).
    pub fn discard() -> Self {
        Self {
            sender: None,
            announce: None,
        }
    }

    /// A sink and the receiving end of its event lines.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<EventLine>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (
            Self {
                sender: Some(sender),
                announce: None,
            },
            receiver,
        )
    }

    /// Sends one event as an NDJSON line (the final `done`/`failed` one too).
    pub fn send_event<T: Serialize>(&self, event: &OperationEvent<T>) {
        if let (Some(announce), OperationEvent::Progress(progress)) = (&self.announce, event) {
            announce.progress(progress);
        }
        let Some(sender) = &self.sender else { return };
        if let Ok(mut line) = serde_json::to_vec(event) {
            line.push(b'\n');
            let _ = sender.send(line);
        }
    }

    /// This sink, also announcing `operation` (making `name`, when known
    /// yet) on `bus` under a new operation id. Nested operations that get
    /// this sink (a kernel pulled for a VM create) report as its steps.
    pub fn announced(
        &self,
        bus: &EventBus,
        operation: OperationKind,
        name: Option<String>,
    ) -> Self {
        Self {
            sender: self.sender.clone(),
            announce: Some(Arc::new(Announce {
                bus: bus.clone(),
                id: NEXT_OPERATION_ID.fetch_add(1, Ordering::Relaxed),
                operation,
                state: Mutex::new(AnnounceState {
                    name,
                    ..AnnounceState::default()
                }),
            })),
        }
    }

    /// Names what the announced operation makes, once known (a VM created
    /// without a name gets one when it is recorded).
    pub fn name_known(&self, name: &str) {
        if let Some(announce) = &self.announce {
            announce.state().name = Some(name.to_owned());
        }
    }

    /// Announces that the operation ended with `result` (`code` gives the
    /// error's category); once, and only on an announcing sink.
    pub fn finish<T, E>(&self, result: &Result<T, E>, code: impl FnOnce(&E) -> ErrorCode)
    where
        E: std::error::Error + 'static,
    {
        let Some(announce) = &self.announce else {
            return;
        };
        announce.finish(result.as_ref().err().map(|error| ApiError {
            code: code(error),
            message: crate::error::error_chain(error),
        }));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("no such image")]
    struct Missing;

    #[tokio::test]
    async fn an_announced_operation_publishes_throttled_progress_and_ends_once() {
        let bus = EventBus::default();
        let mut events = bus.subscribe();
        let (sink, mut lines) = ProgressSink::channel();
        let sink = sink.announced(&bus, OperationKind::ImagePull, None);
        for n in 0..100 {
            sink.fraction("download", format!("chunk {n}"), n, Some(100));
        }
        sink.name_known("alpine");
        sink.stage("write", "writing rootfs.ext4");
        let failed: Result<(), Missing> = Err(Missing);
        sink.finish(&failed, |_| ErrorCode::NotFound);
        sink.finish(&Ok::<(), Missing>(()), |_| ErrorCode::Internal);

        // The stream still gets every step.
        let mut streamed = 0;
        while lines.try_recv().is_ok() {
            streamed += 1;
        }
        assert_eq!(streamed, 101);
        let mut published = Vec::new();
        while let Ok(event) = events.try_recv() {
            published.push(event.event.clone());
        }
        assert_eq!(published.len(), 2, "{published:?}");
        let EventKind::Progress {
            operation_id,
            operation: OperationKind::ImagePull,
            name: None,
            progress,
        } = &published[0]
        else {
            panic!("not a progress event: {published:?}");
        };
        assert_eq!(progress.message, "chunk 0");
        assert_eq!(
            published[1],
            EventKind::OperationFinished {
                operation_id: *operation_id,
                operation: OperationKind::ImagePull,
                name: Some("alpine".to_owned()),
                ok: false,
                error: Some(ApiError {
                    code: ErrorCode::NotFound,
                    message: "no such image".to_owned(),
                }),
            }
        );
    }

    #[test]
    fn a_plain_sink_publishes_nothing() {
        let sink = ProgressSink::discard();
        sink.stage("x", "y");
        sink.finish(&Ok::<(), Missing>(()), |_| ErrorCode::Internal);
    }
}
