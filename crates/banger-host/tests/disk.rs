//! Component tests for `banger_host::disk` with the real e2fsprogs:
//! work-seed clone (sparse, identical, grown, never shrunk), overlay disks
//! from templates, and the ext4 image validation table.

use fs_err::os::unix::fs::FileExt;
use fs_err::{self as fs, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use banger_host::disk::clone::CloneMethod;
use banger_host::disk::{
    CloneError, OverlayError, ValidateError, clone_file, clone_work_seed, create_overlay_disk,
    grow_ext4, validate_ext4_image,
};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const HELLO: &str = "hello from the work seed\n";

fn run(program: &str, args: &[&str]) -> std::process::Output {
    let output = Command::new(program).args(args).output().expect(program);
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A `size`-byte ext4 seed holding `/hello.txt` and `data_mib` MiB of
/// incompressible data, built with `mkfs.ext4 -d`.
fn make_seed(dir: &Path, size: u64, data_mib: usize) -> PathBuf {
    let tree = dir.join("tree");
    fs::create_dir_all(&tree).expect("tree");
    fs::write(tree.join("hello.txt"), HELLO).expect("hello");
    let mut data = File::create(tree.join("data.bin")).expect("data");
    let mut chunk = vec![0u8; MIB as usize];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..data_mib {
        for byte in chunk.iter_mut() {
            // xorshift: cheap bytes that no filesystem can treat as zeros.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        data.write_all(&chunk).expect("write data");
    }
    drop(data);
    let seed = dir.join("seed.ext4");
    let tree_arg = tree.to_str().expect("utf8");
    let seed_arg = seed.to_str().expect("utf8");
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-d",
            tree_arg,
            seed_arg,
            &format!("{}k", size / 1024),
        ],
    );
    seed
}

fn allocated(path: &Path) -> u64 {
    fs::metadata(path).expect("stat").blocks() * 512
}

#[test]
fn work_seed_clone_is_sparse_identical_and_grown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = make_seed(dir.path(), GIB, 8);
    let clone = dir.path().join("work.ext4");

    let report = clone_work_seed(&seed, &clone, 2 * GIB).expect("clone");
    assert_eq!(report.apparent_size, 2 * GIB);
    assert_eq!(fs::metadata(&clone).expect("stat").len(), 2 * GIB);
    if report.method == CloneMethod::SparseCopy {
        // Only the data was copied: about what the seed allocates, nowhere
        // near the 1 GiB apparent size.
        let seed_allocated = allocated(&seed);
        assert!(
            report.bytes_copied <= seed_allocated + MIB,
            "{report:?} vs {seed_allocated}"
        );
        let clone_allocated = allocated(&clone);
        assert!(
            clone_allocated < seed_allocated + 64 * MIB,
            "clone allocates {clone_allocated}, seed {seed_allocated}"
        );
        assert!(
            clone_allocated < 200 * MIB,
            "clone is not sparse: {clone_allocated}"
        );
    }

    let clone_arg = clone.to_str().expect("utf8");
    run("e2fsck", &["-fn", clone_arg]);
    let cat = run("debugfs", &["-R", "cat /hello.txt", clone_arg]);
    assert_eq!(String::from_utf8_lossy(&cat.stdout), HELLO);
    let info = validate_ext4_image(&clone).expect("valid ext4");
    assert_eq!(info.fs_bytes(), 2 * GIB, "filesystem grown to the file");

    // Same size is a no-op; smaller is refused with both sizes, and the
    // refused destination is never created.
    grow_ext4(&clone, 2 * GIB).expect("same size");
    match grow_ext4(&clone, GIB) {
        Err(CloneError::Shrink {
            path,
            current,
            requested,
        }) => {
            assert_eq!((path, current, requested), (clone.clone(), 2 * GIB, GIB));
        }
        other => panic!("expected Shrink, got {other:?}"),
    }
    let refused = dir.path().join("refused.ext4");
    let error = clone_work_seed(&seed, &refused, 512 * MIB).expect_err("shrink refused");
    assert!(
        matches!(error, CloneError::Shrink { current, requested, .. } if current == GIB && requested == 512 * MIB)
    );
    assert!(
        error.to_string().contains("1073741824") && error.to_string().contains("536870912"),
        "{error}"
    );
    assert!(!refused.exists());

    // Never overwrites.
    let exists = clone_work_seed(&seed, &clone, 2 * GIB).expect_err("exists");
    assert!(matches!(exists, CloneError::Exists { .. }), "{exists:?}");
    run("e2fsck", &["-fn", clone_arg]);
}

