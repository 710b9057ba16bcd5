//! The customisation that turns a freshly bootstrapped Debian tree into a
//! banger base image: `customise.sh`, embedded here and run by mmdebstrap as a
//! `--customize-hook` (see that script for what it changes and why).
//!
//! It is a shell script rather than Rust because in unshare mode (unprivileged
//! builds) the tree belongs to subordinate uids that only processes inside
//! mmdebstrap's user namespace may write; a hook runs there, with the tree's
//! own root ownership, in both modes. What it leaves for the builder: `/root`
//! holds the work seed's contents (dotfiles, an empty 0700 `.ssh`).

/// The customisation script; argument 1 is the tree.
pub const CUSTOMISE_SCRIPT: &str = include_str!("customise.sh");

/// Bump whenever the customisation changes in a way [`super::image_key`]
/// cannot see (it already hashes [`CUSTOMISE_SCRIPT`]), e.g. how the builder
/// packs the tree, so cached images are rebuilt. Also written to
/// `/etc/banger/image` in the image.
pub const CUSTOMISATION_VERSION: u32 = 4;

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::Command;

    use super::*;

    fn run(tree: &Path) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(CUSTOMISE_SCRIPT)
            .arg("customise.sh")
            .arg(tree)
            .env("BANGER_CUSTOMISATION", "7")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn script_passes_sh_syntax_check() {
        let ok = Command::new("sh")
            .args(["-n", "-c", CUSTOMISE_SCRIPT])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    #[test]
    fn customises_a_fake_tree() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        for d in [
            "etc/ssh/sshd_config.d",
            "root",
            "etc/systemd/system/multi-user.target.wants",
            "etc/dpkg/dpkg.cfg.d",
        ] {
            fs_err::create_dir_all(tree.join(d)).unwrap();
        }
        for f in [
            "ssh_host_rsa_key",
            "ssh_host_rsa_key.pub",
            "ssh_host_ed25519_key",
        ] {
            fs_err::write(tree.join("etc/ssh").join(f), "k").unwrap();
        }
        fs_err::write(tree.join("etc/ssh/sshd_config"), "x").unwrap();
        fs_err::write(
            tree.join("etc/dpkg/dpkg.cfg.d/99mmdebstrap"),
            "force-unsafe-io",
        )
        .unwrap();
        fs_err::write(tree.join("root/.bashrc"), "# rc").unwrap();
        fs_err::write(tree.join("etc/fstab"), "# UNCONFIGURED FSTAB").unwrap();
        fs_err::os::unix::fs::symlink("/run/x/resolv.conf", tree.join("etc/resolv.conf")).unwrap();
        fs_err::os::unix::fs::symlink(
            "/lib/systemd/system/systemd-networkd.service",
            tree.join("etc/systemd/system/multi-user.target.wants/systemd-networkd.service"),
        )
        .unwrap();

        let log = run(&tree);
        assert_eq!(
            log.matches("removing /etc/ssh/ssh_host_").count(),
            3,
            "{log}"
        );
        assert!(tree.join("etc/ssh/sshd_config").exists());
        assert!(!tree.join("etc/ssh/ssh_host_rsa_key").exists());
        assert!(!tree.join("etc/dpkg/dpkg.cfg.d/99mmdebstrap").exists());
        assert_eq!(
            fs_err::read_to_string(tree.join("root/.bashrc")).unwrap(),
            "# rc"
        );
        let mode = |p: &Path| fs_err::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&tree.join("root")), 0o700);
        assert_eq!(mode(&tree.join("root/.ssh")), 0o700);
        let fstab = fs_err::read_to_string(tree.join("etc/fstab")).unwrap();
        assert!(fstab.lines().all(|l| l.starts_with('#')), "{fstab}");
        let resolv = fs_err::symlink_metadata(tree.join("etc/resolv.conf")).unwrap();
        assert!(resolv.is_file());
        assert_eq!(
            fs_err::read_to_string(tree.join("etc/hostname")).unwrap(),
            "banger\n"
        );
        assert_eq!(
            fs_err::metadata(tree.join("etc/machine-id")).unwrap().len(),
            0
        );
        let drop_in =
            fs_err::read_to_string(tree.join("etc/ssh/sshd_config.d/banger.conf")).unwrap();
        assert!(drop_in.contains("\nPermitRootLogin prohibit-password\n"));
        assert!(drop_in.contains("\nPasswordAuthentication no\n"));
        let systemd = tree.join("etc/systemd/system");
        let masked = fs_err::read_link(systemd.join("systemd-networkd.service")).unwrap();
        assert_eq!(masked, Path::new("/dev/null"));
        assert!(
            !systemd
                .join("multi-user.target.wants/systemd-networkd.service")
                .exists()
        );
        assert!(
            fs_err::symlink_metadata(systemd.join("getty.target.wants/serial-getty@ttyS0.service"))
                .is_ok()
        );
        // Trim: util-linux's timer enabled and made daily, plus banger's
        // trim at shutdown.
        assert_eq!(
            fs_err::read_link(systemd.join("timers.target.wants/fstrim.timer")).unwrap(),
            Path::new("/lib/systemd/system/fstrim.timer")
        );
        let timer = fs_err::read_to_string(systemd.join("fstrim.timer.d/banger.conf")).unwrap();
        assert!(
            timer.contains("\nOnCalendar=\nOnCalendar=daily\n"),
            "{timer}"
        );
        let shutdown =
            fs_err::read_to_string(systemd.join("banger-fstrim-shutdown.service")).unwrap();
        assert!(
            shutdown.contains("\nExecStop=-/sbin/fstrim --all"),
            "{shutdown}"
        );
        assert_eq!(
            fs_err::read_link(
                systemd.join("multi-user.target.wants/banger-fstrim-shutdown.service")
            )
            .unwrap(),
            Path::new("../banger-fstrim-shutdown.service")
        );
        assert!(
            fs_err::read_to_string(tree.join("etc/banger/image"))
                .unwrap()
                .contains("customisation=7")
        );
        // Idempotent: a second run succeeds and removes nothing more.
        let again = run(&tree);
        assert!(!again.contains("removing"), "{again}");
    }

    #[test]
    fn refuses_a_non_tree() {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg(CUSTOMISE_SCRIPT)
            .arg("customise.sh")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
    }
}
