//! `banger daemon status|start|stop|socket|check|events`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use banger_client::DaemonClient;
use banger_config::Paths;

use crate::args::DaemonCommand;
use crate::output;

/// How long `daemon stop` waits for the daemon to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

pub async fn run(command: DaemonCommand) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env()?;
    match command {
        DaemonCommand::Socket => {
            output::line(&paths.socket().display().to_string())?;
        }
        DaemonCommand::Start => {
            let client = super::connect(&paths).await?;
            let status = client.status().await?;
            eprintln!("bangerd is running (pid {})", status.pid);
        }
        DaemonCommand::Status(flags) => {
            let client = super::connect(&paths).await?;
            let status = client.status().await?;
            if flags.json {
                output::json(&status)?;
            } else {
                let listener = |listener: &banger_api::daemon::ListenerStatus| {
                    format!(
                        "{}{}",
                        listener.listen_addr,
                        if listener.listen_addr.is_empty() {
                            "disabled"
                        } else if listener.serving {
                            ""
                        } else {
                            " (not served)"
                        }
                    )
                };
                let rows = vec![
                    vec!["pid".to_owned(), status.pid.to_string()],
                    vec!["version".to_owned(), status.version.clone()],
                    vec!["socket".to_owned(), status.socket.clone()],
                    vec!["log file".to_owned(), status.log_file.clone()],
                    vec!["state dir".to_owned(), status.state_dir.clone()],
                    vec!["database".to_owned(), status.database.clone()],
                    vec!["dns".to_owned(), listener(&status.dns)],
                    vec!["web".to_owned(), listener(&status.web)],
                    vec![
                        "web url".to_owned(),
                        status.web_url.clone().unwrap_or_else(|| "-".to_owned()),
                    ],
                    vec!["uptime".to_owned(), output::duration(status.uptime_secs)],
                ];
                output::line(&output::sanitize(&output::table(&rows)))?;
            }
        }
        DaemonCommand::Stop => stop(&paths).await?,
        DaemonCommand::Events => {
            let client = super::connect(&paths).await?;
            let mut events = client.events().await?;
            while let Some(event) = events.next_event().await? {
                output::json_line(&event)?;
                if let banger_api::events::EventKind::Lagged { missed } = event.event {
                    anyhow::bail!(
                        "missed {missed} events by reading too slowly; the daemon ended the stream (run it again to follow from now)"
                    );
                }
            }
        }
        DaemonCommand::Check(flags) => {
            let client = super::connect(&paths).await?;
            let report = client.check().await?;
            if flags.json {
                output::json(&report)?;
            } else if report.ok {
                output::line(&format!(
                    "ok: {} (schema version {})",
                    report.database, report.schema_version
                ))?;
            } else {
                for problem in &report.problems {
                    output::line(&output::sanitize(problem))?;
                }
            }
            if !report.ok {
                eprintln!(
                    "error: the database {} failed its integrity check",
                    report.database
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn stop(paths: &Paths) -> anyhow::Result<()> {
    let client = DaemonClient::new(paths.socket());
    let reply = match client.stop(Some("banger daemon stop".to_owned())).await {
        Ok(reply) => reply,
        Err(error) if error.is_not_running() => {
            eprintln!("bangerd is not running");
            return Ok(());
        }
        Err(error) => return Err(error).context("cannot ask bangerd to stop"),
    };
    let started = Instant::now();
    while started.elapsed() < STOP_TIMEOUT {
        let socket_gone = !paths.socket().exists();
        let process_gone = !std::path::Path::new(&format!("/proc/{}", reply.pid)).exists();
        if socket_gone && process_gone {
            eprintln!("bangerd (pid {}) stopped", reply.pid);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!(
        "bangerd (pid {}) did not exit within {STOP_TIMEOUT:?}; see {}",
        reply.pid,
        paths.log_file().display()
    )
}