#[test]
fn clone_file_copies_extents_exactly_and_keeps_holes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("holey");
    let file = File::create(&source).expect("create");
    let length = 64 * MIB + 12_345;
    file.set_len(length).expect("len");
    // Data at the start, in the middle (unaligned), near the end; a
    // trailing hole and holes in between.
    for (offset, byte) in [
        (0u64, 1u8),
        (5 * MIB + 17, 2),
        (40 * MIB, 3),
        (60 * MIB + 1, 4),
    ] {
        file.write_all_at(&vec![byte; 300_000], offset)
            .expect("write");
    }
    file.sync_all().expect("sync");
    drop(file);

    let dest = dir.path().join("copy");
    let report = clone_file(&source, &dest).expect("clone");
    assert_eq!(report.apparent_size, length);
    assert_eq!(
        fs::read(&source).expect("read"),
        fs::read(&dest).expect("read")
    );
    if report.method == CloneMethod::SparseCopy {
        assert!(report.bytes_copied < 8 * MIB, "{report:?}");
        assert!(allocated(&dest) < 8 * MIB, "{}", allocated(&dest));
    }
    let mode = fs::metadata(&dest).expect("stat").mode() & 0o777;
    assert_eq!(mode, 0o600);

    // A missing source leaves no destination behind.
    let missing = clone_file(&dir.path().join("nope"), &dir.path().join("out"));
    assert!(
        matches!(missing, Err(CloneError::Io { op: "open", .. })),
        "{missing:?}"
    );
    assert!(!dir.path().join("out").exists());
}

#[test]
fn overlay_disks_come_from_one_template_per_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = dir.path().join("templates");
    let first = dir.path().join("vm1-upper.ext4");
    create_overlay_disk(&templates, &first, 256 * MIB).expect("overlay");
    let info = validate_ext4_image(&first).expect("valid");
    assert_eq!(info.fs_bytes(), 256 * MIB);
    run("e2fsck", &["-fn", first.to_str().expect("utf8")]);
    assert!(
        allocated(&first) < 32 * MIB,
        "overlay is sparse: {}",
        allocated(&first)
    );

    let template = banger_host::disk::overlay::template_path(&templates, 256 * MIB);
    let stamp = fs::metadata(&template)
        .expect("template")
        .modified()
        .expect("mtime");
    let second = dir.path().join("vm2-upper.ext4");
    create_overlay_disk(&templates, &second, 256 * MIB).expect("overlay");
    assert_eq!(
        fs::metadata(&template)
            .expect("template")
            .modified()
            .expect("mtime"),
        stamp,
        "template reused"
    );
    let label = run("e2label", &[second.to_str().expect("utf8")]);
    assert_eq!(
        String::from_utf8_lossy(&label.stdout).trim(),
        "banger-upper"
    );

    for bad in [0, MIB, 100 * MIB + 1] {
        let result = create_overlay_disk(&templates, &dir.path().join("bad"), bad);
        assert!(
            matches!(result, Err(OverlayError::BadSize { .. })),
            "{bad}: {result:?}"
        );
    }
    let exists = create_overlay_disk(&templates, &first, 256 * MIB);
    assert!(
        matches!(exists, Err(OverlayError::Clone(CloneError::Exists { .. }))),
        "{exists:?}"
    );
}

