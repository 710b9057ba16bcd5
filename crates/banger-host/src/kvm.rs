//! Can this host's KVM run guests?
//!
//! Opening `/dev/kvm` is not enough: on nested, paravirtualised KVM
//! (`kvm_pvm`) the device opens and VMs can be created, yet stock guest
//! kernels hang. So the probe (1) opens the device and checks the API
//! version, (2) creates a one-page VM and runs a `hlt` in real mode, expecting
//! a clean HLT exit within a timeout, and (3) refuses hosts where the
//! hardware virtualisation flags are absent or the PVM module is loaded.

use std::sync::mpsc;
use std::time::Duration;

use kvm_ioctls::{Kvm, VcpuExit};

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KvmVerdict {
    /// `/dev/kvm` opened read-write with the stable API version.
    pub accessible: bool,
    /// A one-instruction guest ran and exited cleanly.
    pub probe_ran: bool,
    /// Full guests (stock kernels) are expected to run.
    pub can_run_guests: bool,
    /// Human explanation of the verdict.
    pub detail: String,
}

/// Why the probe guest did not run (the verdict's `detail` is its text).
#[derive(Debug, thiserror::Error)]
pub enum KvmProbeError {
    /// `/dev/kvm` does not open.
    #[error("cannot open {device}")]
    Open {
        /// The device path.
        device: &'static str,
        /// The OS error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The device speaks another KVM API version.
    #[error("{device} reports KVM API version {version}, expected 12")]
    ApiVersion {
        /// The device path.
        device: &'static str,
        /// The version it reported.
        version: i32,
    },
    /// The thread running the probe guest could not be started.
    #[error("cannot start the probe thread")]
    SpawnThread(#[source] std::io::Error),
    /// The probe guest's page could not be mapped.
    #[error("cannot map probe memory")]
    MapMemory(#[source] rustix::io::Errno),
    /// A KVM ioctl setting up or running the guest failed.
    #[error("{ioctl} failed")]
    Ioctl {
        /// The ioctl, e.g. `KVM_CREATE_VM`.
        ioctl: &'static str,
        /// The OS error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The guest left through something other than `hlt`.
    #[error("the probe guest exited unexpectedly: {exit}")]
    UnexpectedExit {
        /// The exit, as KVM reported it (its `Debug` form: it borrows the
        /// vCPU's run area, so it cannot be kept).
        exit: String,
    },
    /// The guest did not exit in time (the run ioctl may hang for good on
    /// broken nested setups).
    #[error("the probe guest did not exit within {timeout:?}")]
    Hung {
        /// How long the probe waited.
        timeout: Duration,
    },
}

impl KvmProbeError {
    fn ioctl(ioctl: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Self {
        move |source| Self::Ioctl { ioctl, source }
    }
}

const DEVICE: &str = "/dev/kvm";
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Guest-physical address of the probe's single page.
const PROBE_ADDRESS: u64 = 0x1000;
const PAGE: usize = 4096;

/// Runs every check. Takes up to [`PROBE_TIMEOUT`] when the probe hangs.
pub fn probe() -> KvmVerdict {
    let kvm = match Kvm::new() {
        Ok(kvm) => kvm,
        Err(error) => {
            return KvmVerdict {
                accessible: false,
                probe_ran: false,
                can_run_guests: false,
                detail: crate::error_chain(&KvmProbeError::Open {
                    device: DEVICE,
                    source: error,
                }),
            };
        }
    };
    let api_version = kvm.get_api_version();
    if api_version != 12 {
        return KvmVerdict {
            accessible: false,
            probe_ran: false,
            can_run_guests: false,
            detail: KvmProbeError::ApiVersion {
                device: DEVICE,
                version: api_version,
            }
            .to_string(),
        };
    }
    drop(kvm);
    let (sender, receiver) = mpsc::channel();
    // The run ioctl can hang forever on broken nested setups; a thread we can
    // abandon keeps the caller responsive.
    let spawned = std::thread::Builder::new()
        .name("kvm-probe".into())
        .spawn(move || {
            let _ = sender.send(run_hlt_guest());
        });
    let probe_result = match spawned {
        Ok(_) => receiver
            .recv_timeout(PROBE_TIMEOUT)
            .unwrap_or(Err(KvmProbeError::Hung {
                timeout: PROBE_TIMEOUT,
            })),
        Err(error) => Err(KvmProbeError::SpawnThread(error)),
    };
    if let Err(error) = probe_result {
        return KvmVerdict {
            accessible: true,
            probe_ran: false,
            can_run_guests: false,
            detail: crate::error_chain(&error),
        };
    }
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        return KvmVerdict {
            accessible: true,
            probe_ran: true,
            can_run_guests: false,
            detail: "KVM is the nested paravirtualised kvm_pvm: stock guest kernels hang under it"
                .into(),
        };
    }
    if !cpu_has_virtualisation_flags() {
        return KvmVerdict {
            accessible: true,
            probe_ran: true,
            can_run_guests: false,
            detail: "the CPU shows no vmx/svm flag, so this KVM is emulated or paravirtualised and stock guest kernels are not expected to boot".into(),
        };
    }
    KvmVerdict {
        accessible: true,
        probe_ran: true,
        can_run_guests: true,
        detail: "a test guest ran under KVM".into(),
    }
}

fn cpu_has_virtualisation_flags() -> bool {
    fs_err::read_to_string("/proc/cpuinfo")
        .map(|text| {
            text.lines()
                .filter(|line| line.starts_with("flags"))
                .any(|line| {
                    line.split_whitespace()
                        .any(|flag| flag == "vmx" || flag == "svm")
                })
        })
        .unwrap_or(false)
}

/// Owns one page of anonymous memory for the probe guest.
struct GuestPage {
    address: *mut std::ffi::c_void,
}

impl GuestPage {
    fn new() -> Result<Self, KvmProbeError> {
        // SAFETY: an anonymous private mapping with no address hint cannot
        // alias existing memory; the result is checked below.
        let address = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                PAGE,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
        }
        .map_err(KvmProbeError::MapMemory)?;
        Ok(Self { address })
    }
}

impl Drop for GuestPage {
    fn drop(&mut self) {
        // SAFETY: `address` came from mmap with length PAGE and is unmapped once.
        let _ = unsafe { rustix::mm::munmap(self.address, PAGE) };
    }
}

fn run_hlt_guest() -> Result<(), KvmProbeError> {
    // Declared first so it is dropped last, after the VM that maps it.
    let page = GuestPage::new()?;
    let kvm = Kvm::new().map_err(|source| KvmProbeError::Open {
        device: DEVICE,
        source,
    })?;
    let vm = kvm
        .create_vm()
        .map_err(KvmProbeError::ioctl("KVM_CREATE_VM"))?;
    // SAFETY: the page is PAGE bytes, writable, and owned by `page`.
    unsafe { page.address.cast::<u8>().write(0xf4) }; // hlt
    let region = kvm_bindings::kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: PROBE_ADDRESS,
        memory_size: PAGE as u64,
        userspace_addr: page.address as u64,
        flags: 0,
    };
    // SAFETY: the region points at memory that outlives the VM: `page` is
    // declared before `vm` and `vcpu`, so it is dropped after them.
    unsafe { vm.set_user_memory_region(region) }
        .map_err(KvmProbeError::ioctl("KVM_SET_USER_MEMORY_REGION"))?;
    let mut vcpu = vm
        .create_vcpu(0)
        .map_err(KvmProbeError::ioctl("KVM_CREATE_VCPU"))?;
    let mut sregs = vcpu
        .get_sregs()
        .map_err(KvmProbeError::ioctl("KVM_GET_SREGS"))?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs)
        .map_err(KvmProbeError::ioctl("KVM_SET_SREGS"))?;
    let mut regs = vcpu
        .get_regs()
        .map_err(KvmProbeError::ioctl("KVM_GET_REGS"))?;
    regs.rip = PROBE_ADDRESS;
    regs.rflags = 2;
    vcpu.set_regs(&regs)
        .map_err(KvmProbeError::ioctl("KVM_SET_REGS"))?;
    match vcpu.run() {
        Ok(VcpuExit::Hlt) => Ok(()),
        Ok(other) => Err(KvmProbeError::UnexpectedExit {
            exit: format!("{other:?}"),
        }),
        Err(source) => Err(KvmProbeError::Ioctl {
            ioctl: "KVM_RUN",
            source,
        }),
    }
}
