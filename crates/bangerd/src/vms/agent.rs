//! What the guest agent tells us (listening ports, guest stats, health),
//! combined with what the host measures itself (VMM CPU and memory, disk
//! allocation), plus the poller that keeps recent samples and parks (or
//! stops, per `idle_action`) idle VMs when `auto_stop_stale_after` is set,
//! and [`wake`], which resumes a paused VM that is used (`auto_resume`).
//!
//! Everything from the guest is untrusted: `banger-agent-client` bounds,
//! validates and sanitises it, and processes are labelled as guest-reported.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use banger_agent_client::proto::Transport;
use banger_api::VmName;
use banger_api::vms::{
    AgentStatus, GuestProcess, GuestSideStats, HostSideStats, VmPort, VmPorts, VmState, VmStats,
};

use super::{VmError, row};
use crate::state::AppState;

/// Deadline of one agent call.
const AGENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of one web probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
/// Interval between the two CPU samples of a stats call.
const CPU_WINDOW: Duration = Duration::from_millis(250);
/// Below this VMM CPU use (percent of one core), a VM counts as idle.
const IDLE_CPU_PERCENT: f64 = 5.0;
/// Below this 1-minute guest load, a VM counts as idle.
const IDLE_LOAD: f64 = 0.2;

fn agent_error(name: &VmName, error: banger_agent_client::AgentError) -> VmError {
    VmError::step(name, "get an answer from its guest agent", error)
}

/// The vsock socket of a running VM.
pub(crate) fn running_uds(
    state: &AppState,
    name: &VmName,
) -> Result<(crate::store::VmRow, std::path::PathBuf, u32), VmError> {
    let vm = row(&state.store(), name)?;
    let running = super::recorded_vmm(&vm)?
        .filter(|_| vm.state == VmState::Running)
        .ok_or_else(|| VmError::WrongState {
            name: name.clone(),
            state: vm.state,
            hint: "start or resume it first (`banger vm start`, which resumes a paused VM)",
        })?;
    let (uds, pid) = (running.vsock_uds.clone(), running.vmm.pid);
    Ok((vm, uds, pid))
}

/// Resumes VM `name` when it is paused and `auto_resume` is on (the
/// default), so using a parked VM brings it back; otherwise changes nothing
/// (the caller's running check then names `vm resume`).
pub async fn wake(state: &AppState, name: &VmName) -> Result<(), VmError> {
    let paused = row(&state.store(), name)?.state == VmState::Paused;
    if paused && state.config().auto_resume {
        tracing::info!(vm = %name, "resuming a paused VM for a request (auto_resume)");
        super::resume(state, name, &crate::progress::ProgressSink::discard()).await?;
    }
    Ok(())
}

/// Whether the agent of a running VM answers.
pub async fn agent_status(state: &AppState, name: &VmName) -> Result<AgentStatus, VmError> {
    let (_, uds, _) = running_uds(state, name)?;
    Ok(
        match banger_agent_client::health(&uds, AGENT_TIMEOUT).await {
            Ok(health) => AgentStatus {
                vm: name.clone(),
                answers: true,
                detail: format!(
                    "agent {} (protocol {})",
                    health.agent_version, health.protocol_version
                ),
            },
            Err(error) => AgentStatus {
                vm: name.clone(),
                answers: false,
                detail: crate::error::error_chain(&error),
            },
        },
    )
}

/// The guest's listening sockets as host-usable endpoints, with web probes.
pub async fn ports(state: &AppState, name: &VmName) -> Result<VmPorts, VmError> {
    wake(state, name).await?;
    let (vm, uds, _) = running_uds(state, name)?;
    let guest = banger_agent_client::listening_ports(&uds, AGENT_TIMEOUT)
        .await
        .map_err(|error| agent_error(name, error))?;
    let mut probes = tokio::task::JoinSet::new();
    for (index, listener) in guest.listeners.iter().enumerate() {
        if listener.transport == Transport::Tcp && listener.reachable_from_host() {
            let (ip, port) = (IpAddr::V4(vm.ip), listener.port);
            probes.spawn(async move {
                (
                    index,
                    banger_agent_client::probe::probe_web(ip, port, PROBE_TIMEOUT).await,
                )
            });
        }
    }
    let mut web = HashMap::new();
    while let Some(Ok((index, kind))) = probes.join_next().await {
        if let Some(kind) = kind {
            web.insert(index, kind);
        }
    }
    let ports = guest
        .listeners
        .iter()
        .enumerate()
        .map(|(index, listener)| VmPort {
            protocol: match listener.transport {
                Transport::Tcp => "tcp".to_owned(),
                Transport::Udp => "udp".to_owned(),
            },
            port: listener.port,
            bind_address: listener.address.to_string(),
            endpoint: banger_agent_client::host_endpoint(name.as_str(), listener.port),
            ip_endpoint: format!("{}:{}", vm.ip, listener.port),
            reachable: listener.reachable_from_host(),
            url: web
                .get(&index)
                .map(|kind| kind.url(name.as_str(), listener.port)),
            guest_process: listener
                .reported_process
                .as_ref()
                .map(|process| GuestProcess {
                    pid: process.pid,
                    command: process.comm.clone(),
                    cmdline: process.cmdline.clone(),
                }),
        })
        .collect();
    Ok(VmPorts {
        vm: name.clone(),
        ip: vm.ip,
        ports,
        truncated: guest.truncated,
    })
}

