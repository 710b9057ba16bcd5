//! `banger mcp install`: the server's entry in a coding agent's MCP
//! configuration, merged into the existing file without touching other
//! entries (or printed).
//!
//! - Claude Code: the project's `.mcp.json`, `mcpServers.banger`
//!   (`type: stdio`), the format `claude mcp add --scope project` writes.
//! - opencode: the project's `opencode.json`, `mcp.banger`
//!   (`type: local`, `command` as one array).
//! - Codex: `$CODEX_HOME/config.toml` (default `~/.codex/config.toml`),
//!   table `[mcp_servers.banger]`, edited with toml_edit so comments and
//!   layout stay.
//!
//! JSON files are rewritten pretty-printed (keys sorted); files are
//! replaced atomically and keep their permissions.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

/// A coding agent whose configuration can hold the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// Claude Code.
    Claude,
    /// opencode.
    Opencode,
    /// OpenAI Codex CLI.
    Codex,
}

/// The name of the server's entry in every client's configuration.
pub const ENTRY_NAME: &str = "banger";

/// How the client starts the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The `banger` executable, absolute.
    pub command: PathBuf,
    /// Its arguments (`mcp`, then the server's options).
    pub args: Vec<String>,
}

/// Why the configuration could not be written.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The existing file could not be read.
    #[error("cannot read the MCP configuration")]
    Read(#[source] std::io::Error),
    /// The existing JSON file does not parse.
    #[error(
        "{path} is not valid JSON (comments are not supported); add the entry by hand, see `banger mcp install --print`"
    )]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The existing TOML file does not parse.
    #[error("{path} is not valid TOML")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: toml_edit::TomlError,
    },
    /// A key that must hold a table holds something else.
    #[error(
        "{key} in {path} is not an object/table; add the entry by hand, see `banger mcp install --print`"
    )]
    NotATable {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// The new file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What [`install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The file written.
    pub path: PathBuf,
    /// Whether an earlier `banger` entry was replaced.
    pub replaced: bool,
}

impl Client {
    /// The configuration file: in `project` for Claude Code and opencode,
    /// in `codex_home` (`$CODEX_HOME`, default `~/.codex`) for Codex.
    pub fn config_path(self, project: &Path, codex_home: &Path) -> PathBuf {
        match self {
            Self::Claude => project.join(".mcp.json"),
            Self::Opencode => project.join("opencode.json"),
            Self::Codex => codex_home.join("config.toml"),
        }
    }

    /// `existing` (the file's text, if it exists) with the server's entry
    /// set; whether an entry was replaced.
    pub fn merge(
        self,
        path: &Path,
        existing: Option<&str>,
        launch: &Launch,
    ) -> Result<(String, bool), InstallError> {
        match self {
            Self::Claude => merge_json(path, existing, "mcpServers", claude_entry(launch), None),
            Self::Opencode => merge_json(
                path,
                existing,
                "mcp",
                opencode_entry(launch),
                Some(("$schema", json!("https://opencode.ai/config.json"))),
            ),
            Self::Codex => merge_toml(path, existing, launch),
        }
    }
}

fn claude_entry(launch: &Launch) -> Value {
    json!({
        "type": "stdio",
        "command": launch.command.display().to_string(),
        "args": launch.args,
        "env": {},
    })
}

fn opencode_entry(launch: &Launch) -> Value {
    let mut command = vec![launch.command.display().to_string()];
    command.extend(launch.args.iter().cloned());
    json!({
        "type": "local",
        "command": command,
        "enabled": true,
    })
}

fn merge_json(
    path: &Path,
    existing: Option<&str>,
    section: &str,
    entry: Value,
    new_file_header: Option<(&str, Value)>,
) -> Result<(String, bool), InstallError> {
    let not_a_table = |key: &str| InstallError::NotATable {
        path: path.to_owned(),
        key: key.to_owned(),
    };
    let mut document = match existing.filter(|text| !text.trim().is_empty()) {
        Some(text) => serde_json::from_str::<Value>(text).map_err(|source| InstallError::Json {
            path: path.to_owned(),
            source,
        })?,
        None => {
            let mut document = Map::new();
            if let Some((key, value)) = new_file_header {
                document.insert(key.to_owned(), value);
            }
            Value::Object(document)
        }
    };
    let root = document
        .as_object_mut()
        .ok_or_else(|| not_a_table("the top level"))?;
    let servers = root
        .entry(section)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| not_a_table(section))?;
    let replaced = servers.insert(ENTRY_NAME.to_owned(), entry).is_some();
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    Ok((text, replaced))
}

fn merge_toml(
    path: &Path,
    existing: Option<&str>,
    launch: &Launch,
) -> Result<(String, bool), InstallError> {
    let mut document: toml_edit::DocumentMut =
        existing
            .unwrap_or_default()
            .parse()
            .map_err(|source| InstallError::Toml {
                path: path.to_owned(),
                source,
            })?;
    let servers = document
        .entry("mcp_servers")
        .or_insert_with(|| {
            let mut table = toml_edit::Table::new();
            // No empty `[mcp_servers]` header, only `[mcp_servers.banger]`.
            table.set_implicit(true);
            toml_edit::Item::Table(table)
        })
        .as_table_mut()
        .ok_or_else(|| InstallError::NotATable {
            path: path.to_owned(),
            key: "mcp_servers".to_owned(),
        })?;
    let mut entry = toml_edit::Table::new();
    entry.insert(
        "command",
        toml_edit::value(launch.command.display().to_string()),
    );
    let args: toml_edit::Array = launch.args.iter().map(String::as_str).collect();
    entry.insert("args", toml_edit::value(args));
    let replaced = servers
        .insert(ENTRY_NAME, toml_edit::Item::Table(entry))
        .is_some();
    Ok((document.to_string(), replaced))
}

