//! Types of the `/v1/vms` resource.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ImageName, VmName};

/// Where a VM is in its lifecycle. Persisted before every step, so a
/// restarted daemon knows what was going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// Disks prepared, never started.
    Created,
    /// The VMM is being started or the guest is booting.
    Starting,
    /// The VMM runs.
    Running,
    /// A stop is in progress.
    Stopping,
    /// Not running; disks kept.
    Stopped,
    /// A step failed; `last_error` says which. Can be started or deleted.
    Error,
    /// Parked: guest memory and device state are in a file in the VM's
    /// directory and no VMM runs; `vm resume` (or `vm start`) brings it back
    /// where it was, `vm stop` discards the memory.
    Paused,
}

impl VmState {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Error => "error",
            Self::Paused => "paused",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "created" => Self::Created,
            "starting" => Self::Starting,
            "running" => Self::Running,
            "stopping" => Self::Stopping,
            "stopped" => Self::Stopped,
            "error" => Self::Error,
            "paused" => Self::Paused,
            _ => return None,
        })
    }

    /// Every state, for tables and exhaustive tests.
    pub const ALL: [Self; 7] = [
        Self::Created,
        Self::Starting,
        Self::Running,
        Self::Stopping,
        Self::Stopped,
        Self::Error,
        Self::Paused,
    ];

    /// Whether a VM may go from `from` to `to`: the VM state machine, in
    /// one table. The daemon checks it in the one function that persists a
    /// state, so no code path can record an impossible history. Staying in
    /// a state is not a transition.
    ///
    /// Besides the normal path (created → starting → running → stopping →
    /// stopped → starting …), the table allows what the daemon must record
    /// when things go wrong: any step may fail into `error`; a VMM that
    /// exits on its own takes a starting or running VM straight to
    /// `stopped`; and a restarted daemon may find a VM that was starting,
    /// stopping or in error still running (adopted) or gone (stopped).
    ///
    /// Pausing: a running VM whose memory was saved and whose VMM exited is
    /// `paused`; a resume goes through `starting` like a boot (and may fail
    /// into `error`, keeping the memory file), and a stop of a paused VM
    /// discards the memory (`stopped`).
    pub fn valid_transition(from: Self, to: Self) -> bool {
        use VmState::{Created, Error, Paused, Running, Starting, Stopped, Stopping};
        matches!(
            (from, to),
            (Created | Stopped | Error | Paused, Starting)
                | (Starting, Running | Stopping | Stopped | Error)
                | (Running, Stopping | Stopped | Error | Paused)
                // A snapshot restore or a fork puts saved memory in place
                // of a VM at rest, which then resumes from it.
                | (Created | Stopped | Error, Paused)
                | (Stopping, Stopped | Running | Error)
                | (Error, Running | Stopped)
                | (Paused, Stopped)
        )
    }

    /// Whether `vm resume` (and `vm start`, which resumes) may run from this
    /// state: the VM's memory is saved and no VMM runs.
    pub fn can_resume(self) -> bool {
        matches!(self, Self::Paused)
    }

    /// Whether `vm pause` may run from this state.
    pub fn can_pause(self) -> bool {
        matches!(self, Self::Running)
    }

    /// Whether `vm start` may run from this state.
    pub fn can_start(self) -> bool {
        matches!(self, Self::Created | Self::Stopped | Self::Error)
    }

    /// Whether `vm stop` / `vm kill` have something to act on.
    pub fn can_stop(self) -> bool {
        matches!(self, Self::Starting | Self::Running | Self::Stopping)
    }

    /// Whether the VM may be changed (`vm set`) or deleted without `--force`.
    pub fn is_at_rest(self) -> bool {
        matches!(self, Self::Created | Self::Stopped | Self::Error)
    }
}

impl std::fmt::Display for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The VMM a VM runs (or last ran) under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VmBackend {
    /// QEMU (microvm machine).
    Qemu,
    /// Firecracker.
    Firecracker,
}

impl VmBackend {
    /// The lowercase name, as on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qemu => "qemu",
            Self::Firecracker => "firecracker",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "qemu" => Some(Self::Qemu),
            "firecracker" => Some(Self::Firecracker),
            _ => None,
        }
    }
}

impl std::fmt::Display for VmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to reach a VM over SSH with strict host key checking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SshInfo {
    /// Login user.
    pub user: String,
    /// Guest address.
    #[schema(value_type = String, format = Ipv4)]
    pub ip: Ipv4Addr,
    /// Name the host key is recorded under (`<name>.vm`).
    pub host_alias: String,
    /// The user's private key.
    pub identity: String,
    /// banger's known_hosts file holding the VM's host key.
    pub known_hosts: String,
}

