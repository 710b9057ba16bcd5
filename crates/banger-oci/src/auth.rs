//! Registry credentials from Docker's client config (`~/.docker/config.json`,
//! or `$DOCKER_CONFIG/config.json`): `auths` entries (base64 `user:password`)
//! and credential helpers (`credHelpers` per registry, `credsStore` for all),
//! run as `docker-credential-<helper> get` with the registry on stdin.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use crate::reference::DOCKER_HUB;

/// A user name and password (or token) for basic auth and token requests.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The config file exists but cannot be read.
    #[error("cannot read the Docker config {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not the expected JSON.
    #[error("the Docker config {path} is not valid")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// An `auths` entry's `auth` is not base64 of `user:password`.
    #[error("the Docker config {path}: the `auth` of {registry} is not base64 of user:password")]
    BadAuth {
        /// The file.
        path: PathBuf,
        /// The registry key.
        registry: String,
    },
    /// A helper name holds characters that cannot be part of a program name.
    #[error("the Docker config {path}: credential helper {helper:?} is not a valid helper name")]
    BadHelper {
        /// The file.
        path: PathBuf,
        /// The helper name.
        helper: String,
    },
    /// The helper could not run or failed.
    #[error("credential helper docker-credential-{helper} failed for {registry}: {detail}")]
    Helper {
        /// The helper name.
        helper: String,
        /// The registry.
        registry: String,
        /// Exit status and stderr.
        detail: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HelperReply {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Where Docker's client config is: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|dir| !dir.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

/// `host[:port]` of an `auths` key, which may be a URL such as
/// `https://index.docker.io/v1/`.
fn key_host(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// Whether config key `key` names `registry` (Docker Hub has several names).
fn matches(key: &str, registry: &str) -> bool {
    let host = key_host(key);
    if registry == DOCKER_HUB {
        matches!(
            host,
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        )
    } else {
        host == registry
    }
}

fn valid_helper(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.')
}

/// Credentials for `registry` (as written in references, e.g. `docker.io`,
/// `ghcr.io`, `127.0.0.1:5000`) from the config at `path`; `None` when the
/// file does not exist or has nothing for it (anonymous access).
pub fn credentials_for(path: &Path, registry: &str) -> Result<Option<Credentials>, AuthError> {
    lookup(path, registry, "docker-credential-")
}

/// [`credentials_for`] with helpers run as `<program_prefix><helper>`.
fn lookup(
    path: &Path,
    registry: &str,
    program_prefix: &str,
) -> Result<Option<Credentials>, AuthError> {
    let text = match fs_err::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AuthError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let config: DockerConfig = serde_json::from_str(&text).map_err(|source| AuthError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let helper = config
        .cred_helpers
        .iter()
        .find(|(key, _)| matches(key, registry))
        .map(|(_, helper)| helper.clone());
    if let Some(helper) = helper {
        return run_helper(path, &helper, registry, program_prefix);
    }
    if let Some((key, entry)) = config.auths.iter().find(|(key, _)| matches(key, registry)) {
        if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            }));
        }
        if let Some(auth) = entry.auth.as_deref().filter(|auth| !auth.is_empty()) {
            let bad = || AuthError::BadAuth {
                path: path.to_owned(),
                registry: key.clone(),
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad())?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
            let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
            return Ok(Some(Credentials {
                username: username.to_owned(),
                password: password.to_owned(),
            }));
        }
        // An entry without `auth` means "ask the credsStore" (Docker Desktop).
    }
    match config.creds_store {
        Some(store) if !store.is_empty() => run_helper(path, &store, registry, program_prefix),
        _ => Ok(None),
    }
}

/// Runs `docker-credential-<helper> get`; "credentials not found" is no credentials.
fn run_helper(
    path: &Path,
    helper: &str,
    registry: &str,
    program_prefix: &str,
) -> Result<Option<Credentials>, AuthError> {
    if !valid_helper(helper) {
        return Err(AuthError::BadHelper {
            path: path.to_owned(),
            helper: helper.to_owned(),
        });
    }
    let failed = |detail: String| AuthError::Helper {
        helper: helper.to_owned(),
        registry: registry.to_owned(),
        detail,
    };
    let server = if registry == DOCKER_HUB {
        "https://index.docker.io/v1/"
    } else {
        registry
    };
    let mut child = Command::new(format!("{program_prefix}{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| failed(format!("cannot run it: {error}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|error| failed(format!("cannot write to it: {error}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| failed(format!("cannot wait for it: {error}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(failed(format!(
            "{}: {}",
            output.status,
            format!("{} {}", stdout.trim(), stderr.trim()).trim()
        )));
    }
    let reply: HelperReply = serde_json::from_str(&stdout)
        .map_err(|error| failed(format!("unexpected reply: {error}")))?;
    Ok(Some(Credentials {
        username: reply.username,
        password: reply.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("config.json");
        fs_err::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_auths_for_hosts_and_docker_hub() {
        let dir = tempfile::tempdir().unwrap();
        // "alice:s3cr:et" and "bob:pw"
        let path = write(
            dir.path(),
            r#"{"auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6czNjcjpldA=="},
                "https://index.docker.io/v1/":{"auth":"Ym9iOnB3"}}}"#,
        );
        let creds = credentials_for(&path, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("alice", "s3cr:et")
        );
        let hub = credentials_for(&path, "docker.io").unwrap().unwrap();
        assert_eq!(hub.username, "bob");
        assert!(credentials_for(&path, "ghcr.io").unwrap().is_none());
        assert!(!format!("{creds:?}").contains("s3cr"));
    }

    #[test]
    fn missing_file_is_anonymous_and_bad_entries_are_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            credentials_for(&dir.path().join("nope.json"), "x.io")
                .unwrap()
                .is_none()
        );
        let path = write(dir.path(), r#"{"auths":{"x.io":{"auth":"!!!"}}}"#);
        let error = credentials_for(&path, "x.io").unwrap_err();
        assert!(error.to_string().contains("x.io"), "{error}");
        let path = write(dir.path(), r#"{"credHelpers":{"x.io":"../evil"}}"#);
        assert!(matches!(
            credentials_for(&path, "x.io").unwrap_err(),
            AuthError::BadHelper { .. }
        ));
    }

    #[test]
    fn runs_credential_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs_err::create_dir(&bin).unwrap();
        let helper = bin.join("docker-credential-banger-test");
        banger_testkit::write_executable(
            &helper,
            "#!/bin/sh\nread server\n[ \"$1\" = get ] || exit 2\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"carol\",\"Secret\":\"tok-%s\"}' \"$server\" \"$server\"\n",
        );
        let path = write(
            dir.path(),
            r#"{"credHelpers":{"reg.example:443":"banger-test"}}"#,
        );
        let prefix = format!("{}/docker-credential-", bin.display());
        let creds = lookup(&path, "reg.example:443", &prefix).unwrap().unwrap();
        assert_eq!(creds.username, "carol");
        assert_eq!(creds.password, "tok-reg.example:443");
    }
}
