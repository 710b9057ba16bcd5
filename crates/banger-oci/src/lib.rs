//! OCI images for banger: `banger image pull`.
//!
//! An image comes from a registry (the OCI distribution API), a `docker
//! save` archive or an OCI image layout on disk. Its layers are applied in
//! order to an in-memory tree (whiteouts, hardlinks, symlinks, devices,
//! owners and modes exactly as in the tar headers), and the tree is written
//! into ext4 with `mkfs.ext4 -d` from a staging directory holding only
//! directories and regular files, followed by a `debugfs -w` script that sets
//! owners, modes and times and creates symlinks, device nodes and FIFOs inside
//! the filesystem. Nothing needs root or a mount, and nothing from a layer is
//! ever created on the host except plain files and directories under names
//! that were resolved against the image's own tree. See `docs/oci-import.md`.
//!
//! Modules:
//! - [`reference`]: what the user names (`docker-archive:`, `oci:`, a registry reference).
//! - [`registry`]: the registry client (auth, manifests, blobs) on ureq/rustls.
//! - [`auth`]: credentials from `~/.docker/config.json`.
//! - [`cache`]: verified blobs cached by digest.
//! - [`local`]: docker-archive and OCI layout inputs.
//! - [`tree`]: the image tree layers are applied to.
//! - [`layer`]: reading one layer (decompression, limits) into the tree.
//! - [`ext4`]: writing the tree into ext4.
//! - [`import`]: the whole pull, from source to `rootfs.ext4`.

// Tests may unwrap: a panic with the value is the clearest failure report.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
pub mod cache;
pub mod digest;
pub mod ext4;
pub mod import;
pub mod layer;
pub mod local;
pub mod reference;
pub mod registry;
pub mod spec;
pub mod tree;

pub use digest::Digest;
pub use import::{ImportError, ImportOptions, ImportedImage, Limits, PullEvent, import};
pub use reference::Source;
