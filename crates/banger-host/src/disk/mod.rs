//! Per-VM disks: the work disk cloned from a seed, the overlay upper disk,
//! and checks on ext4 image files.
//!
//! DESIGN.md "The boot chain": `vdb` is the VM's sparse overlay (upper)
//! disk, `vdc` its persistent work disk cloned from the image's work seed
//! and grown to `--disk-size`. None of it needs root: plain files, sparse
//! copies (or reflinks where the filesystem has them) and e2fsprogs.
//!
//! - [`clone`]: reflink-or-sparse copy of a file, and [`clone::clone_work_seed`]
//!   (copy + grow with `resize2fs`, never shrink).
//! - [`seed_cache`]: the fast path the daemon should use — the seed grown
//!   once per size, then one sparse clone per VM
//!   ([`seed_cache::clone_work_seed_cached`]).
//! - [`overlay`]: sparse ext4 upper disks, stamped from a template
//!   formatted once per size.
//! - [`validate`]: refuses anything that is not a plain, real ext4 image.
//! - [`owner_only`]: tightens a finished kernel or image directory to
//!   owner-only modes before it is published.
//! - [`safe_open`]: opens a VM's boot files at each use without following
//!   links or hanging on FIFOs, and checks they still are what they were.
//! - [`usage`]: what a file or tree really takes on the host (allocated
//!   bytes), for `vm show`, `vm list` and `system df`.

pub mod clone;
pub mod overlay;
pub mod owner_only;
pub mod safe_open;
pub mod seed_cache;
pub mod usage;
pub mod validate;

pub use clone::{CloneError, CloneMethod, CloneReport, clone_file, clone_work_seed, grow_ext4};
pub use overlay::{OverlayError, create_overlay_disk};
pub use owner_only::{OwnerOnlyError, restrict_tree};
pub use safe_open::{BootFileError, BootFileKind, check_boot_file, open_regular};
pub use seed_cache::{SeedCacheError, clone_work_seed_cached, prepare_grown_seed};
pub use usage::{Usage, UsageError, file_usage, tree_usage};
pub use validate::{Ext4Info, ValidateError, validate_ext4_file, validate_ext4_image};
