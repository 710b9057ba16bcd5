//! A warm pool of TAP devices, so `vm create` does not wait for one.
//!
//! The pool keeps `tap_pool_size` spare TAPs created ahead of time (owned by
//! the daemon's user, attached to the bridge, up). [`TapPool::take`] hands
//! one out — or creates one on the spot when the pool is empty — and
//! schedules a background refill; [`TapPool::release`] deletes a TAP a VM no
//! longer needs (a fresh device per VM is cheap, ~0.3 ms, and carries no
//! state from the previous guest).
//!
//! Names are chosen here: the lowest `bgtap<N>` whose index is not known to
//! be in use (spares, TAPs handed out, TAPs the daemon reported as claimed).
//! On start the daemon calls [`TapPool::reconcile`] with the TAPs its VMs
//! claim; every other banger TAP (leaked by a crash) is deleted, and
//! devices with foreign names are never looked at.
//!
//! All device work goes through [`PrivilegedOps`], so the pool works the
//! same with the in-process implementation and with `bangerd-root`.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::net::names::{BridgeName, TapName};
use crate::net::tun::TunError;
use crate::privileged::{PrivilegedError, PrivilegedOps};

/// How many taken names `create_one` skips when it finds devices it did
/// not know about, before giving up.
const MAX_NAME_COLLISIONS: usize = 64;

/// A pool operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A privileged operation on one TAP failed.
    #[error("TAP pool: cannot {op} {tap}")]
    Tap {
        /// `"create"`, `"delete"`.
        op: &'static str,
        /// The TAP.
        tap: String,
        /// What went wrong.
        #[source]
        source: PrivilegedError,
    },
    /// Listing the existing TAPs failed.
    #[error("TAP pool: cannot list banger TAPs")]
    List {
        /// What went wrong.
        #[source]
        source: PrivilegedError,
    },
    /// Too many names were already taken by devices the pool did not know.
    #[error("TAP pool: {count} consecutive TAP names were already taken, last {last}")]
    NamesTaken {
        /// How many were tried.
        count: usize,
        /// The last name tried.
        last: String,
    },
}

#[derive(Debug, Default)]
struct State {
    /// Ready TAPs, oldest first.
    spare: VecDeque<TapName>,
    /// Every index the pool must not hand out again: spares, TAPs handed
    /// out and not released, claimed TAPs, TAPs being created.
    reserved: BTreeSet<u32>,
}

impl State {
    fn reserve_lowest(&mut self) -> TapName {
        let mut index = 0u32;
        for taken in &self.reserved {
            if *taken != index {
                break;
            }
            index += 1;
        }
        self.reserved.insert(index);
        TapName::new(index)
    }
}

struct Inner {
    ops: Arc<dyn PrivilegedOps>,
    bridge: BridgeName,
    owner_uid: u32,
    target: usize,
    state: Mutex<State>,
    /// Serialises refills so concurrent `take`s do not overshoot.
    refill: tokio::sync::Mutex<()>,
}

/// A warm pool of TAP devices. Cheap to clone (shared state).
#[derive(Clone)]
pub struct TapPool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TapPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapPool")
            .field("bridge", &self.inner.bridge)
            .field("owner_uid", &self.inner.owner_uid)
            .field("target", &self.inner.target)
            .field("spares", &self.spares())
            .finish()
    }
}