/// One of a VM's own disks and what it really takes on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmDiskUsage {
    /// Which disk: `overlay` (the upper layer of `/`) or `work` (`/root`).
    pub name: String,
    /// The disk's file on the host.
    pub path: String,
    /// Apparent size in bytes: the disk as the guest sees it.
    pub size_bytes: u64,
    /// Bytes the host has allocated for it (`st_blocks * 512`): sparse and
    /// trimmed space counts nothing.
    pub allocated_bytes: u64,
}

/// A VM as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmInfo {
    /// Name; also its hostname and `<name>.vm`.
    pub name: VmName,
    /// Lifecycle state.
    pub state: VmState,
    /// Image it was created from (`null` if that image was force-deleted).
    pub image: Option<ImageName>,
    /// Virtual CPUs.
    pub vcpus: u8,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Size of the work disk (`/root`) in bytes.
    pub disk_bytes: u64,
    /// Guest IPv4 address.
    #[schema(value_type = String, format = Ipv4)]
    pub ip: Ipv4Addr,
    /// Guest MAC address.
    pub mac: String,
    /// vsock context id.
    pub vsock_cid: u32,
    /// Host TAP device while running.
    pub tap: Option<String>,
    /// Backend of the current or last run.
    pub backend: Option<VmBackend>,
    /// VMM process id while running.
    pub pid: Option<u32>,
    /// Directory holding the VM's disks and keys.
    pub dir: String,
    /// Serial console log.
    pub console_log: String,
    /// Why the last step failed, if it did.
    pub last_error: Option<String>,
    /// Whether the VM reaches the outside world through NAT.
    pub nat: bool,
    /// Bytes of saved guest memory and device state while the VM is paused
    /// (in `<dir>/memory/`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_memory_bytes: Option<u64>,
    /// The VM's own disks (overlay, then work disk) and what each really
    /// takes on the host; a disk whose file is missing is left out.
    #[serde(default)]
    pub disks: Vec<VmDiskUsage>,
    /// SSH details.
    pub ssh: SshInfo,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// Body of `POST /v1/vms`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmCreateRequest {
    /// Name; generated (adjective-noun) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<VmName>,
    /// Image; `default_image_name` when absent (built on first use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageName>,
    /// Virtual CPUs (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u8>,
    /// Memory in MiB (default 2048, minimum 256, at most the host's memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    /// Work disk size in bytes (default 8 GiB; at least the work seed's
    /// size, at most the daemon's `max_disk_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
    /// Create only; do not start.
    #[serde(default)]
    pub no_start: bool,
    /// Let the VM reach the outside world through NAT (default: bridge only).
    #[serde(default)]
    pub nat: bool,
}

/// Body of `POST /v1/orphans/adopt`: re-register an orphaned VM directory
/// (`<state dir>/vms/<name>` that no VM row owns) with its disks as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmAdoptRequest {
    /// The directory: exactly `<state dir>/vms/<name>` for a valid VM name;
    /// the VM gets that name.
    pub dir: String,
    /// Image to boot it with; `default_image_name` when absent (never built).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageName>,
    /// Virtual CPUs (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u8>,
    /// Memory in MiB (default 2048, minimum 256, at most the host's memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    /// Let the VM reach the outside world through NAT (default: bridge only).
    #[serde(default)]
    pub nat: bool,
}

/// A directory under `<state dir>/vms/` that no VM row owns, as
/// `GET /v1/orphans` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmOrphan {
    /// The directory's name (a VM name when it can be adopted).
    pub name: String,
    /// The directory.
    pub dir: String,
    /// Total apparent size of the regular files directly in it, in bytes.
    pub bytes: u64,
    /// Whether `banger vm adopt` can take it: its name is a valid VM name.
    pub adoptable: bool,
}

/// Body of `PATCH /v1/vms/{name}`: changes for a stopped VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmSetRequest {
    /// New vCPU count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u8>,
    /// New memory size in MiB (256 to the host's memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    /// New work disk size in bytes (only grows; at most the daemon's
    /// `max_disk_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
    /// Turn NAT on or off (allowed while the VM runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<bool>,
}

/// A signal `vm kill` may send to a VM's VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum VmSignal {
    /// SIGKILL: ends the VMM at once.
    Kill,
    /// SIGTERM.
    Term,
    /// SIGINT.
    Int,
    /// SIGHUP.
    Hup,
    /// SIGQUIT.
    Quit,
    /// SIGUSR1.
    Usr1,
    /// SIGUSR2.
    Usr2,
}

impl VmSignal {
    /// Every signal, in the order help texts list them.
    pub const ALL: [Self; 7] = [
        Self::Kill,
        Self::Term,
        Self::Int,
        Self::Hup,
        Self::Quit,
        Self::Usr1,
        Self::Usr2,
    ];

