//! `bangerd-root [--metadata PATH]`: the root helper's entry point.
//!
//! Loads the install metadata (root-owned; default
//! `/etc/banger/install.toml`), opens the network operations in this
//! process's network namespace, makes the socket the metadata names and
//! serves until SIGTERM or SIGINT, then removes its socket. Logs go to
//! stderr (the journal under systemd); `RUST_LOG` filters them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use banger_config::InstallMetadata;
use banger_config::install::INSTALL_METADATA_PATH;
use banger_host::privileged::InProcessOps;
use bangerd_root::{Policy, serve, socket};
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: bangerd-root [--metadata PATH] | --version\n\n\
Serves banger's privileged network operations to the installed owner on the\n\
socket named in the install metadata (default /etc/banger/install.toml).\n\
Started by `sudo banger system install`; see docs/privileges.md.";

/// What the command line asked for.
enum Command {
    Serve { metadata: PathBuf },
    Version,
    Help,
}

fn parse_args() -> anyhow::Result<Command> {
    let mut metadata = PathBuf::from(INSTALL_METADATA_PATH);
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--version" | "-V") => return Ok(Command::Version),
            Some("--help" | "-h") => return Ok(Command::Help),
            Some("--metadata") => {
                metadata = args
                    .next()
                    .map(PathBuf::from)
                    .context("--metadata needs a path")?;
            }
            _ => bail!("unexpected argument {arg:?}\n\n{USAGE}"),
        }
    }
    Ok(Command::Serve { metadata })
}

fn main() -> anyhow::Result<ExitCode> {
    let metadata_path = match parse_args()? {
        Command::Version => {
            #[allow(clippy::print_stdout, reason = "--version prints to stdout")]
            {
                println!("bangerd-root {}", env!("CARGO_PKG_VERSION"));
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Help => {
            #[allow(clippy::print_stdout, reason = "--help prints to stdout")]
            {
                println!("{USAGE}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Serve { metadata } => metadata,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // The journal (or a log file) gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if !rustix::process::geteuid().is_root() {
        bail!("bangerd-root must run as root (it is started by `sudo banger system install`)");
    }
    let metadata = InstallMetadata::load(&metadata_path, 0)?;
    let policy = Policy::from_metadata(&metadata)?;
    // One thread: the network operations check that they run in the
    // namespace they were opened in, and the load is a few calls a minute.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(metadata, policy))?;
    Ok(ExitCode::SUCCESS)
}

async fn run(metadata: InstallMetadata, policy: Policy) -> anyhow::Result<()> {
    let ops = Arc::new(InProcessOps::new().context("cannot open the network operations")?);
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let (listener, file) = socket::bind(
        &metadata.root_socket,
        metadata.owner_uid,
        metadata.owner_gid,
    )?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        socket = %file.path().display(),
        owner = metadata.owner_uid,
        bridge = %policy.bridge,
        "bangerd-root serving"
    );
    tokio::select! {
        () = serve(listener, policy, ops) => {}
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
        _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
    }
    file.remove()?;
    Ok(())
}
