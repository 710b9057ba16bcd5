//! `banger config show|path`: the effective configuration, computed exactly
//! as the daemon computes it.

use std::process::ExitCode;

use banger_config::{LoadedConfig, Paths};

use crate::args::ConfigCommand;
use crate::output;

pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env()?;
    match command {
        ConfigCommand::Path => output::line(&paths.config_file().display().to_string())?,
        ConfigCommand::Show(flags) => {
            let loaded = LoadedConfig::load(&paths)?;
            if flags.json {
                output::json(&serde_json::json!({
                    "file": loaded.file,
                    "file_exists": loaded.file_exists,
                    "entries": loaded.entries(),
                }))?;
            } else {
                let mut rows = vec![vec![
                    "KEY".to_owned(),
                    "VALUE".to_owned(),
                    "SOURCE".to_owned(),
                ]];
                rows.extend(loaded.entries().into_iter().map(|entry| {
                    vec![entry.key.to_owned(), entry.value, entry.source.to_string()]
                }));
                output::line(&output::sanitize(&output::table(&rows)))?;
                if !loaded.file_exists {
                    eprintln!(
                        "note: {} does not exist; all values are defaults or environment overrides",
                        loaded.file.display()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