impl TapPool {
    /// A pool of `size` spare TAPs owned by `owner_uid` on `bridge`. Creates
    /// nothing yet: call [`TapPool::reconcile`] then [`TapPool::fill`].
    pub fn new(
        ops: Arc<dyn PrivilegedOps>,
        bridge: BridgeName,
        owner_uid: u32,
        size: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                ops,
                bridge,
                owner_uid,
                target: size,
                state: Mutex::new(State::default()),
                refill: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a set and a queue updated in single statements; a
        // panic elsewhere cannot leave it half-updated, so poison is moot.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The spare TAPs, oldest first.
    pub fn spares(&self) -> Vec<TapName> {
        self.state().spare.iter().cloned().collect()
    }

    /// Records that a VM owns `name` (adopted on daemon start), so the pool
    /// never creates a TAP with that name.
    pub fn mark_claimed(&self, name: &TapName) {
        self.state().reserved.insert(name.index());
    }

    /// Deletes every banger TAP that is neither in `claimed` nor a spare of
    /// this pool, and marks the claimed ones as in use. Returns the deleted
    /// names. Devices without a banger name are never touched.
    ///
    /// TAPs this pool handed out (and that were not released) or is creating
    /// right now also survive, even when missing from `claimed`: a VM being
    /// created may hold one before the daemon records it. On daemon start the
    /// pool is new, so exactly the unclaimed TAPs are deleted.
    pub async fn reconcile(&self, claimed: &BTreeSet<TapName>) -> Result<Vec<TapName>, PoolError> {
        let existing = self
            .inner
            .ops
            .list_banger_taps()
            .await
            .map_err(|source| PoolError::List { source })?;
        let stale: Vec<TapName> = {
            let mut state = self.state();
            for name in claimed {
                state.reserved.insert(name.index());
            }
            existing
                .into_iter()
                .filter(|name| !claimed.contains(name) && !state.spare.contains(name))
                // A TAP being created right now is reserved but not yet a
                // spare; leave it to its creator.
                .filter(|name| !state.reserved.contains(&name.index()))
                .collect()
        };
        for name in &stale {
            self.delete(name).await?;
        }
        Ok(stale)
    }

    /// Creates TAPs until the pool holds its target number of spares.
    pub async fn fill(&self) -> Result<(), PoolError> {
        let _refilling = self.inner.refill.lock().await;
        while self.state().spare.len() < self.inner.target {
            let name = self.create_one().await?;
            self.state().spare.push_back(name);
        }
        Ok(())
    }

    /// Hands out a TAP: a spare when there is one, else a new one created
    /// now. Schedules a background refill either way.
    pub async fn take(&self) -> Result<TapName, PoolError> {
        let spare = self.state().spare.pop_front();
        let name = match spare {
            Some(name) => name,
            None => self.create_one().await?,
        };
        self.spawn_refill();
        Ok(name)
    }

    /// Deletes a TAP handed out by [`TapPool::take`] (or a claimed one) and
    /// frees its name.
    pub async fn release(&self, name: &TapName) -> Result<(), PoolError> {
        self.delete(name).await?;
        let mut state = self.state();
        state.spare.retain(|spare| spare != name);
        state.reserved.remove(&name.index());
        Ok(())
    }

    /// Deletes all spares (daemon shutdown, tests). TAPs handed out are left
    /// alone.
    pub async fn drain(&self) -> Result<(), PoolError> {
        let _refilling = self.inner.refill.lock().await;
        loop {
            let Some(name) = self.state().spare.pop_front() else {
                return Ok(());
            };
            self.delete(&name).await?;
            self.state().reserved.remove(&name.index());
        }
    }

    /// Refills in a background task; failures are logged (the next `take`
    /// creates on demand and reports its own error).
    fn spawn_refill(&self) {
        let pool = self.clone();
        tokio::spawn(async move {
            if let Err(error) = pool.fill().await {
                tracing::warn!(%error, "TAP pool refill failed");
            }
        });
    }

    async fn create_one(&self) -> Result<TapName, PoolError> {
        let mut last = None;
        for _ in 0..MAX_NAME_COLLISIONS {
            let name = self.state().reserve_lowest();
            match self
                .inner
                .ops
                .create_tap(&name, self.inner.owner_uid, &self.inner.bridge)
                .await
            {
                Ok(()) => return Ok(name),
                // Someone else's device (or a leak reconciliation has not
                // seen yet) holds this name: keep it reserved, try the next.
                Err(PrivilegedError::Tun(TunError::Exists { .. })) => {
                    tracing::warn!(tap = %name, "TAP name already taken; skipping it");
                    last = Some(name);
                }
                Err(source) => {
                    self.state().reserved.remove(&name.index());
                    return Err(PoolError::Tap {
                        op: "create",
                        tap: name.to_string(),
                        source,
                    });
                }
            }
        }
        Err(PoolError::NamesTaken {
            count: MAX_NAME_COLLISIONS,
            last: last.map(|name| name.to_string()).unwrap_or_default(),
        })
    }

    async fn delete(&self, name: &TapName) -> Result<(), PoolError> {
        self.inner
            .ops
            .delete_tap(name)
            .await
            .map_err(|source| PoolError::Tap {
                op: "delete",
                tap: name.to_string(),
                source,
            })
    }
}
