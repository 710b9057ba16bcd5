//! The command-line grammar. Clap types live only here; doc comments are the
//! help text users see.

use banger_api::{ImageName, KernelName, VmName};
use clap::{Args, Parser, Subcommand};

mod mcp;
mod prune;
mod session;
mod shell;
mod snapshot;
mod system;
mod tui;
mod web;
mod workspace;

pub use mcp::{McpArgs, McpClient, McpCommand, McpInstallArgs, McpServerArgs};
pub use prune::PruneArgs;
pub use session::{
    LogStreamArg, SessionCommand, SessionLogsArgs, SessionRef, SessionStartArgs, StdinModeArg,
};
pub use shell::{CompletionShell, CompletionsArgs, ManArgs};
pub use snapshot::{SnapshotCommand, VmForkArgs};
pub use system::{SystemCommand, SystemDfArgs};
pub use tui::TuiArgs;
pub use web::WebArgs;
pub use workspace::{
    VmAcpArgs, VmOpencodeArgs, WorkspaceCommand, WorkspaceMode, WorkspacePrepareArgs,
    WorkspacePullArgs,
};

/// Persistent, one-command development sandboxes on microVMs.
#[derive(Debug, Parser)]
#[command(
    name = "banger",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Control and inspect the bangerd daemon.
    #[command(subcommand)]
    Daemon(DaemonCommand),
    /// Inspect banger's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check this host for everything banger needs, with a fix for each problem.
    Doctor(DoctorArgs),
    /// Manage guest kernels.
    #[command(subcommand)]
    Kernel(KernelCommand),
    /// Manage images (base root filesystem, work seed, kernel).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Create, run and manage VMs.
    #[command(subcommand)]
    Vm(VmCommand),
    /// Install banger system-wide for a user (root helper and daemon as services), and inspect or remove that install.
    #[command(subcommand)]
    System(SystemCommand),
    /// Serve the Model Context Protocol on stdin/stdout, so coding agents (Claude Code, opencode, Codex) create and use sandboxes as tools; `mcp install` configures an agent (docs/mcp.md).
    Mcp(McpArgs),
    /// Watch and drive VMs, images and kernels in a terminal UI that updates live (docs/tui.md).
    Tui(TuiArgs),
    /// Print the web UI's URL (it carries this daemon's secret) and open it in a browser when there is a desktop (docs/web-ui.md).
    Web(WebArgs),
    /// Print a completion script for bash, zsh or fish on stdout (`banger system install` installs them; docs/system-install.md).
    Completions(CompletionsArgs),
    /// Print the banger(1) man page on stdout (read it with `banger man | man -l -`), or write every page into a directory.
    Man(ManArgs),
}

/// `banger vm ...`
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Create a VM and start it (returns when SSH answers).
    Create(VmCreateArgs),
    /// Create a VM, start it, and open a shell or run a command in it; exits with the command's status.
    Run(VmRunArgs),
    /// List VMs.
    List(JsonFlag),
    /// Show VMs.
    Show(VmShowArgs),
    /// Start stopped VMs (returns when SSH answers).
    Start(VmRefs),
    /// Stop VMs gracefully (killed after a timeout); a paused VM's saved memory is discarded.
    Stop(VmRefs),
    /// Pause running VMs: memory and device state go to a file, the VMM exits.
    Pause(VmRefs),
    /// Resume paused VMs where they were (returns when SSH answers).
    Resume(VmRefs),
    /// Save, list, delete and restore a VM's snapshots (disks and memory at one instant).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Make new VMs from a running VM's memory and disks, each with its own name, address, host key and machine id.
    Fork(VmForkArgs),
    /// Restart VMs.
    Restart(VmRefs),
    /// Send a signal to VMs' VMM processes.
    Kill(VmKillArgs),
    /// Delete VMs and everything they own.
    Delete(VmDeleteArgs),
    /// Change a stopped VM's vCPUs, memory or disk size (the disk only grows).
    Set(VmSetArgs),
    /// Re-register an orphaned VM directory (`<state dir>/vms/NAME` that no VM owns, as `banger doctor` lists them) as VM NAME, its disks as they are; the first start boots them.
    Adopt(VmAdoptArgs),
    /// Delete every VM that is not running, after a confirmation.
    Prune(VmPruneArgs),
    /// Show a VM's serial console log.
    Logs(VmLogsArgs),
    /// Open a shell in a VM, or run a command there; exits with its status.
    Ssh(VmSshArgs),
    /// List a VM's listening ports as host endpoints (`<name>.vm:PORT`), web ones as URLs.
    Ports(VmNameJson),
    /// Show a VM's host-side and guest-side resource use.
    Stats(VmStatsArgs),
    /// Copy a git checkout into a VM, or bring the guest's work back.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Long-lived guest processes managed by the daemon (survive daemon restarts).
    #[command(subcommand)]
    Session(SessionCommand),
    /// Bridge stdin/stdout to `opencode acp` in a VM (Agent Client Protocol).
    Acp(VmAcpArgs),
    /// Attach this host's opencode to the VM's opencode server (port 4096),
    /// with the server's password read from the guest over SSH.
    Opencode(VmOpencodeArgs),
}

