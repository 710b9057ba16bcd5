//! Following the daemon's event stream for the UI.
//!
//! One task per web server reads `GET /v1/events` through banger-client.
//! Each event is re-sent to every open page (server-sent events on
//! `/api/events`), and stats samples are kept per VM for the last hour so
//! a VM page can draw its charts at once. When the daemon's stream ends
//! (this reader lagged, or the daemon restarted its stream) the task
//! reconnects and tells the pages to re-read what they show.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use banger_api::VmName;
use banger_api::events::{DaemonEvent, EventKind};
use banger_api::vms::VmStats;
use tokio::sync::broadcast;

use crate::WebState;

/// How far back the charts reach.
pub const HISTORY_SECS: i64 = 3600;
/// Most samples kept per VM, whatever the poll interval (one a second for
/// an hour).
pub const MAX_SAMPLES: usize = 3600;
/// Events buffered for slow pages before they lag (and reload).
const FEED_CAPACITY: usize = 256;
/// Pause before reconnecting to a daemon stream that failed.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// What the pages receive, one JSON text per server-sent event: the
/// daemon's events as they are, plus `{"event":{"type":"resync"}}` when
/// events may have been missed.
pub type FeedItem = std::sync::Arc<str>;

/// The feed to the pages and the stats history.
pub struct Follower {
    feed: broadcast::Sender<FeedItem>,
    history: Mutex<HashMap<VmName, VecDeque<VmStats>>>,
}

impl Default for Follower {
    fn default() -> Self {
        Self {
            feed: broadcast::channel(FEED_CAPACITY).0,
            history: Mutex::new(HashMap::new()),
        }
    }
}

impl Follower {
    /// A receiver of every feed item from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<FeedItem> {
        self.feed.subscribe()
    }

    /// The VM's samples of the last hour, oldest first.
    pub fn history(&self, vm: &VmName) -> Vec<VmStats> {
        let history = self
            .history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        history
            .get(vm)
            .map(|samples| samples.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Takes one daemon event: keeps stats, forgets deleted VMs, and
    /// passes it on to the pages.
    pub fn record(&self, event: &DaemonEvent) {
        match &event.event {
            EventKind::Stats { vm, stats } => self.keep_sample(vm, stats.clone()),
            EventKind::VmDeleted { vm } => {
                self.history
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(vm);
            }
            // Other kinds (state changes, and any the daemon adds) are
            // only passed on; the pages ignore kinds they do not know.
            _ => {}
        }
        if let Ok(text) = serde_json::to_string(event) {
            let _ = self.feed.send(text.into());
        }
    }

    /// Tells the pages to re-read everything (events may have been missed).
    pub fn resync(&self) {
        let _ = self.feed.send(r#"{"event":{"type":"resync"}}"#.into());
    }

    fn keep_sample(&self, vm: &VmName, stats: VmStats) {
        let mut history = self
            .history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let samples = history.entry(vm.clone()).or_default();
        let oldest_kept = stats.sampled_at - HISTORY_SECS;
        samples.push_back(stats);
        while samples.len() > MAX_SAMPLES
            || samples
                .front()
                .is_some_and(|sample| sample.sampled_at < oldest_kept)
        {
            samples.pop_front();
        }
    }
}

/// Follows the daemon's events for as long as the runtime runs.
pub async fn run(state: WebState) {
    loop {
        match state.client().events().await {
            Ok(mut stream) => {
                // Pages re-read the state they show: events between the
                // last stream and this one are lost.
                state.follower().resync();
                loop {
                    match stream.next_event().await {
                        Ok(Some(event)) => {
                            let lagged = matches!(event.event, EventKind::Lagged { .. });
                            state.follower().record(&event);
                            if lagged {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(error) => {
                            tracing::debug!(%error, "the daemon's event stream failed");
                            break;
                        }
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "cannot follow the daemon's events"),
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}
