//! The daemon's event bus: what changed, published by the code that changed
//! it, fanned out to every `GET /v1/events` client.
//!
//! A `tokio::sync::broadcast` channel: publishing never waits for anyone,
//! and a receiver that falls more than [`CAPACITY`] events behind is told
//! how many it missed (the API then ends that client's stream). The store
//! publishes VM records created, changed state and deleted, and sessions
//! started, ended and removed, since it is the one place every such change
//! passes; the health monitor publishes a running VM's health changes
//! (its state does not change, so the store does not); the state publishes
//! stats samples; a `ProgressSink` that announces its operation (VM create,
//! image build and pull) publishes its progress, throttled, and how it
//! ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use banger_api::events::{DaemonEvent, EventKind};
use tokio::sync::broadcast;

/// How many events a client may fall behind before it is dropped.
pub const CAPACITY: usize = 1024;

/// Where events are published. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<DaemonEvent>>,
    seq: Arc<AtomicU64>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(CAPACITY)
    }
}

impl EventBus {
    /// A bus keeping up to `capacity` events for slow receivers.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self {
            sender,
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Publishes `event` to every current receiver (none is fine).
    pub fn publish(&self, event: EventKind) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let time_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
            });
        let _ = self.sender.send(Arc::new(DaemonEvent {
            seq,
            time_unix_ms,
            event,
        }));
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<DaemonEvent>> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_api::VmName;

    fn created(name: &str) -> EventKind {
        EventKind::VmCreated {
            vm: VmName::parse(name).unwrap(),
        }
    }

    #[tokio::test]
    async fn receivers_get_numbered_events_and_a_slow_one_learns_what_it_missed() {
        let bus = EventBus::new(4);
        bus.publish(created("before"));
        let mut fast = bus.subscribe();
        let mut slow = bus.subscribe();
        bus.publish(created("a"));
        let first = fast.recv().await.unwrap();
        assert_eq!(first.seq, 2, "numbering counts events nobody received");
        assert_eq!(first.event, created("a"));
        // Publishing never waits for the slow receiver.
        for n in 0..10 {
            bus.publish(created(&format!("n{n}")));
        }
        match slow.recv().await {
            Err(broadcast::error::RecvError::Lagged(missed)) => assert_eq!(missed, 7),
            other => panic!("expected a lag, got {other:?}"),
        }
    }
}
