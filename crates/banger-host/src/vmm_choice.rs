//! Turning the `vmm` setting into a backend, with the reason why.
//!
//! `auto` picks Firecracker only when KVM can really run guests and the
//! Firecracker binary exists; otherwise QEMU (with TCG when KVM is unusable).

use banger_config::VmmChoice;

use crate::kvm::KvmVerdict;

/// A concrete backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Firecracker microVMs.
    Firecracker,
    /// QEMU, with KVM or TCG.
    Qemu,
}

/// The chosen backend and an explanation a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VmmDecision {
    /// The backend.
    pub backend: Backend,
    /// For QEMU: whether KVM acceleration is used (else TCG).
    pub accelerated: bool,
    /// Why.
    pub reason: String,
    /// Set when the choice cannot work (forced Firecracker without KVM or
    /// without the binary).
    pub problem: Option<String>,
}

/// Decides the backend for `choice`.
pub fn decide(choice: VmmChoice, kvm: &KvmVerdict, firecracker_found: bool) -> VmmDecision {
    let qemu = |reason: String| VmmDecision {
        backend: Backend::Qemu,
        accelerated: kvm.can_run_guests,
        reason,
        problem: None,
    };
    match choice {
        VmmChoice::Qemu => qemu(format!(
            "vmm = qemu; it will use {}",
            if kvm.can_run_guests {
                "KVM"
            } else {
                "TCG software emulation (KVM cannot run guests here)"
            }
        )),
        VmmChoice::Firecracker => {
            let problem = if !kvm.can_run_guests {
                Some(format!(
                    "Firecracker needs a KVM that runs guests: {}",
                    kvm.detail
                ))
            } else if !firecracker_found {
                Some("the firecracker binary was not found".to_owned())
            } else {
                None
            };
            VmmDecision {
                backend: Backend::Firecracker,
                accelerated: true,
                reason: "vmm = firecracker".into(),
                problem,
            }
        }
        VmmChoice::Auto if kvm.can_run_guests && firecracker_found => VmmDecision {
            backend: Backend::Firecracker,
            accelerated: true,
            reason: "vmm = auto: KVM runs guests and firecracker is installed".into(),
            problem: None,
        },
        VmmChoice::Auto if kvm.can_run_guests => qemu(
            "vmm = auto: KVM runs guests but firecracker is not installed, so QEMU with KVM".into(),
        ),
        VmmChoice::Auto => qemu(format!(
            "vmm = auto: KVM cannot run guests ({}), so QEMU with TCG",
            kvm.detail
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(can_run_guests: bool) -> KvmVerdict {
        KvmVerdict {
            accessible: true,
            probe_ran: true,
            can_run_guests,
            detail: "test".into(),
        }
    }

    #[test]
    fn decision_table() {
        let cases = [
            (VmmChoice::Auto, true, true, Backend::Firecracker, false),
            (VmmChoice::Auto, true, false, Backend::Qemu, false),
            (VmmChoice::Auto, false, true, Backend::Qemu, false),
            (VmmChoice::Qemu, true, true, Backend::Qemu, false),
            (
                VmmChoice::Firecracker,
                false,
                true,
                Backend::Firecracker,
                true,
            ),
            (
                VmmChoice::Firecracker,
                true,
                false,
                Backend::Firecracker,
                true,
            ),
            (
                VmmChoice::Firecracker,
                true,
                true,
                Backend::Firecracker,
                false,
            ),
        ];
        for (choice, kvm, found, backend, problem) in cases {
            let decision = decide(choice, &verdict(kvm), found);
            assert_eq!(
                decision.backend, backend,
                "{choice:?} kvm={kvm} found={found}"
            );
            assert_eq!(
                decision.problem.is_some(),
                problem,
                "{choice:?} kvm={kvm} found={found}"
            );
        }
        assert!(
            !decide(VmmChoice::Auto, &verdict(false), true).accelerated,
            "TCG without KVM"
        );
    }
}
