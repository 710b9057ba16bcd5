//! `PUT /actions`: start the guest, press Ctrl+Alt+Del, flush metrics (spec
//! definition `InstanceActionInfo`).

use serde::{Deserialize, Serialize};

/// The action (`action_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionType {
    /// Flush metrics to the metrics file now.
    FlushMetrics,
    /// Boot the configured guest.
    InstanceStart,
    /// Send Ctrl+Alt+Del (the guest's graceful shutdown on x86).
    SendCtrlAltDel,
}

/// Body of `PUT /actions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// What to do.
    pub action_type: ActionType,
}
