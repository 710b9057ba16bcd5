//! Reaching a running VM over SSH from the host, as every client does it:
//! the daemon's [`VmInfo`] names the key, address and pinned host key, and
//! the system `ssh` does the rest (`banger_host::ssh::ssh_command`).

use std::path::PathBuf;

use banger_api::vms::VmInfo;
use banger_host::ssh::SshTarget;

/// How to reach `vm` over SSH (meaningful while it runs).
pub fn ssh_target(vm: &VmInfo) -> SshTarget {
    SshTarget {
        user: vm.ssh.user.clone(),
        ip: vm.ssh.ip,
        port: banger_host::ssh::command::DEFAULT_PORT,
        alias: vm.ssh.host_alias.clone(),
        identity: PathBuf::from(&vm.ssh.identity),
        known_hosts: PathBuf::from(&vm.ssh.known_hosts),
    }
}

/// The ssh program: `BANGER_SSH_BIN` (tests), else `ssh` from PATH.
pub fn ssh_program() -> PathBuf {
    std::env::var_os("BANGER_SSH_BIN").map_or_else(|| PathBuf::from("ssh"), PathBuf::from)
}
