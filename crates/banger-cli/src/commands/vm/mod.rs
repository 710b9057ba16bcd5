//! `banger vm ...`: thin glue from arguments to daemon calls. Commands that
//! take several VMs run them concurrently and report each result.

mod acp;
mod lifecycle;
mod logs;
mod observe;
mod opencode;
mod pause;
mod run;
mod session;
mod snapshot;
mod ssh;
mod workspace;

use std::process::ExitCode;

use banger_api::VmName;
use banger_api::vms::VmInfo;
use banger_client::DaemonClient;
use banger_config::Paths;

use super::kernel::human_bytes;
use crate::args::VmCommand;
use crate::output;

pub async fn run(command: VmCommand) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env()?;
    match command {
        VmCommand::Create(args) => lifecycle::create(&paths, args).await,
        VmCommand::Run(args) => run::run(&paths, args).await,
        VmCommand::List(flags) => {
            let vms = super::connect(&paths).await?.vms().await?;
            if flags.json {
                output::json(&vms)?;
            } else {
                output::line(&output::sanitize(&output::table(&list_rows(&vms))))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Show(args) => lifecycle::show(&paths, args).await,
        VmCommand::Start(refs) => lifecycle::start(&paths, refs.names).await,
        VmCommand::Stop(refs) => lifecycle::stop(&paths, refs.names).await,
        VmCommand::Pause(refs) => pause::pause(&paths, refs.names).await,
        VmCommand::Resume(refs) => pause::resume(&paths, refs.names).await,
        VmCommand::Snapshot(command) => snapshot::run(&paths, command).await,
        VmCommand::Fork(args) => snapshot::fork(&paths, args).await,
        VmCommand::Restart(refs) => lifecycle::restart(&paths, refs.names).await,
        VmCommand::Kill(args) => lifecycle::kill(&paths, args).await,
        VmCommand::Delete(args) => lifecycle::delete(&paths, args).await,
        VmCommand::Set(args) => lifecycle::set(&paths, args).await,
        VmCommand::Adopt(args) => lifecycle::adopt(&paths, args).await,
        VmCommand::Prune(args) => lifecycle::prune(&paths, args).await,
        VmCommand::Logs(args) => logs::logs(&paths, args).await,
        VmCommand::Ssh(args) => ssh::ssh(&paths, args).await,
        VmCommand::Ports(args) => observe::ports(&paths, args).await,
        VmCommand::Stats(args) => observe::stats(&paths, args).await,
        VmCommand::Workspace(command) => workspace::run(&paths, command).await,
        VmCommand::Session(command) => session::run(&paths, command).await,
        VmCommand::Acp(args) => acp::acp(&paths, args).await,
        VmCommand::Opencode(args) => opencode::opencode(&paths, args).await,
    }
}

/// Runs `action` for every VM concurrently; prints `ok(vm)` or the error per
/// VM; fails when any failed.
async fn for_each<F, Fut>(
    client: &DaemonClient,
    names: Vec<VmName>,
    action: F,
) -> anyhow::Result<ExitCode>
where
    F: Fn(DaemonClient, VmName) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for (index, name) in names.into_iter().enumerate() {
        let future = action(client.clone(), name.clone());
        tasks.spawn(async move { (index, name, future.await) });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined?);
    }
    results.sort_by_key(|(index, _, _)| *index);
    let mut failed = false;
    for (_, name, result) in results {
        match result {
            Ok(message) => eprintln!("{}", output::sanitize(&message)),
            Err(error) => {
                failed = true;
                eprintln!("error: {name}: {}", output::sanitize(&format!("{error:#}")));
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn list_rows(vms: &[VmInfo]) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "NAME", "STATE", "IMAGE", "IP", "VCPU", "MEMORY", "DISK", "USED",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for vm in vms {
        rows.push(vec![
            vm.name.to_string(),
            vm.state.to_string(),
            image(vm),
            vm.ip.to_string(),
            vm.vcpus.to_string(),
            format!("{} MiB", vm.memory_mib),
            human_bytes(vm.disk_bytes),
            human_bytes(vm.disks.iter().map(|disk| disk.allocated_bytes).sum()),
        ]);
    }
    rows
}

/// One line per disk: what the host really holds, of the apparent size.
fn disk_rows(vm: &VmInfo) -> Vec<Vec<String>> {
    vm.disks
        .iter()
        .map(|disk| {
            vec![
                format!("{} disk", disk.name),
                format!(
                    "{} used on the host of {} ({})",
                    human_bytes(disk.allocated_bytes),
                    human_bytes(disk.size_bytes),
                    disk.path
                ),
            ]
        })
        .collect()
}

/// The VM's image, or `(deleted)` after a forced image delete.
fn image(vm: &VmInfo) -> String {
    vm.image
        .as_ref()
        .map_or_else(|| "(deleted)".to_owned(), ToString::to_string)
}

fn details(vm: &VmInfo) -> Vec<Vec<String>> {
    let optional = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    let mut rows = vec![
        vec!["name".into(), vm.name.to_string()],
        vec!["state".into(), vm.state.to_string()],
        vec!["image".into(), image(vm)],
        vec!["ip".into(), vm.ip.to_string()],
        vec!["mac".into(), vm.mac.clone()],
        vec!["vcpus".into(), vm.vcpus.to_string()],
        vec!["memory".into(), format!("{} MiB", vm.memory_mib)],
        vec!["disk".into(), human_bytes(vm.disk_bytes)],
    ];
    rows.extend(disk_rows(vm));
    rows.extend([
        vec![
            "backend".into(),
            vm.backend
                .map_or_else(|| "-".to_owned(), |backend| backend.to_string()),
        ],
        vec![
            "pid".into(),
            vm.pid.map_or_else(|| "-".into(), |pid| pid.to_string()),
        ],
        vec!["tap".into(), optional(&vm.tap)],
        vec!["vsock cid".into(), vm.vsock_cid.to_string()],
        vec!["dir".into(), vm.dir.clone()],
        vec!["console log".into(), vm.console_log.clone()],
        vec!["ssh".into(), format!("banger vm ssh {}", vm.name)],
        vec!["last error".into(), optional(&vm.last_error)],
    ]);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VmInfo {
        serde_json::from_value(serde_json::json!({
            "name": "alpha", "state": "running", "image": "debian-bookworm-minimal",
            "vcpus": 2, "memory_mib": 2048, "disk_bytes": 8u64 << 30,
            "ip": "172.16.0.2", "mac": "02:00:ac:10:00:02", "vsock_cid": 102,
            "tap": "bgtap0", "backend": "qemu", "pid": 4242,
            "dir": "/state/vms/alpha", "console_log": "/state/vms/alpha/console.log",
            "last_error": null, "nat": false,
            "disks": [
                {"name": "overlay", "path": "/state/vms/alpha/overlay.ext4",
                 "size_bytes": 4u64 << 30, "allocated_bytes": 12u64 << 20},
                {"name": "work", "path": "/state/vms/alpha/work.ext4",
                 "size_bytes": 8u64 << 30, "allocated_bytes": 300u64 << 20},
            ],
            "ssh": {"user": "root", "ip": "172.16.0.2", "host_alias": "alpha.vm",
                "identity": "/state/ssh/id_ed25519", "known_hosts": "/state/ssh/known_hosts"},
            "created_at": 1_700_000_000, "updated_at": 1_700_000_100,
        }))
        .expect("a VmInfo")
    }

    #[test]
    fn list_and_show_give_each_disks_host_usage() {
        let vm = sample();
        insta::assert_snapshot!(
            "vm_list",
            output::table(&list_rows(std::slice::from_ref(&vm)))
        );
        insta::assert_snapshot!("vm_show", output::table(&details(&vm)));
    }
}
