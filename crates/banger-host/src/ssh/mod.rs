//! SSH for banger VMs: keys, pinned host keys, the `ssh` command, readiness.
//!
//! - [`keys`]: the user's client key ([`ensure_user_key`]) and per-VM ed25519
//!   host keys ([`generate_host_key`]) that the config initrd installs in
//!   the guest.
//! - [`known_hosts`]: banger's own known_hosts file, one `<alias> <keytype>
//!   <base64>` line per VM, updated atomically under a lock.
//! - [`command`]: the system `ssh` invocation with strict host key checking
//!   through `HostKeyAlias`, and POSIX shell quoting of the remote command.
//! - [`wait`]: polling until a guest's sshd sends its `SSH-2.0-` banner.
//!
//! `docs/ssh.md` explains the file layout and every ssh option.

pub mod command;
mod fsutil;
pub mod keys;
pub mod known_hosts;
pub mod wait;

pub use command::{SshTarget, TtyMode, remote_command_line, shell_quote, ssh_command};
pub use keys::{
    HOST_KEY_TYPE, HostKey, SshKeyError, UserKey, ensure_user_key, generate_host_key,
    public_key_path,
};
pub use known_hosts::{KnownHostsError, check_alias, host_keys, remove_host, set_host};
pub use wait::{ProbeError, SshWaitError, wait_for_ssh};
