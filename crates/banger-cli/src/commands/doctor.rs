//! `banger doctor`: the host checklist. Exits non-zero when a check fails.

use std::process::ExitCode;

use banger_config::{LoadedConfig, Paths};
use banger_host::doctor::{self, Status};

use crate::args::DoctorArgs;
use crate::output;

pub fn run(args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env()?;
    let (config, config_problem) = match LoadedConfig::load(&paths) {
        Ok(loaded) => (loaded.config, None),
        Err(error) => {
            // Check the rest with defaults; the config line fails.
            let defaults = LoadedConfig::from_parts(&paths, None, &|_| None)?;
            (
                defaults.config,
                Some(doctor::config_failure(
                    format!("{:#}", anyhow::Error::from(error)),
                    &paths.config_file(),
                )),
            )
        }
    };
    let mut checks: Vec<doctor::Check> = config_problem.into_iter().collect();
    checks.extend(doctor::run(&paths, &config));
    if args.json {
        output::json(&serde_json::json!({ "ok": !doctor::any_failed(&checks), "checks": checks }))?;
    } else {
        let mut lines = Vec::new();
        for check in &checks {
            let label = match check.status {
                Status::Pass => "pass",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            lines.push(format!("{label}  {:<20} {}", check.name, check.detail));
            if let Some(fix) = &check.fix {
                lines.push(format!("      {:<20} fix: {fix}", ""));
            }
        }
        output::line(&output::sanitize(&lines.join("\n")))?;
    }
    Ok(if doctor::any_failed(&checks) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
