//! Helpers shared by the VM test binaries. Each binary uses a subset, so
//! unused-item warnings are expected here.
#![allow(dead_code)]

pub mod oci;
pub mod user;
pub mod vm_suite;
