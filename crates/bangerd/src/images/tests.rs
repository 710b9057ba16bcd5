//! Domain tests of image delete and re-register against a temp [`AppState`]
//! (in-memory store, real files under a temp state dir): every check before
//! any change, VMs keep their base filesystem, and a kernel an image owns
//! goes when no image uses it. `image build --from-image` refuses conflicting
//! options, a missing base and an unsupported one before any work.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use banger_api::vms::VmState;
use banger_api::{ErrorCode, ImageName, KernelName, VmName};

use super::*;
use crate::store::{KernelRow, VmRow, VmmHandle};

struct Fixture {
    state: AppState,
    temp: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let temp = tempfile::tempdir().expect("tempdir");
    let (state, _) = AppState::for_tests(temp.path());
    Fixture { state, temp }
}

impl Fixture {
    /// A kernel installed under `<state>/kernels/<name>/` with `source`.
    fn kernel(&self, name: &str, source: &str) -> PathBuf {
        let dir = kernels::kernels_dir(&self.state.paths().state_dir).join(name);
        fs_err::create_dir_all(&dir).expect("kernel dir");
        let vmlinux = dir.join("vmlinux");
        fs_err::write(&vmlinux, format!("kernel {name}")).expect("vmlinux");
        let initramfs = dir.join("initramfs.img");
        fs_err::write(&initramfs, b"initramfs").expect("initramfs");
        self.state
            .store()
            .upsert_kernel(&KernelRow {
                id: 0,
                name: KernelName::parse(name).expect("kernel name"),
                version: "6.1.0-test".into(),
                source: source.into(),
                dir: dir.clone(),
                bzimage: None,
                vmlinux: Some(vmlinux),
                initramfs,
                modules_disk: None,
                size_bytes: 100,
                created_at: 0,
            })
            .expect("insert the kernel");
        dir
    }

    /// A small ext4 root filesystem outside the state dir (the user's file).
    fn rootfs(&self, file: &str) -> PathBuf {
        let dir = self.temp.path().join("user");
        fs_err::create_dir_all(&dir).expect("user dir");
        let path = dir.join(file);
        let options = banger_image::modules_disk::Ext4Options {
            populate_from: None,
            label: Some("test-root"),
            journal: false,
        };
        banger_image::modules_disk::mkfs_ext4(&path, 8 << 20, &options).expect("mkfs rootfs");
        path
    }

    fn register(
        &self,
        name: &str,
        rootfs: &Path,
        kernel_ref: &str,
    ) -> Result<ImageInfo, ImageError> {
        let request = serde_json::from_value(serde_json::json!({
            "name": name,
            "rootfs": rootfs.display().to_string(),
            "kernel_ref": kernel_ref,
        }))
        .expect("register request");
        register(&self.state, &request, &ProgressSink::discard())
    }

    /// A VM row created from image `image`.
    fn vm(&self, name: &str, image: &str) {
        let image_row = self.image(image).expect("the image exists");
        let dir = self.state.paths().state_dir.join("vms").join(name);
        self.state
            .store()
            .insert_vm(&VmRow {
                id: 0,
                name: VmName::parse(name).expect("vm name"),
                state: VmState::Created,
                image_id: Some(image_row.id),
                image_name: image_row.name,
                vcpus: 1,
                memory_mib: 256,
                disk_bytes: 1 << 30,
                ip: Ipv4Addr::new(172, 30, 0, 2),
                mac: "02:00:ac:1e:00:02".into(),
                vsock_cid: 3,
                tap: None,
                dir,
                backend: None,
                vmm: VmmHandle::None,
                last_error: None,
                nat: false,
                created_at: 0,
                updated_at: 0,
            })
            .expect("insert the VM");
    }

    fn image(&self, name: &str) -> Option<ImageRow> {
        self.state
            .store()
            .image(&image_name(name))
            .expect("look up image")
    }