    /// The name without `SIG` (`KILL`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kill => "KILL",
            Self::Term => "TERM",
            Self::Int => "INT",
            Self::Hup => "HUP",
            Self::Quit => "QUIT",
            Self::Usr1 => "USR1",
            Self::Usr2 => "USR2",
        }
    }

    /// The Linux signal number.
    pub fn number(self) -> i32 {
        match self {
            Self::Kill => 9,
            Self::Term => 15,
            Self::Int => 2,
            Self::Hup => 1,
            Self::Quit => 3,
            Self::Usr1 => 10,
            Self::Usr2 => 12,
        }
    }

    /// Whether the signal normally ends the VMM.
    pub fn ends_process(self) -> bool {
        matches!(self, Self::Kill | Self::Term | Self::Int | Self::Quit)
    }
}

impl std::fmt::Display for VmSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SIG{}", self.as_str())
    }
}

/// A signal name that is not one of [`VmSignal`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal {0:?}; use KILL, TERM, INT, HUP, QUIT, USR1 or USR2 (or their numbers)")]
pub struct UnknownSignal(pub String);

impl std::str::FromStr for VmSignal {
    type Err = UnknownSignal;

    /// Accepts `KILL`, `SIGKILL`, `kill` and `9` alike.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let upper = text.trim().to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        Self::ALL
            .into_iter()
            .find(|signal| signal.as_str() == name || signal.number().to_string() == name)
            .ok_or_else(|| UnknownSignal(text.to_owned()))
    }
}

/// Body of `POST /v1/vms/{name}/kill`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmKillRequest {
    /// The signal; default `KILL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<VmSignal>,
}

/// Reply of `DELETE /v1/vms/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmDeleted {
    /// Name of the deleted VM.
    pub name: VmName,
    /// Files and directories removed.
    pub removed: Vec<String>,
}

/// One listening socket in a guest, as `GET /v1/vms/{name}/ports` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmPort {
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Guest port.
    pub port: u16,
    /// Guest address it is bound to.
    pub bind_address: String,
    /// How the host reaches it by name: `<name>.vm:PORT`.
    pub endpoint: String,
    /// How the host reaches it by address: `IP:PORT`.
    pub ip_endpoint: String,
    /// Whether the host can reach it (not bound to the guest's loopback).
    pub reachable: bool,
    /// `http://<name>.vm:PORT/` (or https) when a probe got a web answer.
    pub url: Option<String>,
    /// Owning process **as reported by the guest** (not verified by the host).
    pub guest_process: Option<GuestProcess>,
}

/// A guest process as the guest agent reports it; sanitised, never trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuestProcess {
    /// Pid inside the guest.
    pub pid: u32,
    /// Process name.
    pub command: String,
    /// Command line.
    pub cmdline: String,
}

/// Reply of `GET /v1/vms/{name}/ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmPorts {
    /// The VM.
    pub vm: VmName,
    /// Its address.
    #[schema(value_type = String, format = Ipv4)]
    pub ip: Ipv4Addr,
    /// Listening sockets, by protocol and port.
    pub ports: Vec<VmPort>,
    /// The guest had more sockets than it reported.
    pub truncated: bool,
}

/// One stats sample of a VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmStats {
    /// The VM.
    pub vm: VmName,
    /// Unix seconds when the sample was taken.
    pub sampled_at: i64,
    /// Measured on the host.
    pub host: HostSideStats,
    /// Reported by the guest agent; absent when it did not answer.
    pub guest: Option<GuestSideStats>,
    /// Why the guest side is missing.
    pub guest_error: Option<String>,
}

/// Host-side numbers of a VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSideStats {
    /// CPU use of the VMM process, percent of one core.
    pub vmm_cpu_percent: Option<f64>,
    /// Resident memory of the VMM process.
    pub vmm_rss_bytes: Option<u64>,
    /// Bytes allocated on the host for the overlay disk.
    pub overlay_allocated_bytes: u64,
    /// Bytes allocated on the host for the work disk.
    pub work_allocated_bytes: u64,
}

/// Guest-side numbers, as reported by the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuestSideStats {
    /// Load averages over 1, 5 and 15 minutes.
    pub load: [f64; 3],
    /// Total memory.
    pub mem_total_bytes: u64,
    /// Available memory.
    pub mem_available_bytes: u64,
    /// Used bytes of `/`.
    pub root_used_bytes: Option<u64>,
    /// Size of `/`.
    pub root_total_bytes: Option<u64>,
    /// Used bytes of `/root` (the work disk).
    pub work_used_bytes: Option<u64>,
    /// Size of `/root`.
    pub work_total_bytes: Option<u64>,
    /// Seconds since the guest booted.
    pub uptime_secs: u64,
}

