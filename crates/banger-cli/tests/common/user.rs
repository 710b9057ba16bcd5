//! An unprivileged user for tests that run banger the way a developer does:
//! created with `useradd` for the test, removed again when dropped.

use std::process::Command;

/// A system user made for one test (no home, no login shell).
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    /// Creates `<tag><pid>` (tests run as root).
    pub fn create(tag: &str) -> Self {
        let name = format!("{tag}{}", std::process::id());
        let _ = Command::new("userdel").arg(&name).output();
        let output = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                &name,
            ])
            .output()
            .expect("useradd runs");
        assert!(
            output.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let id = |flag: &str| -> u32 {
            let output = Command::new("id")
                .args([flag, &name])
                .output()
                .expect("id runs");
            String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse()
                .expect("a numeric id")
        };
        let (uid, gid) = (id("-u"), id("-g"));
        assert_ne!(uid, 0, "the test user is not root");
        Self { name, uid, gid }
    }

    /// `command` run as this user (`setpriv`, no supplementary groups),
    /// keeping its environment and working directory.
    pub fn wrap(&self, command: &Command) -> Command {
        let mut wrapped = Command::new("setpriv");
        wrapped
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--clear-groups", "--"])
            .arg(command.get_program())
            .args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            wrapped.current_dir(dir);
        }
        wrapped
    }

    /// Gives `path` and everything below it to this user.
    pub fn chown_tree(&self, path: &std::path::Path) {
        let status = Command::new("chown")
            .args(["-R", &format!("{}:{}", self.uid, self.gid)])
            .arg(path)
            .status()
            .expect("chown runs");
        assert!(status.success(), "chown -R {}", path.display());
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // Whatever still runs as the user (nothing should) goes first.
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.uid.to_string()])
            .status();
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}