/// Merges the entry into `client`'s file at `path` (created with its
/// directory when missing) and replaces the file atomically.
pub fn install(client: Client, path: &Path, launch: &Launch) -> Result<Installed, InstallError> {
    let existing = match fs_err::read_to_string(path) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(InstallError::Read(error)),
    };
    let (text, replaced) = client.merge(path, existing.as_deref(), launch)?;
    write_atomically(path, text.as_bytes())?;
    Ok(Installed {
        path: path.to_owned(),
        replaced,
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let write_error = |source| InstallError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs_err::create_dir_all(dir).map_err(write_error)?;
    let mode = fs_err::metadata(path).map_or(0o644, |metadata| metadata.permissions().mode());
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(write_error)?;
    std::io::Write::write_all(&mut file, bytes).map_err(write_error)?;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
        .map_err(write_error)?;
    file.persist(path)
        .map_err(|error| write_error(error.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> Launch {
        Launch {
            command: PathBuf::from("/usr/local/bin/banger"),
            args: vec!["mcp".into(), "--allow-path".into(), "/src".into()],
        }
    }

    #[test]
    fn claude_keeps_other_servers_and_settings() {
        let temp = tempfile::tempdir().unwrap();
        let path = Client::Claude.config_path(temp.path(), Path::new("/unused"));
        fs_err::write(
            &path,
            r#"{"mcpServers": {"other": {"command": "other-server"}}, "extra": [1, 2]}"#,
        )
        .unwrap();
        let installed = install(Client::Claude, &path, &launch()).unwrap();
        assert!(!installed.replaced);
        let value: Value = serde_json::from_str(&fs_err::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            value,
            json!({
                "mcpServers": {
                    "other": {"command": "other-server"},
                    "banger": {
                        "type": "stdio",
                        "command": "/usr/local/bin/banger",
                        "args": ["mcp", "--allow-path", "/src"],
                        "env": {}
                    }
                },
                "extra": [1, 2]
            })
        );
        // Installing again replaces only our entry.
        assert!(install(Client::Claude, &path, &launch()).unwrap().replaced);
    }

    #[test]
    fn opencode_new_file_gets_its_schema_and_an_existing_one_its_keys() {
        let temp = tempfile::tempdir().unwrap();
        let path = Client::Opencode.config_path(temp.path(), Path::new("/unused"));
        install(Client::Opencode, &path, &launch()).unwrap();
        let value: Value = serde_json::from_str(&fs_err::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(value["$schema"], "https://opencode.ai/config.json");
        assert_eq!(
            value["mcp"]["banger"],
            json!({
                "type": "local",
                "command": ["/usr/local/bin/banger", "mcp", "--allow-path", "/src"],
                "enabled": true
            })
        );

        fs_err::write(
            &path,
            r#"{"model": "x/y", "mcp": {"git": {"type": "local", "command": ["git-mcp"]}}}"#,
        )
        .unwrap();
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        install(Client::Opencode, &path, &launch()).unwrap();
        let value: Value = serde_json::from_str(&fs_err::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(value["model"], "x/y");
        assert_eq!(value["mcp"]["git"]["command"], json!(["git-mcp"]));
        assert_eq!(value["mcp"]["banger"]["type"], "local");
        assert!(
            value.get("$schema").is_none(),
            "existing files are not re-headed"
        );
        let mode = fs_err::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "permissions kept");
    }

    #[test]
    fn codex_keeps_comments_and_other_tables() {
        let temp = tempfile::tempdir().unwrap();
        let path = Client::Codex.config_path(Path::new("/unused"), &temp.path().join(".codex"));
        // A missing file and directory are created.
        install(Client::Codex, &path, &launch()).unwrap();
        insta::assert_snapshot!(fs_err::read_to_string(&path).unwrap(), @r#"
        [mcp_servers.banger]
        command = "/usr/local/bin/banger"
        args = ["mcp", "--allow-path", "/src"]
        "#);

        fs_err::write(
            &path,
            "# my settings\nmodel = \"o3\" # favourite\n\n[mcp_servers.docs]\ncommand = \"docs-mcp\"\n\n[mcp_servers.banger]\ncommand = \"old\"\n",
        )
        .unwrap();
        let installed = install(Client::Codex, &path, &launch()).unwrap();
        assert!(installed.replaced);
        insta::assert_snapshot!(fs_err::read_to_string(&path).unwrap(), @r#"
        # my settings
        model = "o3" # favourite

        [mcp_servers.docs]
        command = "docs-mcp"

        [mcp_servers.banger]
        command = "/usr/local/bin/banger"
        args = ["mcp", "--allow-path", "/src"]
        "#);
    }

    #[test]
    fn files_that_cannot_be_merged_are_left_alone() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join(".mcp.json");
        fs_err::write(&path, "// a comment\n{}").unwrap();
        assert!(matches!(
            install(Client::Claude, &path, &launch()),
            Err(InstallError::Json { .. })
        ));
        fs_err::write(&path, r#"{"mcpServers": []}"#).unwrap();
        assert!(matches!(
            install(Client::Claude, &path, &launch()),
            Err(InstallError::NotATable { .. })
        ));
        assert_eq!(
            fs_err::read_to_string(&path).unwrap(),
            r#"{"mcpServers": []}"#
        );
        let toml = temp.path().join("config.toml");
        fs_err::write(&toml, "mcp_servers = 3\n").unwrap();
        assert!(matches!(
            install(Client::Codex, &toml, &launch()),
            Err(InstallError::NotATable { .. })
        ));
    }
}
