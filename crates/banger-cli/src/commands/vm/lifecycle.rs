//! `vm create|show|start|stop|restart|kill|delete|set|adopt|prune`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use banger_api::VmName;
use banger_api::vms::{VmAdoptRequest, VmCreateRequest, VmSetRequest, VmState};
use banger_config::Paths;

use super::{details, for_each};
use crate::args::{
    VmAdoptArgs, VmCreateArgs, VmDeleteArgs, VmKillArgs, VmPruneArgs, VmResources, VmSetArgs,
    VmShowArgs,
};
use crate::output;
use crate::progress::Reporter;

/// The create request for the given name and resources.
pub fn create_request(
    name: Option<VmName>,
    resources: &VmResources,
    no_start: bool,
) -> VmCreateRequest {
    VmCreateRequest {
        name,
        image: resources.image.clone(),
        vcpus: resources.vcpu,
        memory_mib: resources.memory,
        disk_bytes: resources.disk_size,
        no_start,
        nat: resources.nat,
    }
}

pub async fn create(paths: &Paths, args: VmCreateArgs) -> anyhow::Result<ExitCode> {
    let request = create_request(args.name, &args.resources, args.no_start);
    let client = super::super::connect(paths).await?;
    let mut reporter = Reporter::new();
    let result = client
        .create_vm(&request, &mut |progress| reporter.show(progress))
        .await;
    reporter.finish();
    let vm = result?;
    if args.json {
        output::json(&vm)?;
    } else {
        output::line(vm.name.as_str())?;
        eprintln!(
            "VM {} is {} at {} (`banger vm ssh {}`)",
            vm.name, vm.state, vm.ip, vm.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `banger vm adopt DIR`: the directory is made absolute (against the
/// current directory, without following links); the daemon checks it is
/// exactly `<state dir>/vms/NAME`.
pub async fn adopt(paths: &Paths, args: VmAdoptArgs) -> anyhow::Result<ExitCode> {
    let dir = std::path::absolute(&args.dir)?;
    let request = VmAdoptRequest {
        dir: dir.to_string_lossy().into_owned(),
        image: args.image,
        vcpus: args.vcpu,
        memory_mib: args.memory,
        nat: args.nat,
    };
    let vm = super::super::connect(paths)
        .await?
        .adopt_vm(&request)
        .await?;
    if args.json {
        output::json(&vm)?;
    } else {
        output::line(vm.name.as_str())?;
        eprintln!(
            "adopted {} as VM {} ({}, {} on {}); `banger vm start {}` boots its disks",
            output::sanitize(&vm.dir),
            vm.name,
            vm.state,
            vm.ip,
            super::image(&vm),
            vm.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn show(paths: &Paths, args: VmShowArgs) -> anyhow::Result<ExitCode> {
    let names = args.names;
    let client = super::super::connect(paths).await?;
    let mut shown = Vec::new();
    let mut failed = false;
    for name in &names {
        match client.vm(name).await {
            Ok(vm) => shown.push(vm),
            Err(error) => {
                failed = true;
                eprintln!(
                    "error: {name}: {}",
                    output::sanitize(&format!("{:#}", anyhow::Error::from(error)))
                );
            }
        }
    }
    if args.json {
        if names.len() == 1 {
            if let Some(vm) = shown.first() {
                output::json(vm)?;
            }
        } else {
            output::json(&shown)?;
        }
    } else {
        let blocks: Vec<String> = shown
            .iter()
            .map(|vm| output::sanitize(&output::table(&details(vm))))
            .collect();
        output::line(&blocks.join("\n\n"))?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn start(paths: &Paths, names: Vec<VmName>) -> anyhow::Result<ExitCode> {
    let client = super::super::connect(paths).await?;
    let several = names.len() > 1;
    for_each(&client, names, move |client, name| async move {
        let vm = client
            .start_vm(&name, &mut |progress| {
                if !several {
                    output::progress_line(progress);
                }
            })
            .await?;
        Ok(format!("started {} ({})", vm.name, vm.ip))
    })
    .await
}

pub async fn stop(paths: &Paths, names: Vec<VmName>) -> anyhow::Result<ExitCode> {
    let client = super::super::connect(paths).await?;
    for_each(&client, names, |client, name| async move {
        let vm = client.stop_vm(&name).await?;
        // A paused VM's saved memory was discarded: the reason says so.
        let why = vm
            .last_error
            .filter(|reason| reason.starts_with("stopped while paused"))
            .map(|reason| format!(" ({reason})"))
            .unwrap_or_default();
        Ok(format!("{} is {}{why}", vm.name, vm.state))
    })
    .await
}

pub async fn restart(paths: &Paths, names: Vec<VmName>) -> anyhow::Result<ExitCode> {
    let client = super::super::connect(paths).await?;
    for_each(&client, names, |client, name| async move {
        let vm = client.restart_vm(&name, &mut |_| {}).await?;
        Ok(format!("restarted {} ({})", vm.name, vm.ip))
    })
    .await
}

pub async fn kill(paths: &Paths, args: VmKillArgs) -> anyhow::Result<ExitCode> {
    let names = args.names;
    let client = super::super::connect(paths).await?;
    let signal = args.signal;
    for_each(&client, names, move |client, name| async move {
        let vm = client.kill_vm(&name, signal).await?;
        Ok(format!("sent {signal} to {}; it is {}", vm.name, vm.state))
    })
    .await
}

pub async fn delete(paths: &Paths, args: VmDeleteArgs) -> anyhow::Result<ExitCode> {
    let names = args.names;
    let client = super::super::connect(paths).await?;
    let force = args.force;
    for_each(&client, names, move |client, name| async move {
        let deleted = client.delete_vm(&name, force).await?;
        Ok(format!("deleted {}", deleted.name))
    })
    .await
}

pub async fn set(paths: &Paths, args: VmSetArgs) -> anyhow::Result<ExitCode> {
    let names = args.names;
    let nat = match (args.nat, args.no_nat) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let resources = args.vcpu.is_some() || args.memory.is_some() || args.disk_size.is_some();
    if !resources && nat.is_none() {
        anyhow::bail!("nothing to change: pass --vcpu, --memory, --disk-size, --nat or --no-nat");
    }
    if resources && names.len() > 1 {
        anyhow::bail!(
            "--vcpu, --memory and --disk-size change one VM at a time; only --nat/--no-nat take several"
        );
    }
    let request = VmSetRequest {
        vcpus: args.vcpu,
        memory_mib: args.memory,
        disk_bytes: args.disk_size,
        nat,
    };
    let client = super::super::connect(paths).await?;
    for_each(&client, names, move |client, name| {
        let request = request.clone();
        async move {
            let vm = client.set_vm(&name, &request).await?;
            Ok(format!(
                "{}: {} vCPU, {} MiB memory, {} disk, NAT {}",
                vm.name,
                vm.vcpus,
                vm.memory_mib,
                super::human_bytes(vm.disk_bytes),
                if vm.nat { "on" } else { "off" }
            ))
        }
    })
    .await
}

pub async fn prune(paths: &Paths, args: VmPruneArgs) -> anyhow::Result<ExitCode> {
    let client = super::super::connect(paths).await?;
    let doomed: Vec<VmName> = client
        .vms()
        .await?
        .into_iter()
        .filter(|vm| vm.state.is_at_rest())
        .map(|vm| vm.name)
        .collect();
    if doomed.is_empty() {
        eprintln!("no VMs to prune: every VM is running");
        return Ok(ExitCode::SUCCESS);
    }
    let list = doomed
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if !args.force {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("would delete {list}; pass -f to confirm when not at a terminal");
        }
        eprint!(
            "delete {} VM(s) that are not running ({list})? [y/N] ",
            doomed.len()
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("nothing deleted");
            return Ok(ExitCode::SUCCESS);
        }
    }
    for_each(&client, doomed, |client, name| async move {
        // Re-check: a VM started since the listing must not be deleted.
        let vm = client.vm(&name).await?;
        if vm.state == VmState::Running {
            anyhow::bail!("it is running now; skipped");
        }
        client.delete_vm(&name, false).await?;
        Ok(format!("deleted {name}"))
    })
    .await
}

#[cfg(test)]
mod adopt_tests {
    use clap::Parser;

    use crate::args::{Cli, Command, VmCommand};

    #[test]
    fn vm_adopt_parses_its_options_and_help() {
        let cli = Cli::try_parse_from([
            "banger", "vm", "adopt", "/s/vms/x", "--image", "img", "--vcpu", "2", "--memory", "1G",
        ])
        .expect("parse");
        let Command::Vm(VmCommand::Adopt(args)) = cli.command else {
            panic!("not vm adopt");
        };
        assert_eq!(args.dir, std::path::PathBuf::from("/s/vms/x"));
        assert_eq!(args.vcpu, Some(2));
        assert_eq!(args.memory, Some(1024));
        let help =
            Cli::try_parse_from(["banger", "vm", "adopt", "--help"]).expect_err("help exits early");
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(help.to_string().contains("orphaned VM directory"), "{help}");
    }
}