/// A fresh stats sample of a running VM (also recorded in its history).
pub async fn stats(state: &AppState, name: &VmName) -> Result<VmStats, VmError> {
    let (vm, uds, pid) = running_uds(state, name)?;
    let sample = sample(name, &vm.dir, &uds, pid).await;
    state.record_stats(name, sample.clone());
    Ok(sample)
}

async fn sample(name: &VmName, dir: &std::path::Path, uds: &std::path::Path, pid: u32) -> VmStats {
    use banger_agent_client::host_stats::{allocated_bytes, cpu_percent, sample_process};
    let first = sample_process(pid).ok();
    let guest = banger_agent_client::guest_stats(uds, AGENT_TIMEOUT);
    let (guest, _) = tokio::join!(guest, tokio::time::sleep(CPU_WINDOW));
    let second = sample_process(pid).ok();
    let host = HostSideStats {
        vmm_cpu_percent: first
            .as_ref()
            .zip(second.as_ref())
            .map(|(a, b)| cpu_percent(a, b)),
        vmm_rss_bytes: second.as_ref().map(|sample| sample.rss_bytes),
        overlay_allocated_bytes: allocated_bytes(&dir.join("overlay.ext4")).unwrap_or(0),
        work_allocated_bytes: allocated_bytes(&dir.join("work.ext4")).unwrap_or(0),
    };
    let (guest, guest_error) = match guest {
        Ok(stats) => {
            let used = |fs: Option<banger_agent_client::proto::FsUsage>| {
                fs.map(|fs| fs.total_bytes.saturating_sub(fs.free_bytes))
            };
            (
                Some(GuestSideStats {
                    load: stats.load_avg_x100.map(|load| f64::from(load) / 100.0),
                    mem_total_bytes: stats.mem_total_bytes,
                    mem_available_bytes: stats.mem_available_bytes,
                    root_used_bytes: used(stats.fs_root),
                    root_total_bytes: stats.fs_root.map(|fs| fs.total_bytes),
                    work_used_bytes: used(stats.fs_root_home),
                    work_total_bytes: stats.fs_root_home.map(|fs| fs.total_bytes),
                    uptime_secs: stats.uptime_secs,
                }),
                None,
            )
        }
        Err(error) => (None, Some(crate::error::error_chain(&error))),
    };
    VmStats {
        vm: name.clone(),
        sampled_at: crate::store::unix_now(),
        host,
        guest,
        guest_error,
    }
}

/// Whether the host has an established TCP connection to `ip:22` (an SSH
/// session from this host). Read from the daemon's own namespace, so it is
/// host truth, not a guest claim.
fn has_ssh_session(ip: Ipv4Addr) -> bool {
    let Ok(table) = fs_err::read_to_string("/proc/net/tcp") else {
        return false;
    };
    // /proc/net/tcp stores IPv4 addresses as little-endian hex.
    let remote = format!("{:08X}:0016", u32::from_le_bytes(ip.octets()));
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"01")
    })
}

/// What one sample says about a VM's activity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Activity {
    /// The host has an SSH connection to the VM.
    pub ssh_session: bool,
    /// VMM CPU use, if measured.
    pub vmm_cpu_percent: Option<f64>,
    /// Guest 1-minute load, if the agent answered.
    pub guest_load: Option<f64>,
}

impl Activity {
    /// Idle only when every signal says so; a missing measurement counts
    /// as activity, so a VM is never stopped on missing data.
    pub fn is_idle(&self) -> bool {
        !self.ssh_session
            && self
                .vmm_cpu_percent
                .is_some_and(|cpu| cpu < IDLE_CPU_PERCENT)
            && self.guest_load.is_some_and(|load| load < IDLE_LOAD)
    }
}

/// When each VM became idle; decides when one has been idle long enough.
#[derive(Debug, Default)]
pub struct IdleTracker {
    since: HashMap<VmName, Instant>,
}

impl IdleTracker {
    /// Records a sample taken at `now`; returns how long the VM has been
    /// idle when that reaches `limit` (then the clock restarts).
    pub fn observe(
        &mut self,
        name: &VmName,
        activity: &Activity,
        now: Instant,
        limit: Duration,
    ) -> Option<Duration> {
        if !activity.is_idle() {
            self.since.remove(name);
            return None;
        }
        let since = *self.since.entry(name.clone()).or_insert(now);
        let idle_for = now.saturating_duration_since(since);
        if idle_for >= limit {
            self.since.remove(name);
            Some(idle_for)
        } else {
            None
        }
    }

    /// Forgets VMs for which `keep` is false (no longer running).
    pub fn retain(&mut self, mut keep: impl FnMut(&VmName) -> bool) {
        self.since.retain(|name, _| keep(name));
    }
}