/// Reply of `GET /v1/vms/{name}/agent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentStatus {
    /// The VM.
    pub vm: VmName,
    /// Whether the agent answered a health request in time.
    pub answers: bool,
    /// Agent version and protocol, or why it did not answer.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_table_covers_every_pair() {
        use VmState::{Created, Error, Paused, Running, Starting, Stopped, Stopping};
        // Rows: from; columns: to, in the order of `VmState::ALL`
        // (created, starting, running, stopping, stopped, error, paused).
        let table: [(VmState, [bool; 7]); 7] = [
            (Created, [false, true, false, false, false, false, true]),
            (Starting, [false, false, true, true, true, true, false]),
            (Running, [false, false, false, true, true, true, true]),
            (Stopping, [false, false, true, false, true, true, false]),
            (Stopped, [false, true, false, false, false, false, true]),
            (Error, [false, true, true, false, true, false, true]),
            (Paused, [false, true, false, false, true, false, false]),
        ];
        for (from, row) in table {
            for (to, expected) in VmState::ALL.into_iter().zip(row) {
                assert_eq!(
                    VmState::valid_transition(from, to),
                    expected,
                    "{from} -> {to}"
                );
            }
        }
        // Nothing goes back to `created`, and staying is not a transition.
        for state in VmState::ALL {
            assert!(
                !VmState::valid_transition(state, Created),
                "{state} -> created"
            );
            assert!(
                !VmState::valid_transition(state, state),
                "{state} -> {state}"
            );
        }
        // Every state `vm start` accepts can actually start.
        for state in VmState::ALL.into_iter().filter(|state| state.can_start()) {
            assert!(VmState::valid_transition(state, Starting), "{state}");
        }
        // A running VM is paused; one at rest becomes paused when a
        // restore or fork gives it saved memory; a paused one resumes
        // (through starting) or is stopped.
        for state in VmState::ALL {
            assert_eq!(
                VmState::valid_transition(state, Paused),
                state.can_pause() || state.is_at_rest(),
                "{state}"
            );
        }
        for state in VmState::ALL.into_iter().filter(|state| state.can_resume()) {
            assert!(VmState::valid_transition(state, Starting), "{state}");
            assert!(VmState::valid_transition(state, Stopped), "{state}");
        }
        // Every state `vm stop` acts on can reach stopped, directly or via stopping.
        for state in VmState::ALL.into_iter().filter(|state| state.can_stop()) {
            assert!(
                VmState::valid_transition(state, Stopped)
                    && (state == Stopping || VmState::valid_transition(state, Stopping)),
                "{state}"
            );
        }
    }

    #[test]
    fn backends_round_trip_as_lowercase_strings() {
        for backend in [VmBackend::Qemu, VmBackend::Firecracker] {
            let json = serde_json::to_string(&backend).expect("serialise");
            assert_eq!(json, format!("\"{}\"", backend.as_str()));
            assert_eq!(VmBackend::parse(backend.as_str()), Some(backend));
        }
        assert_eq!(VmBackend::parse("kvm"), None);
    }

    #[test]
    fn typed_fields_keep_the_json_shape() {
        let ports = VmPorts {
            vm: VmName::parse("dev").expect("name"),
            ip: Ipv4Addr::new(172, 16, 0, 2),
            ports: Vec::new(),
            truncated: false,
        };
        let json = serde_json::to_value(&ports).expect("serialise");
        assert_eq!(
            json,
            serde_json::json!({"vm": "dev", "ip": "172.16.0.2", "ports": [], "truncated": false})
        );
        assert_eq!(
            serde_json::from_value::<VmPorts>(json).expect("deserialise"),
            ports
        );
        let bad =
            serde_json::json!({"vm": "dev", "ip": "not-an-ip", "ports": [], "truncated": false});
        assert!(serde_json::from_value::<VmPorts>(bad).is_err());
        let bad = serde_json::json!({"name": "Bad Name"});
        assert!(serde_json::from_value::<VmCreateRequest>(bad).is_err());
    }

    #[test]
    fn signal_names_numbers_and_refusals() {
        assert_eq!("kill".parse::<VmSignal>(), Ok(VmSignal::Kill));
        assert_eq!("SIGTERM".parse::<VmSignal>(), Ok(VmSignal::Term));
        assert_eq!("9".parse::<VmSignal>(), Ok(VmSignal::Kill));
        assert_eq!(" usr2 ".parse::<VmSignal>(), Ok(VmSignal::Usr2));
        assert!("STOP".parse::<VmSignal>().is_err());
        assert!("".parse::<VmSignal>().is_err());
        for signal in VmSignal::ALL {
            assert_eq!(signal.as_str().parse::<VmSignal>(), Ok(signal));
            let json = serde_json::to_string(&signal).expect("serialise");
            assert_eq!(json, format!("\"{}\"", signal.as_str()));
        }
        assert!(serde_json::from_str::<VmSignal>("\"STOP\"").is_err());
    }
}
