//! `vm ports` and `vm stats [--watch]`: what the guest agent reports,
//! printed sanitised (guest text never reaches the terminal raw).

use std::process::ExitCode;
use std::time::Duration;

use banger_api::vms::VmStats;
use banger_config::Paths;

use super::human_bytes;
use crate::args::{VmNameJson, VmStatsArgs};
use crate::output;

/// Refresh interval of `vm stats --watch`.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

pub async fn ports(paths: &Paths, args: VmNameJson) -> anyhow::Result<ExitCode> {
    let name = args.name;
    let ports = super::super::connect(paths).await?.vm_ports(&name).await?;
    if args.json {
        output::json(&ports)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        [
            "PROTO",
            "ENDPOINT",
            "IP ENDPOINT",
            "BOUND TO",
            "GUEST PROCESS (reported)",
            "URL",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for port in &ports.ports {
        let endpoint = if port.reachable {
            port.endpoint.clone()
        } else {
            format!("{} (guest-only)", port.endpoint)
        };
        let process = port
            .guest_process
            .as_ref()
            .map(|process| format!("{} [{}] {}", process.command, process.pid, process.cmdline))
            .unwrap_or_else(|| "-".to_owned());
        rows.push(vec![
            port.protocol.clone(),
            endpoint,
            port.ip_endpoint.clone(),
            port.bind_address.clone(),
            process,
            port.url.clone().unwrap_or_default(),
        ]);
    }
    output::line(&output::sanitize(&output::table(&rows)))?;
    if ports.truncated {
        eprintln!("note: the guest has more sockets than it reported");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn stats(paths: &Paths, args: VmStatsArgs) -> anyhow::Result<ExitCode> {
    let name = args.name;
    let client = super::super::connect(paths).await?;
    loop {
        let stats = client.vm_stats(&name).await?;
        if args.json {
            output::json(&stats)?;
        } else {
            output::line(&output::sanitize(&output::table(&stats_rows(&stats))))?;
        }
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(WATCH_INTERVAL).await;
        if !args.json {
            output::line("")?;
        }
    }
}

fn stats_rows(stats: &VmStats) -> Vec<Vec<String>> {
    let host = &stats.host;
    let mut rows = vec![
        vec!["vm".into(), stats.vm.to_string()],
        vec![
            "vmm cpu".into(),
            host.vmm_cpu_percent
                .map_or_else(|| "-".into(), |cpu| format!("{cpu:.1}%")),
        ],
        vec![
            "vmm memory (rss)".into(),
            host.vmm_rss_bytes.map_or_else(|| "-".into(), human_bytes),
        ],
        vec![
            "overlay disk (allocated)".into(),
            human_bytes(host.overlay_allocated_bytes),
        ],
        vec![
            "work disk (allocated)".into(),
            human_bytes(host.work_allocated_bytes),
        ],
    ];
    match &stats.guest {
        Some(guest) => {
            let usage = |used: Option<u64>, total: Option<u64>| match (used, total) {
                (Some(used), Some(total)) => {
                    format!("{} of {}", human_bytes(used), human_bytes(total))
                }
                _ => "-".to_owned(),
            };
            rows.push(vec![
                "guest load".into(),
                format!(
                    "{:.2} {:.2} {:.2}",
                    guest.load[0], guest.load[1], guest.load[2]
                ),
            ]);
            rows.push(vec![
                "guest memory".into(),
                format!(
                    "{} used of {}",
                    human_bytes(
                        guest
                            .mem_total_bytes
                            .saturating_sub(guest.mem_available_bytes)
                    ),
                    human_bytes(guest.mem_total_bytes)
                ),
            ]);
            rows.push(vec![
                "guest /".into(),
                usage(guest.root_used_bytes, guest.root_total_bytes),
            ]);
            rows.push(vec![
                "guest /root".into(),
                usage(guest.work_used_bytes, guest.work_total_bytes),
            ]);
            rows.push(vec![
                "guest uptime".into(),
                format!("{} s", guest.uptime_secs),
            ]);
        }
        None => rows.push(vec![
            "guest".into(),
            format!(
                "no answer from the agent: {}",
                stats.guest_error.clone().unwrap_or_default()
            ),
        ]),
    }
    rows
}