/// Samples every running VM each `stats_poll_interval`; with
/// `auto_stop_stale_after`, stops VMs idle that long (no SSH session from
/// the host, VMM CPU and guest load low), logging the decision and reason.
pub async fn poll_loop(state: AppState) {
    let config = state.config().clone();
    let mut interval = tokio::time::interval(config.stats_poll_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle = IdleTracker::default();
    loop {
        interval.tick().await;
        let Ok(vms) = state.store().vms() else {
            continue;
        };
        let running: Vec<_> = vms
            .into_iter()
            .filter(|vm| vm.state == VmState::Running)
            .collect();
        idle.retain(|name| running.iter().any(|vm| &vm.name == name));
        for vm in running {
            let Some(handle) = vm.vmm.recorded() else {
                continue;
            };
            let stats = sample(&vm.name, &vm.dir, &handle.vsock_uds, handle.vmm.pid).await;
            state.record_stats(&vm.name, stats.clone());
            let Some(limit) = config.auto_stop_stale_after else {
                continue;
            };
            let activity = Activity {
                ssh_session: has_ssh_session(vm.ip),
                vmm_cpu_percent: stats.host.vmm_cpu_percent,
                guest_load: stats.guest.as_ref().map(|guest| guest.load[0]),
            };
            if let Some(idle_for) = idle.observe(&vm.name, &activity, Instant::now(), limit) {
                tracing::info!(
                    vm = %vm.name, idle_secs = idle_for.as_secs(), vmm_cpu_percent = ?activity.vmm_cpu_percent,
                    guest_load = ?activity.guest_load,
                    action = config.idle_action.as_str(),
                    "idle VM: no SSH session, low CPU and load for auto_stop_stale_after"
                );
                park_or_stop(&state, &vm.name, config.idle_action).await;
            }
        }
    }
}

/// Applies `idle_action` to an idle VM: a pause that fails (no space for
/// its memory, say) falls back to a stop, as an idle VM must give its
/// resources back either way.
async fn park_or_stop(state: &AppState, name: &VmName, action: banger_config::IdleAction) {
    if action == banger_config::IdleAction::Pause {
        match super::pause(state, name).await {
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(vm = %name, error = %crate::error::error_chain(&error), "cannot park the idle VM; stopping it instead");
            }
        }
    }
    if let Err(error) = super::stop(state, name).await {
        tracing::warn!(vm = %name, error = %crate::error::error_chain(&error), "auto-stop failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(ssh_session: bool, cpu: Option<f64>, load: Option<f64>) -> Activity {
        Activity {
            ssh_session,
            vmm_cpu_percent: cpu,
            guest_load: load,
        }
    }

    #[test]
    fn idle_needs_every_signal_and_all_measurements() {
        assert!(activity(false, Some(1.0), Some(0.05)).is_idle());
        assert!(
            !activity(true, Some(1.0), Some(0.05)).is_idle(),
            "an SSH session is work"
        );
        assert!(
            !activity(false, Some(40.0), Some(0.05)).is_idle(),
            "busy VMM"
        );
        assert!(
            !activity(false, Some(1.0), Some(1.5)).is_idle(),
            "busy guest"
        );
        assert!(
            !activity(false, None, Some(0.05)).is_idle(),
            "unmeasured CPU is not idleness"
        );
        assert!(!activity(false, Some(1.0), None).is_idle());
    }

    #[test]
    fn tracker_stops_only_after_continuous_idleness() {
        let name = VmName::parse("dev").unwrap();
        let limit = Duration::from_secs(60);
        let start = Instant::now();
        let idle = activity(false, Some(0.5), Some(0.0));
        let busy = activity(true, Some(0.5), Some(0.0));
        let mut tracker = IdleTracker::default();
        assert_eq!(tracker.observe(&name, &idle, start, limit), None);
        assert_eq!(
            tracker.observe(&name, &idle, start + Duration::from_secs(30), limit),
            None
        );
        // Work in between restarts the clock.
        assert_eq!(
            tracker.observe(&name, &busy, start + Duration::from_secs(40), limit),
            None
        );
        assert_eq!(
            tracker.observe(&name, &idle, start + Duration::from_secs(50), limit),
            None
        );
        assert_eq!(
            tracker.observe(&name, &idle, start + Duration::from_secs(100), limit),
            None
        );
        assert_eq!(
            tracker.observe(&name, &idle, start + Duration::from_secs(110), limit),
            Some(Duration::from_secs(60))
        );
        tracker.retain(|_| false);
        assert_eq!(
            tracker.observe(&name, &idle, start + Duration::from_secs(200), limit),
            None
        );
    }

    #[test]
    fn ssh_session_address_format_matches_proc_net_tcp() {
        // 172.29.0.2:22 as the kernel prints it.
        let remote = format!(
            "{:08X}:0016",
            u32::from_le_bytes(Ipv4Addr::new(172, 29, 0, 2).octets())
        );
        assert_eq!(remote, "02001DAC:0016");
    }
}
