//! The `bangerd` binary: claims the instance lock, binds the socket, opens
//! the database and serves the API until asked to stop.
//!
//! Users rarely start it by hand; `banger` starts it on first use.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use banger_config::{LoadedConfig, Paths};
use bangerd::api::peer::{OwnerUid, PeerCredentials};
use bangerd::listener::{BoundSocket, InstanceLock, StateLock};
use bangerd::state::AppState;
use bangerd::store::Store;
use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// The banger daemon. Normally started by `banger` on first use; it serves
/// the HTTP+JSON API on `$XDG_RUNTIME_DIR/banger/bangerd.sock`.
#[derive(Debug, Parser)]
#[command(name = "bangerd", version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the OpenAPI document of the daemon API and exit.
    Openapi,
    /// Internal: copy a VM's serial console from stdin into a size-capped
    /// log file (started by bangerd for each VM; outlives the daemon).
    #[command(hide = true, disable_help_flag = true)]
    ConsoleCopier {
        /// Arguments for the copier (`--path FILE --max-bytes N`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// Serves the web UI when `web_listen_addr` is set. A failure to bind is
/// logged, not fatal: the daemon works without the UI, as without DNS.
async fn start_web(state: &AppState) -> Option<banger_web::WebServer> {
    let config = state.config();
    let addr = config.web_listen_addr?;
    match banger_web::WebServer::start(addr, config.web_allow_remote, state.paths().socket()).await
    {
        Ok(server) => {
            state.set_web_url(server.login_url());
            Some(server)
        }
        Err(error) => {
            tracing::warn!(%addr, error = %bangerd::error::error_chain(&error), "cannot serve the web UI");
            None
        }
    }
}

/// How long in-flight requests get to finish once a stop is requested.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::ConsoleCopier { args }) = args.command {
        return match banger_vmm::console::copier_main(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!(
                    "bangerd console-copier: error: {}",
                    bangerd::error::error_chain(&error)
                );
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Openapi) = args.command {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        return match stdout
            .write_all(bangerd::api::openapi_json().as_bytes())
            .and_then(|()| stdout.flush())
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("bangerd: error: cannot write the OpenAPI document: {error}");
                ExitCode::FAILURE
            }
        };
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "bangerd failed");
            eprintln!("bangerd: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    // Everything the daemon creates (database, logs, keys) is owner-only.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let paths = Paths::from_env()?;
    // A runtime dir too long for the API socket is refused with the fix
    // before anything is created.
    paths.check_socket_path()?;
    let loaded = LoadedConfig::load(&paths)?;
    // A web UI on the network is refused before anything is created.
    if let Some(addr) = loaded.config.web_listen_addr {
        banger_web::check_listen_addr(addr, loaded.config.web_allow_remote)?;
    }
    paths.prepare_state_dir()?;
    let lock = InstanceLock::acquire(&paths)?;
    // One daemon per state dir too, whatever its runtime dir: taken before
    // the log, the database or the host is touched; released when run()
    // returns, after the runtime and every task using the state are gone.
    let _state_lock = StateLock::acquire(&paths, &lock)?;
    bangerd::logging::init(&paths.log_file(), loaded.config.log_level.as_str())?;
    let store = Store::open(&paths.database(), &paths.state_dir)?;
    let mut socket = BoundSocket::bind(&paths, &lock)?;
    let listener = socket
        .take_listener()
        .context("socket listener already taken")?;
    tracing::info!(
        pid = std::process::id(),
        version = banger_api::VERSION,
        socket = %socket.path().display(),
        database = %store.path().display(),
        "bangerd started"
    );
    let max_vm_name = paths.max_vm_name_for_sockets();
    if max_vm_name < banger_api::names::MAX_NAME_LEN {
        tracing::warn!(
            runtime_dir = %paths.runtime_dir.display(),
            max_vm_name,
            "the runtime dir is long: VM names over {max_vm_name} characters are refused (their sockets would not fit in a Unix socket address); set BANGER_RUNTIME_DIR to a shorter directory to allow longer names"
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(listener, paths, loaded, store))?;
    drop(socket);
    drop(lock);
    tracing::info!("bangerd stopped");
    Ok(())
}

async fn serve(
    listener: std::os::unix::net::UnixListener,
    paths: Paths,
    loaded: LoadedConfig,
    store: Store,
) -> anyhow::Result<()> {
    let listener =
        tokio::net::UnixListener::from_std(listener).context("cannot register the socket")?;
    let listener =
        bangerd::listener::DeadlineListener::new(listener, bangerd::listener::HEADER_READ_TIMEOUT);
    let (shutdown_sender, mut shutdown) = watch::channel(false);
    let host = bangerd::host::Host::setup(&loaded.config).await;
    let state = AppState::new(paths, loaded.config, store, host, shutdown_sender.clone());
    bangerd::dns::start(&state).await;
    bangerd::vms::recover(&state).await;
    bangerd::vms::finish_interrupted(&state).await;
    bangerd::images::recover(state.paths());
    tokio::spawn(bangerd::vms::monitor_loop(state.clone()));
    tokio::spawn(bangerd::vms::agent::poll_loop(state.clone()));
    let _web = start_web(&state).await;
    let owner = OwnerUid(rustix::process::getuid().as_raw());
    let stopping = state.clone();
    let app = bangerd::api::router(state, owner);

    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
        shutdown_sender.send_replace(true);
    });

    let mut stop_requested = shutdown.clone();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<PeerCredentials>(),
    )
    .with_graceful_shutdown(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    });
    let drain_deadline = async move {
        let _ = stop_requested.wait_for(|stop| *stop).await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        result = server => result.context("API server failed")?,
        () = drain_deadline => tracing::warn!("clients did not disconnect within {DRAIN_TIMEOUT:?}; stopping anyway"),
    }
    bangerd::vms::release_spare_taps(&stopping).await;
    Ok(())
}
