//! Building the system `ssh` invocation for a VM.
//!
//! The command pins the host key through banger's own known_hosts file and
//! `HostKeyAlias`, so there is never a trust-on-first-use prompt and a
//! changed key is a hard failure. The remote command is shell-quoted
//! argument by argument, because ssh joins its arguments with spaces and
//! the remote login shell parses the result again.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The SSH port of banger guests.
pub const DEFAULT_PORT: u16 = 22;

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Remote user, `root` for banger guests.
    pub user: String,
    /// The VM's address.
    pub ip: Ipv4Addr,
    /// TCP port, [`DEFAULT_PORT`] for banger guests.
    pub port: u16,
    /// The name the host key is pinned under in `known_hosts`
    /// (`HostKeyAlias`), e.g. `devbox.vm`.
    pub alias: String,
    /// The private key file (`ssh -i`); should be an absolute path.
    pub identity: PathBuf,
    /// banger's known_hosts file; should be an absolute path.
    pub known_hosts: PathBuf,
}

/// Whether the session is interactive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtyMode {
    /// A person at a terminal: `-t` (allocate a pseudo-terminal) and no
    /// `BatchMode`, so ssh may still ask the user something if it must.
    Interactive,
    /// Scripted use: `-T` (no pseudo-terminal, stdout/stderr stay separate
    /// and binary-safe) and `BatchMode=yes` (ssh fails instead of prompting).
    Batch,
}

impl TtyMode {
    /// [`TtyMode::Interactive`] if both stdin and stdout are terminals,
    /// [`TtyMode::Batch`] otherwise.
    pub fn detect() -> Self {
        if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
            Self::Interactive
        } else {
            Self::Batch
        }
    }
}

/// Builds `ssh` (from `ssh_program`) connecting to `target` and running
/// `remote_command` (a login shell if empty).
///
/// Options, in order: `-i <identity>`, `IdentitiesOnly=yes`,
/// `UserKnownHostsFile=<known_hosts>`, `GlobalKnownHostsFile=/dev/null`,
/// `StrictHostKeyChecking=yes`, `HostKeyAlias=<alias>`, `CheckHostIP=no`,
/// `UpdateHostKeys=no`, `BatchMode=yes` (batch only), `LogLevel=ERROR`,
/// `ConnectTimeout=10`, `ServerAliveInterval=15`, `-p <port>`, `-t`/`-T`,
/// `--`, `user@ip`, then the remote command as a single shell-quoted
/// string. See `docs/ssh.md` for why each is there.
pub fn ssh_command(
    ssh_program: &Path,
    target: &SshTarget,
    remote_command: &[String],
    tty: TtyMode,
) -> Command {
    let mut command = Command::new(ssh_program);
    let identity_needs_escape = target
        .identity
        .as_os_str()
        .as_encoded_bytes()
        .contains(&b'%');
    if identity_needs_escape {
        // `-i` stats the path before ssh expands `%` tokens in it, so a
        // path with '%' can only be given as an escaped config option.
        command
            .arg("-o")
            .arg(option("IdentityFile", &target.identity));
    } else {
        command.arg("-i").arg(&target.identity);
    }
    command
        .arg("-o")
        .arg("IdentitiesOnly=yes")
        .arg("-o")
        .arg(option("UserKnownHostsFile", &target.known_hosts))
        .arg("-o")
        .arg("GlobalKnownHostsFile=/dev/null")
        .arg("-o")
        .arg("StrictHostKeyChecking=yes")
        .arg("-o")
        .arg(format!("HostKeyAlias={}", target.alias))
        .arg("-o")
        .arg("CheckHostIP=no")
        .arg("-o")
        .arg("UpdateHostKeys=no");
    if tty == TtyMode::Batch {
        command.arg("-o").arg("BatchMode=yes");
    }
    command
        .arg("-o")
        .arg("LogLevel=ERROR")
        .arg("-o")
        .arg("ConnectTimeout=10")
        .arg("-o")
        .arg("ServerAliveInterval=15")
        .arg("-p")
        .arg(target.port.to_string())
        .arg(match tty {
            TtyMode::Interactive => "-t",
            TtyMode::Batch => "-T",
        })
        .arg("--")
        .arg(format!("{}@{}", target.user, target.ip));
    if !remote_command.is_empty() {
        command.arg(remote_command_line(remote_command));
    }
    command
}

/// `Keyword=<path>` for `ssh -o`, escaped for ssh's own parsing: `%` is
/// doubled (ssh expands `%` tokens in file options) and a path with
/// blanks, quotes or backslashes is double-quoted with `\` escapes (ssh
/// splits option values on blanks).
fn option(keyword: &str, path: &Path) -> OsString {
    let raw = path.as_os_str().as_encoded_bytes();
    let mut value: Vec<u8> = Vec::with_capacity(raw.len() + 2);
    let quote = raw
        .iter()
        .any(|b| matches!(b, b' ' | b'\t' | b'"' | b'\'' | b'\\' | b'#'));
    if quote {
        value.push(b'"');
    }
    for &byte in raw {
        match byte {
            b'%' => value.extend_from_slice(b"%%"),
            b'"' | b'\\' if quote => {
                value.push(b'\\');
                value.push(byte);
            }
            _ => value.push(byte),
        }
    }
    if quote {
        value.push(b'"');
    }
    let mut out = OsString::from(format!("{keyword}="));
    out.push(bytes_to_os(value));
    out
}