    fn kernel_row(&self, name: &str) -> Option<KernelRow> {
        self.state
            .store()
            .kernel(&KernelName::parse(name).expect("kernel name"))
            .expect("look up kernel")
    }
}

fn image_name(name: &str) -> ImageName {
    ImageName::parse(name).expect("image name")
}

#[test]
fn delete_of_an_image_whose_kernel_check_fails_changes_nothing() {
    let fixture = fixture();
    // `owner` was registered with `--kernel`: it owns kernel `owner`, which
    // `borrower` boots too (`--kernel-ref owner`).
    let kernel_dir = fixture.kernel("owner", "image:owner");
    let rootfs = fixture.rootfs("owner.ext4");
    fixture
        .register("owner", &rootfs, "owner")
        .expect("register owner");
    fixture
        .register("borrower", &fixture.rootfs("borrower.ext4"), "owner")
        .expect("register borrower");
    let before = fixture.image("owner").expect("owner");
    for force in [false, true] {
        let error =
            delete(&fixture.state, &image_name("owner"), force).expect_err("its kernel is shared");
        assert!(
            matches!(error, ImageError::OwnKernelShared { .. }),
            "{error:?}"
        );
        assert_eq!(error.code(), ErrorCode::Conflict);
        let message = error.to_string();
        assert!(message.contains("borrower"), "{message}");
        assert_eq!(
            fixture.image("owner").as_ref(),
            Some(&before),
            "the image row is kept"
        );
        assert!(
            fixture.kernel_row("owner").is_some(),
            "the kernel row is kept"
        );
        assert_eq!(
            fs_err::read_to_string(kernel_dir.join("vmlinux")).expect("kernel file kept"),
            "kernel owner"
        );
        assert!(rootfs.is_file(), "the user's rootfs is kept");
    }
}

#[test]
fn re_register_of_an_image_in_use_is_refused_and_keeps_its_files() {
    let fixture = fixture();
    let kernel_dir = fixture.kernel("base", "image:base");
    fixture.kernel("stock", "import");
    let first = fixture.rootfs("first.ext4");
    fixture
        .register("base", &first, "base")
        .expect("register base");
    fixture.vm("dev-one", "base");
    let before = fixture.image("base").expect("base");

    let second = fixture.rootfs("second.ext4");
    let error = fixture
        .register("base", &second, "stock")
        .expect_err("VMs use the image");
    assert!(
        matches!(error, ImageError::ReRegisterInUse { .. }),
        "{error:?}"
    );
    assert_eq!(error.code(), ErrorCode::Conflict);
    let message = error.to_string();
    assert!(message.contains("dev-one"), "{message}");
    assert!(message.contains("another name"), "{message}");
    assert!(message.contains("delete those VMs"), "{message}");

    // `--kernel PATH` is refused before anything is imported.
    let bogus_kernel = fixture.temp.path().join("user/new-vmlinux");
    fs_err::write(&bogus_kernel, b"a new kernel").expect("kernel file");
    let request = serde_json::from_value(serde_json::json!({
        "name": "base",
        "rootfs": second.display().to_string(),
        "kernel": bogus_kernel.display().to_string(),
    }))
    .expect("register request");
    let error = register(&fixture.state, &request, &ProgressSink::discard())
        .expect_err("VMs use the image");
    assert!(
        matches!(error, ImageError::ReRegisterInUse { .. }),
        "{error:?}"
    );

    assert_eq!(
        fixture.image("base").as_ref(),
        Some(&before),
        "row unchanged"
    );
    assert_eq!(before.rootfs, first);
    assert!(fixture.kernel_row("base").is_some(), "its kernel is kept");
    assert_eq!(
        fs_err::read_to_string(kernel_dir.join("vmlinux")).expect("kernel file kept"),
        "kernel base"
    );
    assert!(
        first.is_file() && second.is_file(),
        "the user's files are kept"
    );
}

