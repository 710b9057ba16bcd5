//! `banger system df`, `banger image prune` and `banger kernel prune`: the
//! host disk space banger holds and the prunes that give it back. The
//! daemon owns the numbers (`GET /v1/usage`, `POST /v1/{images,kernels}/prune`);
//! this prints them.

use std::process::ExitCode;

use banger_api::usage::{PruneReport, PruneRequest, UsageReport};
use banger_config::Paths;

use super::kernel::human_bytes;
use crate::args::{PruneArgs, SystemDfArgs};
use crate::output;

/// `banger system df`.
pub async fn df(args: &SystemDfArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env()?;
    let report = super::connect(&paths).await?.usage().await?;
    if args.json {
        output::json(&report)?;
    } else {
        output::line(&output::sanitize(&output::table(&df_rows(&report))))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn df_rows(report: &UsageReport) -> Vec<Vec<String>> {
    let mut rows = vec![
        ["TYPE", "NAME", "USED", "DETAIL"]
            .map(String::from)
            .to_vec(),
    ];
    for vm in &report.vms {
        rows.push(vec![
            "vm".into(),
            vm.name.to_string(),
            human_bytes(vm.total_bytes),
            format!(
                "disks {}, memory {}, snapshots {}",
                human_bytes(vm.disks_bytes),
                human_bytes(vm.memory_bytes),
                human_bytes(vm.snapshots_bytes)
            ),
        ]);
    }
    for image in &report.images {
        let detail = if !image.managed {
            "registered: files not banger's, not counted".to_owned()
        } else if image.used_by_vms.is_empty() {
            "unused (`banger image prune`)".to_owned()
        } else {
            format!("{} VM(s)", image.used_by_vms.len())
        };
        rows.push(vec![
            "image".into(),
            image.name.to_string(),
            human_bytes(image.total_bytes),
            detail,
        ]);
    }
    for kernel in &report.kernels {
        let detail = if kernel.used_by_images.is_empty() {
            "unused (`banger kernel prune`)".to_owned()
        } else {
            format!("{} image(s)", kernel.used_by_images.len())
        };
        rows.push(vec![
            "kernel".into(),
            kernel.name.to_string(),
            human_bytes(kernel.total_bytes),
            detail,
        ]);
    }
    for cache in &report.caches {
        rows.push(vec![
            "cache".into(),
            cache.name.clone(),
            human_bytes(cache.total_bytes),
            cache.path.clone(),
        ]);
    }
    rows.push(vec![
        "total".into(),
        String::new(),
        human_bytes(report.total_bytes),
        String::new(),
    ]);
    rows
}

/// Which prune: images or kernels.
#[derive(Debug, Clone, Copy)]
pub enum PruneTarget {
    /// `banger image prune`.
    Images,
    /// `banger kernel prune`.
    Kernels,
}

/// `banger image prune` / `banger kernel prune`.
pub async fn prune(target: PruneTarget, args: &PruneArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env()?;
    let client = super::connect(&paths).await?;
    let request = PruneRequest {
        dry_run: args.dry_run,
        all: args.all,
    };
    let report = match target {
        PruneTarget::Images => client.prune_images(&request).await?,
        PruneTarget::Kernels => client.prune_kernels(&request).await?,
    };
    if args.json {
        output::json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let noun = match target {
        PruneTarget::Images => "image",
        PruneTarget::Kernels => "kernel",
    };
    if report.removed.is_empty() {
        eprintln!("no unused {noun} to remove");
    } else {
        output::line(&output::sanitize(&output::table(&prune_rows(&report))))?;
    }
    if args.verbose && !report.kept.is_empty() {
        let mut kept = vec![vec!["KEPT".to_owned(), "WHY".to_owned()]];
        kept.extend(
            report
                .kept
                .iter()
                .map(|item| vec![item.name.clone(), item.reason.clone()]),
        );
        output::line(&output::sanitize(&output::table(&kept)))?;
    } else if !report.kept.is_empty() {
        eprintln!("kept {} {noun}(s); `--verbose` says why", report.kept.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn prune_rows(report: &PruneReport) -> Vec<Vec<String>> {
    let (head, freed) = if report.dry_run {
        ("WOULD REMOVE", "WOULD FREE")
    } else {
        ("REMOVED", "FREED")
    };
    let mut rows = vec![vec![head.to_owned(), freed.to_owned()]];
    rows.extend(
        report
            .removed
            .iter()
            .map(|item| vec![item.name.clone(), human_bytes(item.bytes)]),
    );
    rows.push(vec!["total".to_owned(), human_bytes(report.freed_bytes)]);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_and_prune_tables() {
        let report: UsageReport = serde_json::from_value(serde_json::json!({
            "vms": [{"name": "alpha", "disks_bytes": 300u64 << 20, "memory_bytes": 0,
                "snapshots_bytes": 100u64 << 20, "total_bytes": 401u64 << 20}],
            "images": [
                {"name": "debian-bookworm", "managed": true, "total_bytes": 900u64 << 20,
                    "used_by_vms": ["alpha"]},
                {"name": "old", "managed": true, "total_bytes": 700u64 << 20, "used_by_vms": []},
                {"name": "mine", "managed": false, "total_bytes": 0, "used_by_vms": []},
            ],
            "kernels": [{"name": "debian-cloud", "total_bytes": 60u64 << 20,
                "used_by_images": ["debian-bookworm", "old"]}],
            "caches": [{"name": "oci", "path": "/cache/oci", "total_bytes": 2u64 << 30}],
            "total_bytes": 4157u64 << 20,
        }))
        .expect("a usage report");
        insta::assert_snapshot!("system_df", output::table(&df_rows(&report)));
        let pruned: PruneReport = serde_json::from_value(serde_json::json!({
            "dry_run": true,
            "removed": [{"name": "old", "bytes": 700u64 << 20,
                "removed_files": ["/state/images/old"]}],
            "kept": [{"name": "debian-bookworm", "reason": "used by VMs alpha"}],
            "freed_bytes": 700u64 << 20,
        }))
        .expect("a prune report");
        insta::assert_snapshot!("prune_dry_run", output::table(&prune_rows(&pruned)));
    }
}
