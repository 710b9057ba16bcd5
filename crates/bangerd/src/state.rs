//! State shared by every request handler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use banger_api::VmName;
use banger_api::events::EventKind;
use banger_api::vms::VmStats;
use std::time::Instant;

use banger_config::{Config, Paths};
use tokio::sync::watch;

use crate::events::EventBus;
use crate::host::Host;
use crate::store::Store;

/// Shared handle type for the per-VM locks.
pub type VmLock = Arc<tokio::sync::Mutex<()>>;

/// Stats samples kept per VM: an hour at the poller's 10 s interval.
pub const STATS_HISTORY: usize = 360;

/// The `.vm` DNS record table and server handle; `crate::dns` runs them.
#[derive(Default)]
pub struct Dns {
    /// Name to address, read by the server on every query.
    pub records: banger_dns::VmRecords,
    /// The server, once bound.
    pub(crate) server: tokio::sync::Mutex<Option<banger_dns::DnsServer>>,
    /// Set once the bridge listener and resolver integration are done.
    pub(crate) bridge_ready: tokio::sync::OnceCell<()>,
}

impl Dns {
    /// Whether the server is bound.
    pub async fn serving(&self) -> bool {
        self.server.lock().await.is_some()
    }
}

/// The database task was cancelled because the runtime is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the daemon is shutting down; the database task was cancelled")]
pub struct StoreTaskCancelled;

/// Everything a handler may need, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// A handle on the daemon's state that does not keep it alive: background
/// tasks that outlive a request (VMM exit watchers) hold this, so a daemon
/// that is gone (dropped, as tests do to simulate a restart) is not acted
/// for by its leftover tasks.
#[derive(Clone)]
pub struct WeakAppState {
    inner: std::sync::Weak<Inner>,
}

impl WeakAppState {
    /// The state, while the daemon that owns it still exists.
    pub fn upgrade(&self) -> Option<AppState> {
        self.inner.upgrade().map(|inner| AppState { inner })
    }
}

struct Inner {
    paths: Paths,
    config: Config,
    store: Mutex<Store>,
    artifacts: Mutex<()>,
    images: tokio::sync::Mutex<()>,
    host: Host,
    vm_locks: Mutex<HashMap<VmName, VmLock>>,
    stats: Mutex<HashMap<VmName, std::collections::VecDeque<VmStats>>>,
    firewall: tokio::sync::Mutex<()>,
    dns: Dns,
    events: EventBus,
    /// The web UI's URL with its secret, once `main` serves it.
    web_url: std::sync::OnceLock<String>,
    started: Instant,
    shutdown: watch::Sender<bool>,
}

impl AppState {
    /// Bundles the daemon's state. `shutdown` is flipped to `true` to stop the server.
    pub fn new(
        paths: Paths,
        config: Config,
        mut store: Store,
        host: Host,
        shutdown: watch::Sender<bool>,
    ) -> Self {
        let events = EventBus::default();
        store.publish_events(events.clone());
        Self {
            inner: Arc::new(Inner {
                paths,
                config,
                store: Mutex::new(store),
                artifacts: Mutex::new(()),
                images: tokio::sync::Mutex::new(()),
                host,
                vm_locks: Mutex::new(HashMap::new()),
                stats: Mutex::new(HashMap::new()),
                firewall: tokio::sync::Mutex::new(()),
                dns: Dns::default(),
                events,
                web_url: std::sync::OnceLock::new(),
                started: Instant::now(),
                shutdown,
            }),
        }
    }

    /// Records that the web UI is served at `url` (which carries its
    /// secret); `GET /v1/daemon/status` reports it. Set once.
    pub fn set_web_url(&self, url: String) {
        let _ = self.inner.web_url.set(url);
    }

    /// The web UI's URL with its secret, while it is served.
    pub fn web_url(&self) -> Option<String> {
        self.inner.web_url.get().cloned()
    }