#[test]
fn deleting_an_image_removes_the_kernel_it_owns() {
    let fixture = fixture();
    let solo_dir = fixture.kernel("solo", "image:solo");
    let stock_dir = fixture.kernel("stock", "import");
    let rootfs = fixture.rootfs("solo.ext4");
    fixture
        .register("solo", &rootfs, "solo")
        .expect("register solo");
    fixture
        .register("plain", &fixture.rootfs("plain.ext4"), "stock")
        .expect("register plain");

    let deleted = delete(&fixture.state, &image_name("solo"), false).expect("delete solo");
    assert!(fixture.image("solo").is_none());
    assert!(
        fixture.kernel_row("solo").is_none(),
        "its kernel row is gone"
    );
    assert!(!solo_dir.exists(), "its kernel's directory is gone");
    assert_eq!(deleted.removed_files, [solo_dir.display().to_string()]);
    assert!(rootfs.is_file(), "the unmanaged rootfs is the user's");

    // A kernel that is not an image's own stays.
    delete(&fixture.state, &image_name("plain"), false).expect("delete plain");
    assert!(fixture.kernel_row("stock").is_some());
    assert!(stock_dir.join("vmlinux").is_file());

    // An owned kernel that outlived its image's switch to another kernel
    // (because another image still booted it) goes with its last user.
    let owner_dir = fixture.kernel("owner", "image:owner");
    fixture
        .register("owner", &fixture.rootfs("owner.ext4"), "owner")
        .expect("register owner");
    fixture
        .register("borrower", &fixture.rootfs("borrower.ext4"), "owner")
        .expect("register borrower");
    fixture
        .register("owner", &fixture.rootfs("owner.ext4"), "stock")
        .expect("re-register owner with another kernel");
    assert!(
        fixture.kernel_row("owner").is_some(),
        "borrower still boots it"
    );
    delete(&fixture.state, &image_name("borrower"), false).expect("delete borrower");
    assert!(
        fixture.kernel_row("owner").is_none(),
        "its last user is gone"
    );
    assert!(!owner_dir.exists());
}

#[test]
fn re_registering_with_another_kernel_removes_the_kernel_it_owned() {
    let fixture = fixture();
    let own_dir = fixture.kernel("switcher", "image:switcher");
    fixture.kernel("stock", "import");
    let rootfs = fixture.rootfs("switcher.ext4");
    fixture
        .register("switcher", &rootfs, "switcher")
        .expect("register");
    let info = fixture
        .register("switcher", &rootfs, "stock")
        .expect("re-register with another kernel");
    assert_eq!(info.kernel.as_str(), "stock");
    assert!(
        fixture.kernel_row("switcher").is_none(),
        "the old own kernel is gone"
    );
    assert!(!own_dir.exists());
}

#[test]
fn managed_files_outside_the_store_are_never_removed() {
    let fixture = fixture();
    let outside = fixture.temp.path().join("user/not-banger");
    fs_err::create_dir_all(&outside).expect("dir");
    let root = images_dir(&fixture.state.paths().state_dir);
    assert!(!remove_managed(&root, &outside).expect("refused quietly"));
    assert!(!remove_managed(&root, &root.join("../../user/not-banger")).expect("refused"));
    assert!(!remove_managed(&root, &root).expect("refused"));
    assert!(outside.is_dir());
}

#[test]
fn register_through_a_symlink_records_the_file_itself() {
    let fixture = fixture();
    fixture.kernel("plain", "import");
    let real = fixture.rootfs("real-root.ext4");
    let link = fixture.temp.path().join("user/current-root.ext4");
    fs_err::os::unix::fs::symlink(&real, &link).expect("link the rootfs");
    fixture
        .register("linked", &link, "plain")
        .expect("register through the link");
    let image = fixture.image("linked").expect("registered");
    assert_eq!(
        image.rootfs,
        fs_err::canonicalize(&real).expect("real path"),
        "the file itself is recorded, so VMs can open it without following links"
    );
}

