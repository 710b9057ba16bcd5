//! `vm snapshot create/list/delete/restore` and `vm fork`.

use std::process::ExitCode;

use banger_api::snapshots::{SnapshotCreateRequest, SnapshotInfo, VmForkRequest};
use banger_config::Paths;

use crate::args::{SnapshotCommand, VmForkArgs};
use crate::output;

/// Runs one `vm snapshot` subcommand.
pub async fn run(paths: &Paths, command: SnapshotCommand) -> anyhow::Result<ExitCode> {
    let client = super::super::connect(paths).await?;
    match command {
        SnapshotCommand::Create(args) => {
            let request = SnapshotCreateRequest { name: args.name };
            let snapshot = client
                .create_snapshot(&args.vm, &request, &mut |progress| {
                    output::progress_line(progress);
                })
                .await?;
            if args.json {
                output::json(&snapshot)?;
            } else {
                output::line(&format!(
                    "snapshot {} of {} taken ({}, {} MiB)",
                    snapshot.name,
                    snapshot.vm,
                    if snapshot.memory {
                        "disks and memory"
                    } else {
                        "disks only"
                    },
                    snapshot.bytes >> 20
                ))?;
            }
        }
        SnapshotCommand::List(args) => {
            let snapshots = client.snapshots(&args.vm).await?;
            if args.json {
                output::json(&snapshots)?;
            } else {
                output::line(&output::table(&list_rows(&snapshots)))?;
            }
        }
        SnapshotCommand::Delete(args) => {
            let deleted = client.delete_snapshot(&args.vm, &args.snapshot).await?;
            output::line(&format!(
                "deleted snapshot {} of {} ({} MiB freed)",
                deleted.name,
                deleted.vm,
                deleted.bytes >> 20
            ))?;
        }
        SnapshotCommand::Restore(args) => {
            let vm = client
                .restore_snapshot(&args.vm, &args.snapshot, &mut |progress| {
                    output::progress_line(progress);
                })
                .await?;
            output::line(&format!(
                "restored {} to snapshot {}; it is {}",
                vm.name, args.snapshot, vm.state
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list_rows(snapshots: &[SnapshotInfo]) -> Vec<Vec<String>> {
    let mut rows = vec![
        ["NAME", "TAKEN", "VM STATE", "MEMORY", "SIZE"]
            .map(String::from)
            .to_vec(),
    ];
    for snapshot in snapshots {
        rows.push(vec![
            snapshot.name.to_string(),
            output::age(snapshot.created_at),
            snapshot.vm_state.to_string(),
            if snapshot.memory { "yes" } else { "no" }.to_owned(),
            format!("{} MiB", snapshot.bytes >> 20),
        ]);
    }
    rows
}

/// `vm fork`: prints each new VM, or all of them as JSON.
pub async fn fork(paths: &Paths, args: VmForkArgs) -> anyhow::Result<ExitCode> {
    let client = super::super::connect(paths).await?;
    let request = VmForkRequest {
        name: args.name,
        count: Some(args.count),
    };
    let vms = client
        .fork_vm(&args.source, &request, &mut |progress| {
            output::progress_line(progress);
        })
        .await?;
    if args.json {
        output::json(&vms)?;
    } else {
        for vm in &vms {
            output::line(&format!(
                "forked {} from {} ({})",
                vm.name, args.source, vm.ip
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