    /// A handle that does not keep the state alive (see [`WeakAppState`]).
    pub fn downgrade(&self) -> WeakAppState {
        WeakAppState {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Resolved directories.
    pub fn paths(&self) -> &Paths {
        &self.inner.paths
    }

    /// Effective configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// When the daemon started serving.
    pub fn started(&self) -> Instant {
        self.inner.started
    }

    /// Runs `work` with exclusive access to the store on a blocking thread,
    /// so SQLite's fsyncs never stall the async runtime.
    pub async fn with_store<T, F>(&self, work: F) -> Result<T, StoreTaskCancelled>
    where
        F: FnOnce(&mut Store) -> T + Send + 'static,
        T: Send + 'static,
    {
        let state = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            // A poisoned lock means a previous query panicked mid-way; the
            // connection itself is still consistent (SQLite rolled back), so
            // carry on with it rather than wedging the daemon.
            let mut store = state
                .inner
                .store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            work(&mut store)
        });
        match task.await {
            Ok(value) => Ok(value),
            Err(join_error) if join_error.is_panic() => {
                std::panic::resume_unwind(join_error.into_panic())
            }
            Err(_) => Err(StoreTaskCancelled),
        }
    }

    /// Locks the store from a blocking thread. Hold it only for queries,
    /// never across slow work.
    pub fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.inner
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serialises operations that create or delete kernel and image
    /// artifacts, so two pulls of one kernel cannot interleave. Blocking.
    pub fn artifacts_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .artifacts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serialises changes to image rows (register, re-register) against VM
    /// creates recording which image they use: a create either sees the
    /// image before the change (and the change is then refused, since a VM
    /// uses it) or after it, never files changed between its check and its
    /// row. Register holds it from its first check to its last write
    /// (`blocking_lock`, it runs on a blocking thread); create only while it
    /// writes the VM's row.
    pub fn images_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.images
    }

    /// Host resources (network, KVM verdict, programs).
    pub fn host(&self) -> &Host {
        &self.inner.host
    }

    /// The lock serialising operations on one VM.
    pub fn vm_lock(&self, name: &VmName) -> VmLock {
        let mut locks = self
            .inner
            .vm_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(name.clone()).or_default().clone()
    }

    /// Serialises firewall updates (see `vms::firewall`).
    pub fn firewall_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.firewall
    }

    /// The `.vm` DNS records and server.
    pub fn dns(&self) -> &Dns {
        &self.inner.dns
    }

    /// Keeps a stats sample (the newest [`STATS_HISTORY`] per VM).
    pub fn record_stats(&self, name: &VmName, sample: VmStats) {
        let mut stats = self
            .inner
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let history = stats.entry(name.clone()).or_default();
        if history.len() >= STATS_HISTORY {
            history.pop_front();
        }
        history.push_back(sample.clone());
        drop(stats);
        self.inner.events.publish(EventKind::Stats {
            vm: name.clone(),
            stats: sample,
        });
    }

    /// The event bus (`GET /v1/events`).
    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    /// Recent stats samples of a VM, oldest first.
    pub fn stats_history(&self, name: &VmName) -> Vec<VmStats> {
        let stats = self
            .inner
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        stats
            .get(name)
            .map(|history| history.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Drops the lock entry of a deleted VM.
    pub fn forget_vm_lock(&self, name: &VmName) {
        let mut locks = self
            .inner
            .vm_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.remove(name);
        drop(locks);
        let mut stats = self
            .inner
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        stats.remove(name);
    }

    /// Flips to `true` when the daemon is asked to stop (long-lived
    /// responses such as the event stream end then).
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Asks the server to shut down gracefully.
    pub fn request_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

#[cfg(test)]
impl AppState {
    /// A daemon state for unit tests: its directories under `root`, the
    /// default configuration, an in-memory store and a host that cannot run
    /// VMs; with the receiving end of its shutdown signal.
    pub(crate) fn for_tests(root: &std::path::Path) -> (Self, watch::Receiver<bool>) {
        let paths = Paths {
            config_dir: root.join("config"),
            state_dir: root.join("state"),
            cache_dir: root.join("cache"),
            runtime_dir: root.join("run"),
            home_dir: None,
        };
        let env = |name: &str| (name == "HOME").then(|| "/home/test".to_owned());
        let config = banger_config::LoadedConfig::from_parts(&paths, None, &env)
            .expect("default configuration")
            .config;
        let (sender, shutdown) = watch::channel(false);
        let state = Self::new(
            paths,
            config,
            Store::open_in_memory().expect("in-memory store"),
            Host::unavailable("unit tests"),
            sender,
        );
        (state, shutdown)
    }
}
