//! Checking a session's working directory and commands, then spawning it in
//! its own session and process group with a fixed, predictable environment.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use banger_agent_proto::{SESSION_PATH, SessionRefusal, SessionSpec, StdinMode};

/// The environment of every session, besides `PATH` ([`SESSION_PATH`]).
const SESSION_ENV: &[(&str, &str)] = &[
    ("HOME", "/root"),
    ("USER", "root"),
    ("LOGNAME", "root"),
    ("LANG", "C.UTF-8"),
    // Sessions have no terminal: programs must not emit terminal escapes.
    ("TERM", "dumb"),
];

/// Checks the cwd, the program and the required commands, in that order, and
/// returns the program's resolved path.
pub(crate) fn check(spec: &SessionSpec) -> Result<PathBuf, SessionRefusal> {
    let cwd = Path::new(&spec.cwd);
    if !cwd.is_absolute() || !cwd.is_dir() {
        return Err(SessionRefusal::MissingCwd {
            path: spec.cwd.clone(),
        });
    }
    // validate_spec guarantees a non-empty argv.
    let program = spec.argv.first().map(String::as_str).unwrap_or_default();
    let resolved = resolve(program, cwd).ok_or_else(|| SessionRefusal::MissingCommand {
        command: program.to_owned(),
    })?;
    if let Some(missing) = spec
        .require_commands
        .iter()
        .find(|command| resolve(command, cwd).is_none())
    {
        return Err(SessionRefusal::MissingCommand {
            command: missing.clone(),
        });
    }
    Ok(resolved)
}

/// A command containing `/` is a path (relative to `cwd`); otherwise it is
/// looked up on [`SESSION_PATH`], like a shell would with that `PATH`.
pub(crate) fn resolve(command: &str, cwd: &Path) -> Option<PathBuf> {
    if command.contains('/') {
        let path = cwd.join(command);
        return is_executable(&path).then_some(path);
    }
    SESSION_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(command))
        .find(|path| is_executable(path))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Spawns `spec` with stdout and stderr piped, and stdin `/dev/null` or a
/// pipe. The child calls `setsid`, so it leads its own session and process
/// group: signals go to everything it started, and it never gets the agent's
/// controlling terminal.
pub(crate) fn spawn(spec: &SessionSpec, program: &Path) -> std::io::Result<Child> {
    let mut command = Command::new(program);
    command
        .arg0(&spec.argv[0])
        .args(&spec.argv[1..])
        .env_clear()
        .env("PATH", SESSION_PATH)
        .envs(SESSION_ENV.iter().copied())
        .current_dir(&spec.cwd)
        .stdin(match spec.stdin_mode {
            StdinMode::Detached => Stdio::null(),
            StdinMode::Pipe => Stdio::piped(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs between fork and exec and only calls setsid(2),
    // which is async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        command.pre_exec(|| {
            rustix::process::setsid()?;
            Ok(())
        });
    }
    command.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_resolve_on_the_session_path_or_relative_to_cwd() {
        assert!(resolve("sh", Path::new("/")).is_some());
        assert!(resolve("definitely-not-a-command-xyz", Path::new("/")).is_none());
        assert_eq!(
            resolve("bin/sh", Path::new("/")),
            Some(PathBuf::from("/bin/sh"))
        );
        // A directory or a non-executable file is not a command.
        assert!(resolve("/tmp", Path::new("/")).is_none());
        let dir = tempfile::tempdir().expect("tempdir");
        fs_err::write(dir.path().join("data"), "x").expect("write");
        assert!(resolve("./data", dir.path()).is_none());
    }
}
