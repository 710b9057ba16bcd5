//! The `root-helper` check: can a daemon running as this user do VM
//! networking? Root does it in-process; anyone else needs the system
//! install's `bangerd-root`, answering on its socket for this uid.

use std::time::Duration;

use super::Check;
use crate::error_chain;
use crate::root_helper::{self, LocateError};

/// How long the helper may take to answer `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(3);

const INSTALL_FIX: &str = "sudo banger system install (or run bangerd as root)";

/// The check for a user without `CAP_NET_ADMIN`.
pub(super) fn check() -> Check {
    let uid = rustix::process::geteuid().as_raw();
    verdict(root_helper::locate(), uid)
}

fn verdict(location: Result<root_helper::HelperLocation, LocateError>, uid: u32) -> Check {
    let location = match location {
        Ok(location) => location,
        Err(LocateError::NotInstalled { path }) => {
            return Check::fail(
                "root-helper",
                format!(
                    "not root and banger is not installed system-wide ({} is missing): bangerd cannot create its bridge and TAP devices",
                    path.display()
                ),
                INSTALL_FIX,
            );
        }
        Err(error) => return Check::fail("root-helper", error_chain(&error), INSTALL_FIX),
    };
    match root_helper::hello_blocking(&location.socket, HELLO_TIMEOUT) {
        Ok(hello) if hello.owner_uid == uid => Check::pass(
            "root-helper",
            format!(
                "bangerd-root {} answers on {} for uid {uid} (bridge {})",
                hello.version,
                location.socket.display(),
                hello.bridge
            ),
        ),
        Ok(hello) => Check::fail(
            "root-helper",
            format!(
                "bangerd-root on {} serves uid {}, not this user (uid {uid})",
                location.socket.display(),
                hello.owner_uid
            ),
            "sudo banger system install --owner $USER (or use the installed owner's account)",
        ),
        Err(error) => Check::fail(
            "root-helper",
            error_chain(&error),
            "sudo banger system restart (or sudo banger system install)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn no_install_fails_with_the_install_command() {
        let dir = tempfile::tempdir().expect("dir");
        let location = root_helper::locate_with(&dir.path().join("install.toml"), None);
        let check = verdict(location, 1000);
        assert_eq!(check.status, Status::Fail);
        assert!(
            check
                .fix
                .as_deref()
                .is_some_and(|fix| fix.contains("sudo banger system install"))
        );
    }

    #[test]
    fn a_silent_socket_fails_with_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let socket = dir.path().join("root.sock");
        let location = root_helper::locate_with(&dir.path().join("install.toml"), Some(socket));
        let check = verdict(location, 1000);
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("root.sock"), "{check:?}");
        assert!(
            check
                .fix
                .as_deref()
                .is_some_and(|fix| fix.contains("restart"))
        );
    }
}