#[test]
fn validation_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);

    let real = path("real.ext4");
    File::create(&real)
        .expect("create")
        .set_len(64 * MIB)
        .expect("len");
    run("mkfs.ext4", &["-q", "-F", real.to_str().expect("utf8")]);

    fs::create_dir(path("dir")).expect("dir");
    fs_err::os::unix::fs::symlink("/dev/null", path("devnull")).expect("symlink");
    fs_err::os::unix::fs::symlink(&real, path("link-to-real")).expect("symlink");
    let fifo = std::ffi::CString::new(path("fifo").to_str().expect("utf8")).expect("cstring");
    // SAFETY: mkfifo reads a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    File::create(path("empty")).expect("empty");

    // A qcow2 header naming a backing file.
    let mut qcow = vec![0u8; 4096];
    qcow[..4].copy_from_slice(b"QFI\xfb");
    qcow[4..8].copy_from_slice(&3u32.to_be_bytes());
    qcow[8..16].copy_from_slice(&512u64.to_be_bytes());
    qcow[16..20].copy_from_slice(&10u32.to_be_bytes());
    qcow[512..522].copy_from_slice(b"/etc/passw");
    fs::write(path("qcow2"), &qcow).expect("qcow2");

    let random: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(path("random"), &random).expect("random");
    fs::write(path("tiny"), b"x").expect("tiny");

    // A real filesystem cut short.
    let truncated = path("truncated.ext4");
    fs::copy(&real, &truncated).expect("copy");
    OpenOptions::new()
        .write(true)
        .open(&truncated)
        .expect("open")
        .set_len(32 * MIB)
        .expect("truncate");

    let check = |name: &str| validate_ext4_image(&path(name));
    assert!(matches!(
        check("missing"),
        Err(ValidateError::Missing { .. })
    ));
    assert!(matches!(
        check("dir"),
        Err(ValidateError::NotRegular {
            kind: "directory",
            ..
        })
    ));
    assert!(matches!(
        check("devnull"),
        Err(ValidateError::NotRegular {
            kind: "character device",
            ..
        })
    ));
    assert!(matches!(
        check("fifo"),
        Err(ValidateError::NotRegular { kind: "FIFO", .. })
    ));
    assert!(matches!(check("empty"), Err(ValidateError::Empty { .. })));
    match check("qcow2") {
        Err(ValidateError::Qcow { backing_file, .. }) => {
            assert_eq!(backing_file.as_deref(), Some("/etc/passw"))
        }
        other => panic!("qcow2: {other:?}"),
    }
    assert!(
        matches!(check("random"), Err(ValidateError::NotExt4 { .. })),
        "{:?}",
        check("random")
    );
    assert!(matches!(
        check("tiny"),
        Err(ValidateError::BadSize { size: 1, .. })
    ));
    assert!(
        matches!(check("truncated.ext4"), Err(ValidateError::Truncated { fs_bytes, file_bytes, .. }) if fs_bytes == 64 * MIB && file_bytes == 32 * MIB)
    );
    let info = check("real.ext4").expect("real ext4 is valid");
    assert_eq!(info.fs_bytes(), 64 * MIB);
    assert_eq!(
        check("link-to-real").expect("symlink to a real image"),
        info
    );

    // Every error names the file.
    for name in [
        "missing",
        "dir",
        "devnull",
        "fifo",
        "empty",
        "qcow2",
        "random",
        "tiny",
        "truncated.ext4",
    ] {
        let message = check(name).expect_err(name).to_string();
        assert!(
            message.contains(path(name).to_str().expect("utf8")),
            "{message}"
        );
    }
}