#[test]
fn the_default_image_is_built_from_its_catalog_recipe() {
    let minimal = default_image_request(&image_name("debian-bookworm-minimal"));
    assert!(minimal.minimal && !minimal.docker);
    assert_eq!(minimal.suite.as_deref(), Some("bookworm"));
    assert!(minimal.kernel_ref.is_some());
    let docker = default_image_request(&image_name("debian-bookworm-docker"));
    assert!(!docker.minimal && docker.docker);
    let provisioned = default_image_request(&image_name("debian-bookworm"));
    assert!(!provisioned.minimal && !provisioned.docker);
    // A name the catalog does not know gets the provisioned Debian default.
    let other = default_image_request(&image_name("my-default"));
    assert_eq!(
        other,
        banger_api::images::ImageBuildRequest::new(image_name("my-default"))
    );
}

#[test]
fn from_image_refuses_conflicts_missing_and_unsupported_bases_before_any_work() {
    let fixture = fixture();
    fixture.kernel("k1", "test");
    let rootfs = fixture.rootfs("plain.ext4");
    fixture.register("plain", &rootfs, "k1").expect("register");
    let request = |from: &str| banger_api::images::ImageBuildRequest {
        kernel_ref: Some(KernelName::parse("k1").expect("kernel name")),
        from_image: Some(image_name(from)),
        ..banger_api::images::ImageBuildRequest::new(image_name("provisioned"))
    };
    let build = |request: &banger_api::images::ImageBuildRequest| {
        build::build(&fixture.state, request, &ProgressSink::discard())
    };

    let minimal = banger_api::images::ImageBuildRequest {
        minimal: true,
        ..request("plain")
    };
    let error = build(&minimal).expect_err("--minimal conflicts");
    assert!(
        matches!(error, ImageError::FromImageConflict { option: "minimal" }),
        "{error}"
    );
    let suite = banger_api::images::ImageBuildRequest {
        suite: Some("bookworm".into()),
        ..request("plain")
    };
    let error = build(&suite).expect_err("--suite conflicts");
    assert!(
        matches!(error, ImageError::FromImageConflict { option: "suite" }),
        "{error}"
    );

    let error = build(&request("absent")).expect_err("no such base");
    assert_eq!(error.code(), ErrorCode::NotFound, "{error}");

    // An empty filesystem: no os-release.
    let error = build(&request("plain")).expect_err("unsupported base");
    assert_eq!(error.code(), ErrorCode::BadRequest, "{error}");
    let chain = crate::error::error_chain(&error);
    assert!(
        chain.contains("image plain cannot be provisioned")
            && chain.contains("glibc Debian or Ubuntu"),
        "{chain}"
    );
    assert!(fixture.image("provisioned").is_none());
    let images = super::images_dir(&fixture.state.paths().state_dir);
    let leftovers: Vec<_> = fs_err::read_dir(&images)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leftovers
            .iter()
            .all(|name| !name.to_string_lossy().starts_with(".partial")),
        "{leftovers:?}"
    );
}

#[test]
fn a_build_that_ran_out_of_space_is_unavailable_not_internal() {
    use banger_image::image_build::ImageBuildError;
    let build = |source| ImageError::Build {
        name: "img".into(),
        log: PathBuf::from("/state/logs/image-build-img.log"),
        source: Box::new(source),
    };
    let full = build(ImageBuildError::NoSpace {
        out_dir: PathBuf::from("/state/images/.partial-img-1"),
        cache: PathBuf::from("/cache/apt-archives/bookworm"),
        line: "tar: x.deb: Cannot write: No space left on device".into(),
        log: PathBuf::from("/state/logs/image-build-img.log"),
    });
    assert_eq!(full.code(), ErrorCode::Unavailable);
    let chain = crate::error::error_chain(&full);
    assert!(chain.contains("ran out of disk space"), "{chain}");
    let other = build(ImageBuildError::Mmdebstrap {
        status: "exit status: 1".into(),
        tail: "E: broken".into(),
        log: PathBuf::from("/state/logs/image-build-img.log"),
    });
    assert_eq!(other.code(), ErrorCode::Internal);
}