fn bytes_to_os(bytes: Vec<u8>) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    OsString::from_vec(bytes)
}

/// Joins `args` into one POSIX shell command line that the remote shell
/// splits back into exactly `args`.
pub fn remote_command_line(args: &[String]) -> String {
    args.iter()
        .map(|arg| shell_quote(arg))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes `arg` for a POSIX shell: left alone if it only has characters
/// no shell treats specially, otherwise wrapped in single quotes with each
/// `'` written as `'\''`. The empty string becomes `''`.
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'-' | b'.' | b'/' | b',' | b':' | b'@' | b'%' | b'+'
                )
        });
    if plain {
        return arg.to_owned();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SshTarget {
        SshTarget {
            user: "root".into(),
            ip: Ipv4Addr::new(172, 30, 0, 5),
            port: 22,
            alias: "devbox.vm".into(),
            identity: "/s/ssh/id_ed25519".into(),
            known_hosts: "/s/ssh/known_hosts".into(),
        }
    }

    fn args(command: &Command) -> Vec<String> {
        command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn quoting_table() {
        let table: &[(&str, &str)] = &[
            ("ls", "ls"),
            ("-la", "-la"),
            ("/usr/bin/env", "/usr/bin/env"),
            ("a=b", "'a=b'"),
            ("", "''"),
            ("two words", "'two words'"),
            ("it's", "'it'\\''s'"),
            ("'", "''\\'''"),
            ("\"dq\"", "'\"dq\"'"),
            ("$HOME", "'$HOME'"),
            ("`id`", "'`id`'"),
            ("$(id)", "'$(id)'"),
            ("a;b", "'a;b'"),
            ("a|b&c", "'a|b&c'"),
            ("*", "'*'"),
            ("~", "'~'"),
            ("back\\slash", "'back\\slash'"),
            ("line\nbreak", "'line\nbreak'"),
            ("tab\there", "'tab\there'"),
            ("exit 7", "'exit 7'"),
            ("héllo", "'héllo'"),
        ];
        for (input, quoted) in table {
            assert_eq!(shell_quote(input), *quoted, "quoting {input:?}");
        }
    }

    #[test]
    fn quoting_round_trips_through_sh() {
        let inputs = [
            "plain",
            "",
            "two words",
            "it's \"quoted\"",
            "$HOME `id` $(id) ${x}",
            "a'b'c''",
            "line\nbreak\ttab",
            "back\\slash \\' \\\"",
            "* ? [a] ~ # ! & | ; < > ( )",
        ];
        let args: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        let line = format!("printf '%s\\0' {}", remote_command_line(&args));
        let output = Command::new("sh")
            .arg("-c")
            .arg(&line)
            .output()
            .expect("run sh");
        assert!(output.status.success());
        let got: Vec<&[u8]> = output
            .stdout
            .split(|b| *b == 0)
            .take(inputs.len())
            .collect();
        let want: Vec<&[u8]> = inputs.iter().map(|s| s.as_bytes()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn batch_command_line() {
        let command = ssh_command(
            Path::new("/usr/bin/ssh"),
            &target(),
            &["sh".into(), "-c".into(), "exit 7".into()],
            TtyMode::Batch,
        );
        assert_eq!(command.get_program(), "/usr/bin/ssh");
        assert_eq!(
            args(&command),
            [
                "-i",
                "/s/ssh/id_ed25519",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "UserKnownHostsFile=/s/ssh/known_hosts",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "HostKeyAlias=devbox.vm",
                "-o",
                "CheckHostIP=no",
                "-o",
                "UpdateHostKeys=no",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "ServerAliveInterval=15",
                "-p",
                "22",
                "-T",
                "--",
                "root@172.30.0.5",
                "sh -c 'exit 7'",
            ]
        );
    }

    #[test]
    fn interactive_login_has_tty_and_no_batch_mode() {
        let a = args(&ssh_command(
            Path::new("ssh"),
            &target(),
            &[],
            TtyMode::Interactive,
        ));
        assert!(a.contains(&"-t".to_owned()));
        assert!(!a.contains(&"-T".to_owned()));
        assert!(!a.iter().any(|x| x.starts_with("BatchMode")));
        assert_eq!(a.last().map(String::as_str), Some("root@172.30.0.5"));
    }

    #[test]
    fn paths_are_escaped_for_ssh() {
        let mut t = target();
        t.identity = "/a b/100%/id".into();
        t.known_hosts = "/a b/q\"uo\\te/kh".into();
        let a = args(&ssh_command(Path::new("ssh"), &t, &[], TtyMode::Batch));
        assert_eq!(a[0], "-o");
        assert_eq!(a[1], "IdentityFile=\"/a b/100%%/id\"");
        assert!(a.contains(&"UserKnownHostsFile=\"/a b/q\\\"uo\\\\te/kh\"".to_owned()));
        t.identity = "/plain/with space/id".into();
        let a = args(&ssh_command(Path::new("ssh"), &t, &[], TtyMode::Batch));
        assert_eq!(a[..2], ["-i", "/plain/with space/id"]);
    }
}