#[test]
fn grown_seed_cache_builds_once_and_clones_per_vm() {
    use banger_host::disk::seed_cache::{entry_path, prune};
    use banger_host::disk::{clone_work_seed_cached, prepare_grown_seed};

    let dir = tempfile::tempdir().expect("tempdir");
    let seed = make_seed(dir.path(), 256 * MIB, 2);
    let cache = dir.path().join("cache");

    let vm1 = dir.path().join("vm1.ext4");
    clone_work_seed_cached(&cache, &seed, &vm1, 512 * MIB).expect("first clone");
    let entry = entry_path(&cache, &seed, 512 * MIB).expect("entry");
    let built = fs::metadata(&entry)
        .expect("entry exists")
        .modified()
        .expect("mtime");
    let vm2 = dir.path().join("vm2.ext4");
    clone_work_seed_cached(&cache, &seed, &vm2, 512 * MIB).expect("second clone");
    assert_eq!(
        fs::metadata(&entry)
            .expect("entry")
            .modified()
            .expect("mtime"),
        built,
        "entry reused"
    );
    for vm in [&vm1, &vm2] {
        let arg = vm.to_str().expect("utf8");
        run("e2fsck", &["-fn", arg]);
        let cat = run("debugfs", &["-R", "cat /hello.txt", arg]);
        assert_eq!(String::from_utf8_lossy(&cat.stdout), HELLO);
        assert_eq!(
            validate_ext4_image(vm).expect("valid").fs_bytes(),
            512 * MIB
        );
    }

    // The seed's own size needs no entry; smaller is refused.
    assert_eq!(
        prepare_grown_seed(&cache, &seed, 256 * MIB).expect("same size"),
        seed
    );
    let shrink = prepare_grown_seed(&cache, &seed, 128 * MIB).expect_err("shrink");
    assert!(
        shrink.to_string().contains("refusing to shrink"),
        "{shrink}"
    );

    // Pruning keeps every entry of the seeds asked for, deletes the
    // entries of other seeds (here: a seed since deleted), ignores foreign
    // files.
    prepare_grown_seed(&cache, &seed, GIB).expect("1 GiB entry");
    let gone_seed = make_seed(&dir.path().join("gone"), 256 * MIB, 2);
    prepare_grown_seed(&cache, &gone_seed, GIB).expect("entry of another seed");
    let gone_entry = entry_path(&cache, &gone_seed, GIB).expect("entry");
    fs::remove_file(&gone_seed).expect("delete that seed");
    fs::write(cache.join("notes.txt"), "mine").expect("foreign file");
    let deleted = prune(&cache, &[seed.as_path()]).expect("prune");
    assert_eq!(deleted, vec![gone_entry]);
    assert!(entry.exists() && cache.join("notes.txt").exists());
    assert!(entry_path(&cache, &seed, GIB).expect("entry").exists());
}

/// A sparse file of `length` with 300 kB of `byte` at each of `offsets`.
fn holey_file(path: &Path, length: u64, data: &[(u64, u8)]) {
    let file = File::create(path).expect("create");
    file.set_len(length).expect("len");
    for &(offset, byte) in data {
        file.write_all_at(&vec![byte; 300_000], offset)
            .expect("write");
    }
    file.sync_all().expect("sync");
}

#[test]
fn clone_file_copies_between_filesystems_and_fails_cleanly_when_full() {
    // The source on /tmp's filesystem, the copies on tmpfs: copy_file_range
    // refuses filesystems of different types (EXDEV since Linux 5.19), so
    // this goes through the buffered fallback.
    let Some(roomy) = banger_testkit::tmpfs::SmallTmpfs::mount("64m") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("holey");
    let length = 32 * MIB + 7;
    holey_file(&source, length, &[(0, 1), (9 * MIB + 3, 2), (30 * MIB, 3)]);
    let dest = roomy.path().join("copy");
    let report = clone_file(&source, &dest).expect("clone across filesystems");
    assert_eq!(report.apparent_size, length);
    assert_eq!(
        fs::read(&source).expect("read"),
        fs::read(&dest).expect("read")
    );
    assert!(allocated(&dest) < 8 * MIB, "sparse: {}", allocated(&dest));

    // No room: the error names the copy and says why; no copy is left.
    let Some(tiny) = banger_testkit::tmpfs::SmallTmpfs::mount("512k") else {
        return;
    };
    let dest = tiny.path().join("copy");
    let error = clone_file(&source, &dest).expect_err("no room");
    let text = banger_host::error_chain(&error);
    assert!(
        matches!(&error, CloneError::Io { path, source, .. }
            if path == &dest && source.raw_os_error() == Some(28)),
        "{text}"
    );
    assert!(text.contains("No space left on device"), "{text}");
    assert!(!dest.exists(), "a half-written copy is left");
}