/// A VM name and `--json`.
#[derive(Debug, Args)]
pub struct VmNameJson {
    /// The VM.
    pub name: VmName,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `banger vm stats`.
#[derive(Debug, Args)]
pub struct VmStatsArgs {
    /// The VM.
    pub name: VmName,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Refresh every 2 seconds until interrupted.
    #[arg(long, short = 'w')]
    pub watch: bool,
}

/// Resources of a new VM.
#[derive(Debug, Args)]
pub struct VmResources {
    /// Image to boot (default: `default_image_name` from the config).
    #[arg(long)]
    pub image: Option<ImageName>,
    /// Virtual CPUs.
    #[arg(long)]
    pub vcpu: Option<u8>,
    /// Memory: MiB, or a size such as 4G.
    #[arg(long, value_parser = parse_memory)]
    pub memory: Option<u32>,
    /// Size of the persistent work disk (/root), e.g. 20G.
    #[arg(long, value_parser = parse_size)]
    pub disk_size: Option<u64>,
    /// Let the VM reach the outside world through NAT (default: only the bridge).
    #[arg(long)]
    pub nat: bool,
}

/// Options of `banger vm create`.
#[derive(Debug, Args)]
pub struct VmCreateArgs {
    /// Name (default: a generated adjective-noun name).
    #[arg(long)]
    pub name: Option<VmName>,
    #[command(flatten)]
    pub resources: VmResources,
    /// Create only; do not start.
    #[arg(long)]
    pub no_start: bool,
    /// Print the VM as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `banger vm run`.
#[derive(Debug, Args)]
pub struct VmRunArgs {
    /// A git checkout to copy into the VM at /root/repo (the shell or command then runs there).
    pub path: Option<std::path::PathBuf>,
    /// Name (default: a generated adjective-noun name).
    #[arg(long)]
    pub name: Option<VmName>,
    #[command(flatten)]
    pub resources: VmResources,
    /// Put the guest copy on a new branch of this name (needs PATH).
    #[arg(long, requires = "path")]
    pub branch: Option<String>,
    /// Copy the committed tree of this ref instead of the working tree (needs PATH).
    #[arg(long, requires = "path")]
    pub from: Option<String>,
    /// Delete the VM afterwards (kept if SSH never answered, for inspection).
    #[arg(long)]
    pub rm: bool,
    /// Command to run (after `--`); without one, an interactive shell.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// One or more VM names.
#[derive(Debug, Args)]
pub struct VmRefs {
    /// VM names.
    #[arg(required = true)]
    pub names: Vec<VmName>,
}

/// Options of `banger vm show`.
#[derive(Debug, Args)]
pub struct VmShowArgs {
    /// VM names.
    #[arg(required = true)]
    pub names: Vec<VmName>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `banger vm kill`.
#[derive(Debug, Args)]
pub struct VmKillArgs {
    /// Signal to send (KILL, TERM, INT, HUP, QUIT, USR1, USR2).
    #[arg(long, short = 's', default_value = "KILL")]
    pub signal: banger_api::vms::VmSignal,
    /// VM names.
    #[arg(required = true)]
    pub names: Vec<VmName>,
}

/// Options of `banger vm delete`.
#[derive(Debug, Args)]
pub struct VmDeleteArgs {
    /// Stop running VMs first instead of refusing.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// VM names.
    #[arg(required = true)]
    pub names: Vec<VmName>,
}

/// Options of `banger vm adopt`.
#[derive(Debug, Args)]
pub struct VmAdoptArgs {
    /// The orphaned directory: exactly `<state dir>/vms/NAME`; the VM is called NAME.
    pub dir: std::path::PathBuf,
    /// Image to boot it with (default: `default_image_name` from the config).
    #[arg(long)]
    pub image: Option<ImageName>,
    /// Virtual CPUs.
    #[arg(long)]
    pub vcpu: Option<u8>,
    /// Memory: MiB, or a size such as 4G.
    #[arg(long, value_parser = parse_memory)]
    pub memory: Option<u32>,
    /// Let the VM reach the outside world through NAT (default: only the bridge).
    #[arg(long)]
    pub nat: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `banger vm set`.
#[derive(Debug, Args)]
pub struct VmSetArgs {
    /// The VMs (several only with --nat/--no-nat alone).
    #[arg(required = true)]
    pub names: Vec<VmName>,
    /// Turn NAT on (also on running VMs).
    #[arg(long, conflicts_with = "no_nat")]
    pub nat: bool,
    /// Turn NAT off (also on running VMs).
    #[arg(long)]
    pub no_nat: bool,
    /// Virtual CPUs.
    #[arg(long)]
    pub vcpu: Option<u8>,
    /// Memory: MiB, or a size such as 4G.
    #[arg(long, value_parser = parse_memory)]
    pub memory: Option<u32>,
    /// New work disk size, e.g. 40G (only grows).
    #[arg(long, value_parser = parse_size)]
    pub disk_size: Option<u64>,
}

/// Options of `banger vm prune`.
#[derive(Debug, Args)]
pub struct VmPruneArgs {
    /// Do not ask for confirmation.
    #[arg(long, short = 'f')]
    pub force: bool,
}

/// Options of `banger vm logs`.
#[derive(Debug, Args)]
pub struct VmLogsArgs {
    /// The VM.
    pub name: VmName,
    /// Keep printing new output until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// Options of `banger vm ssh`.
#[derive(Debug, Args)]
pub struct VmSshArgs {
    /// The VM.
    pub name: VmName,
    /// Command to run (after `--`); without one, an interactive shell.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// Parses memory: a plain number is MiB; with a unit (512M, 4G) a size.
pub fn parse_memory(text: &str) -> Result<u32, SizeParseError> {
    let text = text.trim();
    if let Ok(mib) = text.parse::<u32>() {
        return Ok(mib);
    }
    let bytes = parse_size(text)?;
    u32::try_from(bytes >> 20).map_err(|_| SizeParseError::TooLarge {
        text: text.to_owned(),
    })
}

/// `banger image ...`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build a Debian image from Debian packages (managed by banger).
    Build(ImageBuildArgs),
    /// Pull an OCI image from a registry, a `docker save` archive or an OCI layout (managed by banger).
    Pull(ImagePullArgs),
    /// Register your own image files (unmanaged: banger never modifies or deletes them).
    Register(ImageRegisterArgs),
    /// List images; with --available, the image catalog's recipes.
    List(ImageListArgs),
    /// Show an image.
    Show(ImageShowArgs),
    /// Delete an image (a managed image's files go with it).
    Delete(ImageDeleteArgs),
    /// Copy an unmanaged image's files into banger's store and verify them.
    Promote(ImageNameArg),
    /// Remove the managed images no VM uses (keeps the default image unless --all) and say how much space came back.
    Prune(PruneArgs),
}

/// Options of `banger image list`.
#[derive(Debug, Args)]
pub struct ImageListArgs {
    /// List the image catalog's recipes (`image build --from-catalog NAME`) instead of installed images.
    #[arg(long)]
    pub available: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `banger image build`.
#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// Name of the new image (default with --from-catalog: the entry's name).
    #[arg(long, required_unless_present = "from_catalog")]
    pub name: Option<ImageName>,
    /// Make the image catalog's recipe NAME (see `banger image list --available`): a Debian entry is built; an OCI entry is pulled, then provisioned on when the entry says so ($BANGER_IMAGE_CATALOG names another catalog file).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["suite", "minimal", "docker"])]
    pub from_catalog: Option<String>,
    /// Provision the installed image BASE (a glibc Debian or Ubuntu image, registered or pulled) instead of building from nothing; its suite comes from its /etc/os-release.
    #[arg(long, value_name = "BASE", conflicts_with_all = ["suite", "minimal", "from_catalog"])]
    pub from_image: Option<ImageName>,
    /// Debian suite (codename) [default: bookworm].
    #[arg(long)]
    pub suite: Option<String>,
    /// The bare image: no pinned agent tools (opencode, Claude Code, pi, mise, Node.js, tmux persistence).
    #[arg(long)]
    pub minimal: bool,
    /// Add the docker engine and compose (Debian packages), enabled.
    #[arg(long, conflicts_with = "minimal")]
    pub docker: bool,
    /// File with extra packages, one per line (`#` comments allowed).
    #[arg(long)]
    pub packages: Option<std::path::PathBuf>,
    /// Size of the root filesystem, e.g. 4G (default: fitted to its content).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,
    /// Installed kernel to boot (default: the catalog default, pulled if needed).
    #[arg(long)]
    pub kernel_ref: Option<KernelName>,
}

/// Options of `banger image pull`.
#[derive(Debug, Args)]
pub struct ImagePullArgs {
    /// `[REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST]` (Docker Hub by default),
    /// `docker-archive:PATH` (a `docker save` tarball) or `oci:DIR[:TAG]` (an OCI layout).
    pub reference: String,
    /// Name of the new image.
    #[arg(long)]
    pub name: ImageName,
    /// Installed kernel to boot (default: the catalog default, pulled if needed).
    #[arg(long)]
    pub kernel_ref: Option<KernelName>,
    /// Largest layer, compressed or not, e.g. 8G (default 4G).
    #[arg(long, value_parser = parse_size)]
    pub max_layer_size: Option<u64>,
    /// Largest total of the image's files, e.g. 32G (default 16G).
    #[arg(long, value_parser = parse_size)]
    pub max_image_size: Option<u64>,
    /// Print the image as JSON when done.
    #[arg(long)]
    pub json: bool,
}

/// Options of `banger image register`.
#[derive(Debug, Args)]
pub struct ImageRegisterArgs {
    /// Image name; an existing unmanaged image of this name is updated in place.
    #[arg(long)]
    pub name: ImageName,
    /// The ext4 root filesystem.
    #[arg(long)]
    pub rootfs: std::path::PathBuf,
    /// A kernel file (bzImage or vmlinux) to import for this image.
    #[arg(long, conflicts_with = "kernel_ref")]
    pub kernel: Option<std::path::PathBuf>,
    /// An installed kernel to boot (default: the catalog default).
    #[arg(long)]
    pub kernel_ref: Option<KernelName>,
    /// A custom initrd replacing banger's initramfs (must follow banger's boot chain).
    #[arg(long)]
    pub initrd: Option<std::path::PathBuf>,
    /// The modules tree of --kernel (`lib/modules/<version>`).
    #[arg(long, requires = "kernel")]
    pub modules: Option<std::path::PathBuf>,
    /// An ext4 work seed: the prepared /root every VM's work disk starts from.
    #[arg(long)]
    pub work_seed: Option<std::path::PathBuf>,
}

/// Options of `banger image show`.
#[derive(Debug, Args)]
pub struct ImageShowArgs {
    /// The image's name.
    pub name: ImageName,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `banger image delete`.
#[derive(Debug, Args)]
pub struct ImageDeleteArgs {
    /// The image's name.
    pub name: ImageName,
    /// Delete even while VMs use it; those VMs will no longer start.
    #[arg(long)]
    pub force: bool,
}

/// An image name.
#[derive(Debug, Args)]
pub struct ImageNameArg {
    /// The image's name.
    pub name: ImageName,
}

/// Parses sizes such as `512M`, `4G`, `4GiB` or a plain byte count.
pub fn parse_size(text: &str) -> Result<u64, SizeParseError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().map_err(|_| SizeParseError::NotASize {
        text: text.to_owned(),
    })?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(SizeParseError::UnknownUnit {
                text: text.to_owned(),
                unit: unit.trim().to_owned(),
            });
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| SizeParseError::TooLarge {
            text: text.to_owned(),
        })
}

/// A `--memory` or `--size` value that [`parse_memory`] or [`parse_size`]
/// refused (clap shows it after the option's name).
#[derive(Debug, thiserror::Error)]
pub enum SizeParseError {
    /// No leading number.
    #[error("{text:?} is not a size; use e.g. 512M, 4G or 10G")]
    NotASize {
        /// The value given.
        text: String,
    },
    /// A suffix other than B, K, M, G, T (with optional B or iB).
    #[error("{text:?} has an unknown unit; use K, M, G or T")]
    UnknownUnit {
        /// The value given.
        text: String,
        /// Its suffix.
        unit: String,
    },
    /// More bytes than fit in 64 bits (or MiB in 32 bits, for memory).
    #[error("{text:?} is too large")]
    TooLarge {
        /// The value given.
        text: String,
    },
}

/// `banger kernel ...`
#[derive(Debug, Subcommand)]
pub enum KernelCommand {
    /// List installed kernels, or with --available the catalog.
    List(KernelListArgs),
    /// Install a kernel from the catalog (see `kernel list --available`).
    Pull(KernelNameArg),
    /// Show an installed kernel.
    Show(KernelShowArgs),
    /// Delete an installed kernel (refused while an image uses it).
    Delete(KernelNameArg),
    /// Import a kernel file from this host.
    Import(KernelImportArgs),
    /// Remove the installed kernels no image uses (keeps the catalog's default kernel unless --all) and say how much space came back.
    Prune(PruneArgs),
}

/// Options of `banger kernel list`.
#[derive(Debug, Args)]
pub struct KernelListArgs {
    /// List the catalog instead of installed kernels.
    #[arg(long)]
    pub available: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A kernel name.
#[derive(Debug, Args)]
pub struct KernelNameArg {
    /// The kernel's name.
    pub name: KernelName,
}

/// Options of `banger kernel show`.
#[derive(Debug, Args)]
pub struct KernelShowArgs {
    /// The kernel's name.
    pub name: KernelName,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `banger kernel import`.
#[derive(Debug, Args)]
pub struct KernelImportArgs {
    /// Name to install it under.
    #[arg(long)]
    pub name: KernelName,
    /// A bzImage or ELF vmlinux.
    #[arg(long)]
    pub kernel: std::path::PathBuf,
    /// Its modules tree (a `lib/modules/<version>` directory), if it has modules.
    #[arg(long)]
    pub modules: Option<std::path::PathBuf>,
}

/// `banger daemon ...`
#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Show the daemon's pid, version, paths, listeners and uptime (starts it if needed).
    Status(JsonFlag),
    /// Start the daemon if it is not running.
    Start,
    /// Stop the daemon gracefully and wait until it has exited.
    Stop,
    /// Print the path of the daemon's API socket.
    Socket,
    /// Run an integrity check of the state database.
    Check(JsonFlag),
    /// Follow the daemon's live events (VM records, state changes, stats, create/build/pull progress, sessions) as NDJSON, one event per line, until the daemon stops or this client falls behind.
    Events,
}

/// `banger config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration and where each value came from.
    Show(JsonFlag),
    /// Print the path of config.toml.
    Path,
}

/// Options of `banger doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A lone `--json` flag.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
