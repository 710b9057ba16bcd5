//! `PUT /network-interfaces/{iface_id}`: a virtio-net device backed by a host
//! TAP (spec definition `NetworkInterface`).

use serde::{Deserialize, Serialize};

/// Body of `PUT /network-interfaces/{iface_id}`; `iface_id` must equal the
/// path's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterfaceConfig {
    /// Interface id (also in the URL).
    pub iface_id: String,
    /// Host TAP device.
    pub host_dev_name: String,
    /// Guest MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_mac: Option<String>,
}
