//! Arguments of `banger vm snapshot ...` and `banger vm fork`.

use banger_api::{SnapshotName, VmName};
use clap::{Args, Subcommand};

/// `banger vm snapshot ...`
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save a VM's disks, and its memory when it runs or is paused, at one instant (a running VM is paused for the copy and resumed).
    Create(SnapshotCreateArgs),
    /// List a VM's snapshots, oldest first.
    List(SnapshotListArgs),
    /// Delete a snapshot.
    Delete(SnapshotRef),
    /// Put a stopped or paused VM back to a snapshot: its disks are replaced, and with memory it resumes where the snapshot was taken.
    Restore(SnapshotRef),
}

/// Options of `banger vm snapshot create`.
#[derive(Debug, Args)]
pub struct SnapshotCreateArgs {
    /// The VM.
    pub vm: VmName,
    /// The snapshot's name (default: `s-` and the UTC time, e.g. s-20261130-141502).
    #[arg(long)]
    pub name: Option<SnapshotName>,
    /// Print the snapshot as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `banger vm snapshot list`.
#[derive(Debug, Args)]
pub struct SnapshotListArgs {
    /// The VM.
    pub vm: VmName,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A VM and one of its snapshots.
#[derive(Debug, Args)]
pub struct SnapshotRef {
    /// The VM.
    pub vm: VmName,
    /// The snapshot.
    pub snapshot: SnapshotName,
}

/// Options of `banger vm fork`.
#[derive(Debug, Args)]
pub struct VmForkArgs {
    /// The running (or paused) VM to copy; it keeps running.
    pub source: VmName,
    /// Name of the new VM; with --count N the new VMs are NAME-1 ... NAME-N.
    #[arg(long)]
    pub name: VmName,
    /// How many VMs to make (1 to 16).
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Print the new VMs as JSON.
    #[arg(long)]
    pub json: bool,
}
