//! Host-side facts and resources banger depends on.
//!
//! [`kvm`] finds out whether this host's KVM can really run guests (by
//! running one instruction in a tiny VM, and by recognising nested
//! paravirtualised KVM that cannot run stock kernels), [`tools`] locates
//! external programs and their versions, [`vmm_choice`] turns `vmm = auto`
//! into a backend with a reason, and [`doctor`] assembles all of it into the
//! pass/warn/fail report of `banger doctor`. [`ssh`] holds the SSH pieces:
//! the user key, per-VM host keys, banger's known_hosts, the `ssh` command
//! line and waiting for a guest's sshd. [`text`] escapes outside names
//! (file names, guest strings) for one-line terminal display.

pub mod disk;
pub mod doctor;
mod error_chain;
pub use error_chain::error_chain;
pub mod kvm;
pub mod net;
pub mod privileged;
pub mod process;
pub mod root_helper;
pub mod ssh;
pub mod text;
pub mod tools;
pub mod vmm_choice;
