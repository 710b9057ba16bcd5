//! `banger system install|status|restart|uninstall`: glue over
//! banger_system. Progress goes to stderr, results to stdout. (`system df`
//! asks the daemon: `space.rs`.)

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use banger_config::install::INSTALL_METADATA_PATH;
use banger_system::status::SystemStatus;
use banger_system::{InstallOptions, UninstallOptions};

use crate::args::SystemCommand;
use crate::output;

pub async fn run(command: SystemCommand) -> anyhow::Result<ExitCode> {
    let metadata = Path::new(INSTALL_METADATA_PATH);
    let mut progress = |line: &str| eprintln!("{}", output::sanitize(line));
    match command {
        SystemCommand::Install(args) => {
            banger_system::require_root("install")?;
            let exe = std::env::current_exe().context("cannot find the running banger binary")?;
            let source_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
            let agent = args
                .agent
                .or_else(|| banger_system::install::find_agent(&source_dir));
            let sudo_user = std::env::var("SUDO_USER").ok();
            let homes: Vec<PathBuf> = sudo_user
                .as_deref()
                .and_then(|user| banger_system::owner::Owner::lookup(user).ok())
                .map(|owner| owner.home)
                .into_iter()
                .chain(std::env::var_os("HOME").map(PathBuf::from))
                .collect();
            let vhost_vsock = args
                .vhost_vsock
                .or_else(|| banger_system::install::find_vhost_vsock(&homes));
            let options = InstallOptions {
                owner: args.owner,
                sudo_user,
                prefix: args.prefix,
                source_dir,
                agent,
                vhost_vsock,
                no_start: args.no_start,
                systemd: banger_system::systemd_is_pid1(),
                shell_files: super::shell::install_files()?,
            };
            let report = banger_system::install(&options, &mut progress)?;
            let owner = &report.owner.name;
            let how = if report.systemd {
                "bangerd-root.service and bangerd.service"
            } else {
                "bangerd-root (detached; no systemd) and bangerd (started by banger on first use)"
            };
            let verb = if report.upgraded {
                "upgraded"
            } else {
                "installed"
            };
            output::line(&format!(
                "banger {} {verb} for {owner}: {how}; check with `banger system status`, then as {owner}: banger vm run --rm -- uname -a",
                banger_system::VERSION
            ))?;
        }
        SystemCommand::Status(args) => {
            let status = banger_system::status(metadata);
            if args.json {
                output::json(&status)?;
            } else {
                output::line(&output::sanitize(&status_table(&status)))?;
            }
            if !status.healthy() {
                return Ok(ExitCode::FAILURE);
            }
        }
        // The daemon's report, not the system install's: see space.rs.
        SystemCommand::Df(args) => return super::space::df(&args).await,
        SystemCommand::Restart => {
            banger_system::require_root("restart")?;
            banger_system::restart(metadata, &mut progress)?;
            output::line("restarted")?;
        }
        SystemCommand::Uninstall(args) => {
            banger_system::require_root("uninstall")?;
            let report = banger_system::uninstall(
                metadata,
                UninstallOptions { purge: args.purge },
                &mut progress,
            )?;
            output::line(&format!(
                "uninstalled; removed {}; kept {}",
                list(&report.removed),
                if report.kept.is_empty() {
                    "nothing".to_owned()
                } else {
                    list(&report.kept)
                }
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

fn status_table(status: &SystemStatus) -> String {
    if !status.installed {
        return format!(
            "not installed ({} does not exist): run `sudo banger system install`",
            status.metadata_path.display()
        );
    }
    let mut rows = Vec::new();
    if let Some(error) = &status.metadata_error {
        rows.push(vec!["metadata".to_owned(), error.clone()]);
    }
    if let Some(owner) = &status.owner {
        rows.push(vec![
            "owner".to_owned(),
            format!("{} (uid {})", owner.name, owner.uid),
        ]);
    }
    if let Some(version) = &status.version {
        rows.push(vec!["installed".to_owned(), version.clone()]);
    }
    if let Some(mode) = status.mode {
        rows.push(vec!["mode".to_owned(), mode.to_owned()]);
    }
    for service in &status.services {
        let mut text = service.state.clone();
        if let Some(pid) = service.pid {
            text.push_str(&format!(" (pid {pid})"));
        }
        text.push_str(&format!(
            ", {} {}",
            service.binary.display(),
            service.binary_version.as_deref().unwrap_or("(no version)")
        ));
        if let Some(matches) = service.matches_installed {
            let word = if matches.is_current() {
                "runs the installed binary"
            } else {
                "runs an older binary"
            };
            text.push_str(&format!(", {word}"));
        }
        if let Some(hint) = &service.hint {
            text.push_str(&format!("; {hint}"));
        }
        rows.push(vec![service.name.to_owned(), text]);
    }
    for socket in &status.sockets {
        rows.push(vec![
            format!("{} socket", socket.name),
            format!(
                "{} ({})",
                socket.path.display(),
                if socket.present { "present" } else { "missing" }
            ),
        ]);
    }
    output::table(&rows)
}
