//! `banger doctor`: the host checklist. Exits non-zero when a check fails.

use std::process::ExitCode;

use banger_config::{LoadedConfig, Paths};
use banger_host::doctor::{self, Status};

use crate::args::DoctorArgs;
use crate::output;

pub async fn run(args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env()?;
    let (config, config_problem) = match LoadedConfig::load(&paths) {
        Ok(loaded) => (loaded.config, None),
        Err(error) => {
            // Check the rest with defaults; the config line fails.
            let defaults = LoadedConfig::from_parts(&paths, None, &|_| None)?;
            (
                defaults.config,
                Some(doctor::config_failure(
                    format!("{:#}", anyhow::Error::from(error)),
                    &paths.config_file(),
                )),
            )
        }
    };
    let mut checks: Vec<doctor::Check> = config_problem.into_iter().collect();
    checks.extend(doctor::run(&paths, &config));
    checks.push(resolver_check(&config));
    checks.extend(agent_checks(&paths).await);
    checks.extend(orphan_check(&paths).await);
    if args.json {
        output::json(&serde_json::json!({ "ok": !doctor::any_failed(&checks), "checks": checks }))?;
    } else {
        let mut lines = Vec::new();
        for check in &checks {
            let label = match check.status {
                Status::Pass => "pass",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            lines.push(format!("{label}  {:<20} {}", check.name, check.detail));
            if let Some(fix) = &check.fix {
                lines.push(format!("      {:<20} fix: {fix}", ""));
            }
        }
        output::line(&output::sanitize(&lines.join("\n")))?;
    }
    Ok(if doctor::any_failed(&checks) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One line per running VM saying whether its guest agent answers. Asks a
/// running daemon only; doctor never starts one.
async fn agent_checks(paths: &Paths) -> Vec<doctor::Check> {
    let client = banger_client::DaemonClient::new(paths.socket());
    let Ok(vms) = client.vms().await else {
        return Vec::new();
    };
    let mut checks = Vec::new();
    for vm in vms
        .iter()
        .filter(|vm| vm.state == banger_api::vms::VmState::Running)
    {
        let check = match client.vm_agent(&vm.name).await {
            Ok(status) if status.answers => doctor::Check {
                name: "guest-agent",
                status: Status::Pass,
                detail: format!("VM {}: {}", vm.name, status.detail),
                fix: None,
            },
            Ok(status) => doctor::Check {
                name: "guest-agent",
                status: Status::Warn,
                detail: format!(
                    "VM {}: the agent does not answer: {}",
                    vm.name, status.detail
                ),
                fix: Some(format!(
                    "check `banger vm logs {}` for banger-init agent lines; restart the VM (`banger vm restart {}`)",
                    vm.name, vm.name
                )),
            },
            Err(error) => doctor::Check {
                name: "guest-agent",
                status: Status::Warn,
                detail: format!(
                    "VM {}: cannot ask the daemon: {:#}",
                    vm.name,
                    anyhow::Error::from(error)
                ),
                fix: Some("check `banger daemon status` and the daemon log".to_owned()),
            },
        };
        checks.push(check);
    }
    checks
}

/// Directories under `<state dir>/vms/` that no VM owns, as a running
/// daemon lists them (doctor never starts one; without it there is no line,
/// since only the daemon's database says which directories are owned).
async fn orphan_check(paths: &Paths) -> Option<doctor::Check> {
    let client = banger_client::DaemonClient::new(paths.socket());
    let orphans = client.vm_orphans().await.ok()?;
    if orphans.is_empty() {
        return Some(doctor::Check {
            name: "orphaned-vm-dirs",
            status: Status::Pass,
            detail: "every directory under the VMs directory belongs to a VM".to_owned(),
            fix: None,
        });
    }
    let listed: Vec<String> = orphans
        .iter()
        .map(|orphan| {
            format!(
                "{} ({})",
                orphan.dir,
                super::kernel::human_bytes(orphan.bytes)
            )
        })
        .collect();
    let fixes: Vec<String> = orphans
        .iter()
        .map(|orphan| {
            if orphan.adoptable {
                format!("`banger vm adopt {}`", orphan.dir)
            } else {
                format!("move {} away (not a valid VM name)", orphan.dir)
            }
        })
        .collect();
    Some(doctor::Check {
        name: "orphaned-vm-dirs",
        status: Status::Warn,
        detail: format!(
            "orphaned VM directories (no VM owns them; banger keeps them untouched): {}",
            listed.join(", ")
        ),
        fix: Some(format!(
            "re-register each with {}, or move it out of the VMs directory",
            fixes.join(", ")
        )),
    })
}

/// Whether `<name>.vm` resolves for programs on the host.
fn resolver_check(config: &banger_config::Config) -> doctor::Check {
    match banger_host::net::resolved::detect() {
        banger_host::net::resolved::Integration::Resolved { .. } => doctor::Check {
            name: "dns-resolver",
            status: Status::Pass,
            detail: format!(
                "systemd-resolved runs; banger routes ~vm to its DNS on the bridge ({}:53) once a VM starts",
                config.bridge_ip
            ),
            fix: None,
        },
        banger_host::net::resolved::Integration::Manual { reason } => doctor::Check {
            name: "dns-resolver",
            status: Status::Warn,
            detail: format!(
                "{reason}; `<name>.vm` resolves only through banger's DNS at {} (e.g. dig @{} -p {} NAME.vm)",
                config.dns_listen_addr,
                config.dns_listen_addr.ip(),
                config.dns_listen_addr.port()
            ),
            fix: Some(format!(
                "point your resolver's vm domain at {} (dnsmasq: server=/vm/{}#{}; see docs/dns.md)",
                config.dns_listen_addr,
                config.dns_listen_addr.ip(),
                config.dns_listen_addr.port()
            )),
        },
    }
}
