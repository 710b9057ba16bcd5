//! Prepare against a fake VM (a local `sh -c` standing in for ssh).

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use banger_workspace::{Mode, PlanError, PrepareError, PrepareOptions, plan};
use common::{World, git, git_raw, one_commit_repo, write};

fn options() -> PrepareOptions {
    PrepareOptions::default()
}

/// Host edits: a modified file, a deleted tracked file, an untracked file
/// and an ignored one.
fn dirty(world: &World) {
    write(&world.repo.join("a.txt"), "alpha edited\n");
    fs_err::remove_file(world.repo.join("src/c.txt")).expect("rm");
    write(&world.repo.join("new.txt"), "untracked\n");
    write(&world.repo.join("debug.log"), "ignored\n");
}

#[test]
fn shallow_copy_has_one_commit_the_branch_and_the_host_edits() {
    let world = World::new();
    dirty(&world);
    let guest = world.guest("repo");
    let mut calls = 0;
    let mut options = options();
    options.guest_path = guest.to_str().expect("utf-8").to_owned();
    let plan = plan(&world.repo.join("src"), &options).expect("plan from a subdirectory");
    assert_eq!(plan.repo_root(), world.repo);
    assert_eq!(plan.branch(), Some("main"));
    let report = banger_workspace::prepare(&plan, &world.ssh, &world.target(), &mut |p| {
        calls += 1;
        assert!(p.files_sent <= p.files_total);
    })
    .expect("prepare");
    assert!(calls > 0);
    assert!(report.bytes > 0);
    assert_eq!(report.head, git(&world.repo, &["rev-parse", "HEAD"]));

    assert_eq!(
        git_raw(&guest, &["status", "--porcelain"]),
        " M a.txt\n D src/c.txt\n",
        "exactly the host's tracked changes; untracked and ignored files not sent"
    );
    assert_eq!(
        git_raw(
            &world.repo,
            &["status", "--porcelain", "--untracked-files=no"]
        ),
        " M a.txt\n D src/c.txt\n"
    );
    assert_eq!(git(&guest, &["rev-list", "--count", "HEAD"]), "1");
    assert_eq!(git(&guest, &["symbolic-ref", "--short", "HEAD"]), "main");
    assert_eq!(
        git(&guest, &["rev-parse", "HEAD"]),
        git(&world.repo, &["rev-parse", "HEAD"])
    );
    assert_eq!(git(&guest, &["rev-parse", "refs/banger/base"]), report.head);
    assert_eq!(
        git(&guest, &["rev-parse", "--is-shallow-repository"]),
        "true"
    );
    assert_eq!(git(&guest, &["config", "user.name"]), "Host Person");
    assert_eq!(git(&guest, &["config", "user.email"]), "host@example.com");
    git(&guest, &["fsck", "--no-progress"]);
    assert!(!guest.join("new.txt").exists());
    assert!(!guest.join("debug.log").exists());
    assert_eq!(
        fs_err::read_to_string(guest.join("a.txt")).expect("read"),
        "alpha edited\n"
    );
    // Symlinks stay symlinks, even one pointing outside the repository.
    assert_eq!(
        fs_err::read_link(guest.join("link")).expect("link"),
        Path::new("a.txt")
    );
    assert_eq!(
        fs_err::read_link(guest.join("outside")).expect("link"),
        Path::new("/etc/hostname")
    );
    let mode = fs_err::metadata(guest.join("run.sh"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "executable bit kept: {mode:o}");
    let mode = fs_err::metadata(guest.join("a.txt"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0, "plain file stays plain: {mode:o}");
    // The guest can commit on top of the shallow history.
    git(&guest, &["commit", "-q", "-am", "guest work"]);
    assert_eq!(git(&guest, &["log", "-1", "--format=%an"]), "Host Person");
}

#[test]
fn unchanged_files_come_from_the_pack_not_twice() {
    let world = World::new();
    // 4 MiB that compress to almost nothing in the pack.
    let big = "banger ".repeat(600_000);
    write(&world.repo.join("big.txt"), &big);
    git(&world.repo, &["add", "big.txt"]);
    git(&world.repo, &["commit", "-q", "-m", "big"]);
    write(&world.repo.join("a.txt"), "alpha edited\n");
    let guest = world.guest("repo");
    let report = world.prepare(&guest, options()).expect("prepare");
    assert!(
        report.bytes < 1 << 20,
        "the unchanged 4 MiB file was streamed: {} bytes sent",
        report.bytes
    );
    assert_eq!(
        fs_err::read_to_string(guest.join("big.txt")).expect("read"),
        big,
        "written in the guest from the pack"
    );
    assert_eq!(git_raw(&guest, &["status", "--porcelain"]), " M a.txt\n");
    assert!(
        !guest.join(".git/banger-checkout").exists(),
        "the checkout list is removed"
    );
    // checkout-index recorded the files' stat data: nothing needs re-hashing.
    assert_eq!(git_raw(&guest, &["diff-files", "--name-only"]), "a.txt\n");
}

#[test]
fn include_untracked_sends_untracked_but_not_ignored() {
    let world = World::new();
    dirty(&world);
    let guest = world.guest("repo");
    let mut options = options();
    options.include_untracked = true;
    world.prepare(&guest, options).expect("prepare");
    assert_eq!(
        git_raw(&guest, &["status", "--porcelain"]),
        " M a.txt\n D src/c.txt\n?? new.txt\n"
    );
    assert!(!guest.join("debug.log").exists());
}

#[test]
fn dry_run_lists_exactly_what_is_sent() {
    let world = World::new();
    dirty(&world);
    let mut options = options();
    options.include_untracked = true;
    let plan = plan(&world.repo, &options).expect("plan");
    let files: Vec<PathBuf> = plan.files();
    let want: Vec<PathBuf> = [
        ".git/",
        ".gitignore",
        "a.txt",
        "link",
        "new.txt",
        "outside",
        "run.sh",
        "src/b.rs",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(files, want);
    assert!(!plan.has_tool_files());

    let plain = plan_files(&world, options_with(|_| {}));
    assert!(!plain.contains(&PathBuf::from("new.txt")));
}

#[test]
fn dry_run_listing_escapes_newlines_and_escape_sequences_in_file_names() {
    let world = World::new();
    let hostile = "a\nb\u{1b}[31m";
    write(&world.repo.join(hostile), "hostile name\n");
    git(&world.repo, &["add", "-A"]);
    git(&world.repo, &["commit", "-q", "-m", "hostile name"]);
    let plan = plan(&world.repo, &options()).expect("plan");
    assert!(plan.files().contains(&PathBuf::from(hostile)));
    let listing = plan.listing();
    assert!(
        listing.contains(&"a\\nb\\u{1b}[31m".to_owned()),
        "{listing:?}"
    );
    for line in &listing {
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
    assert_eq!(listing.len(), plan.files().len());
}

fn options_with(f: impl FnOnce(&mut PrepareOptions)) -> PrepareOptions {
    let mut options = options();
    f(&mut options);
    options
}

fn plan_files(world: &World, options: PrepareOptions) -> Vec<PathBuf> {
    plan(&world.repo, &options).expect("plan").files()
}

#[test]
fn tool_files_are_detected() {
    let world = World::new();
    write(&world.repo.join(".tool-versions"), "nodejs 22\n");
    git(&world.repo, &["add", "."]);
    git(&world.repo, &["commit", "-q", "-m", "tools"]);
    assert!(
        plan(&world.repo, &options())
            .expect("plan")
            .has_tool_files()
    );
}

#[test]
fn submodules_are_refused_in_shallow_mode_and_copied_in_full_copy() {
    let world = World::new();
    let other = world.tmp.path().join("other");
    one_commit_repo(&other, "lib.txt", "lib\n", "lib");
    git(
        &world.repo,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            other.to_str().expect("utf-8"),
            "sub",
        ],
    );
    git(&world.repo, &["commit", "-q", "-m", "add submodule"]);
    write(&world.repo.join("debug.log"), "ignored\n");
    write(&world.repo.join("scratch.txt"), "untracked\n");

    let error = plan(&world.repo, &options()).expect_err("shallow refuses submodules");
    assert!(matches!(error, PlanError::Submodules { .. }), "{error}");
    assert!(error.to_string().contains("--mode full_copy"), "{error}");

    let guest = world.guest("full");
    let mut options = options();
    options.mode = Mode::FullCopy;
    let files = plan_files(&world, options.clone());
    assert!(files.contains(&PathBuf::from(".git/HEAD")));
    assert!(files.contains(&PathBuf::from(".git/refs/banger/base")));
    assert!(files.contains(&PathBuf::from("sub/")));
    assert!(files.contains(&PathBuf::from("debug.log")));
    world.prepare(&guest, options).expect("full copy");
    assert_eq!(
        git_raw(&guest, &["status", "--porcelain"]),
        git_raw(&world.repo, &["status", "--porcelain"])
    );
    assert!(guest.join("debug.log").exists());
    assert!(guest.join("scratch.txt").exists());
    assert_eq!(
        fs_err::read_to_string(guest.join("sub/lib.txt")).expect("submodule file"),
        "lib\n"
    );
    assert_eq!(
        git(&guest, &["rev-parse", "refs/banger/base"]),
        git(&world.repo, &["rev-parse", "HEAD"])
    );
    assert_eq!(
        git(&guest, &["rev-list", "--count", "HEAD"]),
        "2",
        "full history"
    );
}

#[test]
fn non_empty_guest_path_is_refused_and_left_alone() {
    let world = World::new();
    let guest = world.guest("repo");
    write(&guest.join("precious.txt"), "guest work\n");
    let error = world.prepare(&guest, options()).expect_err("refused");
    assert!(
        matches!(error, PrepareError::GuestNotEmpty { .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("testvm.vm") && text.contains("--guest-path"),
        "{text}"
    );
    assert!(text.contains("pull"), "{text}");
    let entries: Vec<_> = fs_err::read_dir(&guest).expect("ls").collect();
    assert_eq!(entries.len(), 1);

    // An existing empty directory is fine.
    let empty = world.guest("empty");
    fs_err::create_dir_all(&empty).expect("mkdir");
    world
        .prepare(&empty, options())
        .expect("empty dir accepted");
}

#[test]
fn readonly_copy_has_no_write_bits() {
    let world = World::new();
    let guest = world.guest("ro");
    let mut options = options();
    options.readonly = true;
    world.prepare(&guest, options).expect("prepare");
    for path in [
        guest.clone(),
        guest.join("a.txt"),
        guest.join("src"),
        guest.join(".git/HEAD"),
    ] {
        let mode = fs_err::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o222, 0, "{} is {mode:o}", path.display());
    }
    // Make the temp dir removable again.
    std::process::Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(&guest)
        .status()
        .expect("chmod");
}

#[test]
fn from_and_branch_send_the_committed_tree_of_the_ref() {
    let world = World::new();
    let first = git(&world.repo, &["rev-parse", "HEAD"]);
    write(&world.repo.join("a.txt"), "second version\n");
    write(&world.repo.join("later.txt"), "added later\n");
    git(&world.repo, &["add", "-A"]);
    git(&world.repo, &["commit", "-q", "-m", "second"]);
    write(&world.repo.join("a.txt"), "uncommitted\n");

    let guest = world.guest("from");
    let mut options = options();
    options.from = Some("HEAD~1".into());
    options.branch = Some("feature/x".into());
    world.prepare(&guest, options).expect("prepare --from");
    assert_eq!(git(&guest, &["rev-parse", "HEAD"]), first);
    assert_eq!(
        git(&guest, &["symbolic-ref", "--short", "HEAD"]),
        "feature/x"
    );
    assert_eq!(git_raw(&guest, &["status", "--porcelain"]), "");
    assert_eq!(
        fs_err::read_to_string(guest.join("a.txt")).expect("read"),
        "alpha\n"
    );
    assert!(!guest.join("later.txt").exists());
    assert_eq!(
        fs_err::read_link(guest.join("link")).expect("link"),
        Path::new("a.txt")
    );
    let mode = fs_err::metadata(guest.join("run.sh"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);

    // --from a branch name keeps that branch; --branch alone uses HEAD.
    git(&world.repo, &["branch", "old", &first]);
    let guest = world.guest("from-branch");
    world
        .prepare(&guest, options_with(|o| o.from = Some("old".into())))
        .expect("prepare");
    assert_eq!(git(&guest, &["symbolic-ref", "--short", "HEAD"]), "old");
    let guest = world.guest("branch");
    world
        .prepare(&guest, options_with(|o| o.branch = Some("topic".into())))
        .expect("prepare");
    assert_eq!(git(&guest, &["symbolic-ref", "--short", "HEAD"]), "topic");
    assert_eq!(git_raw(&guest, &["status", "--porcelain"]), " M a.txt\n");

    let error = plan(&world.repo, &options_with(|o| o.from = Some("nope".into())))
        .expect_err("unknown ref");
    assert!(error.to_string().contains("\"nope\""), "{error}");
    let error = plan(
        &world.repo,
        &options_with(|o| o.branch = Some("bad..name".into())),
    )
    .expect_err("bad branch");
    assert!(matches!(error, PlanError::BadBranchName { .. }), "{error}");
}

#[test]
fn detached_head_stays_detached() {
    let world = World::new();
    git(&world.repo, &["checkout", "-q", "--detach"]);
    let guest = world.guest("detached");
    world.prepare(&guest, options()).expect("prepare");
    let head = fs_err::read_to_string(guest.join(".git/HEAD")).expect("HEAD");
    assert_eq!(head.trim(), git(&world.repo, &["rev-parse", "HEAD"]));
    assert_eq!(git_raw(&guest, &["status", "--porcelain"]), "");
}

#[test]
fn not_a_git_checkout_is_refused_with_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = plan(dir.path(), &options()).expect_err("not a repo");
    assert!(matches!(error, PlanError::NotACheckout { .. }));
    let text = error.to_string();
    assert!(text.contains(&*dir.path().to_string_lossy()), "{text}");
    assert!(text.contains("git checkout"), "{text}");
}

#[test]
fn non_utf8_and_long_paths_work() {
    let world = World::new();
    let odd = OsStr::from_bytes(b"caf\xe9 \xff.txt");
    fs_err::write(world.repo.join(odd), "latin-1 name\n").expect("write");
    let long = "d".repeat(60) + "/" + &"f".repeat(120) + ".txt";
    write(&world.repo.join(&long), "long\n");
    // Names that read as options to a command that takes paths, and a
    // newline.
    for name in ["-rf", "--force", "-", "two\nlines"] {
        write(&world.repo.join(name), &format!("{name:?}\n"));
    }
    git(&world.repo, &["add", "-A"]);
    git(&world.repo, &["commit", "-q", "-m", "odd names"]);
    // And the same, untracked and changed, for the paths sent as edits.
    write(&world.repo.join("-n"), "untracked\n");
    write(&world.repo.join("--force"), "edited\n");
    let guest = world.guest("odd");
    world
        .prepare(
            &guest,
            options_with(|options| options.include_untracked = true),
        )
        .expect("prepare");
    for name in ["-rf", "-", "two\nlines"] {
        assert_eq!(
            fs_err::read_to_string(guest.join(name)).expect("odd file"),
            format!("{name:?}\n")
        );
    }
    assert_eq!(
        fs_err::read_to_string(guest.join("--force")).expect("--force"),
        "edited\n"
    );
    assert_eq!(
        fs_err::read_to_string(guest.join("-n")).expect("-n"),
        "untracked\n"
    );
    assert_eq!(
        fs_err::read(guest.join(odd)).expect("odd file"),
        b"latin-1 name\n"
    );
    assert_eq!(fs_err::read(guest.join(&long)).expect("long"), b"long\n");
    // The guest's checkout sees exactly the host's two changes.
    assert_eq!(
        git_raw(&guest, &["status", "--porcelain"]),
        " M --force\n?? -n\n"
    );
}

#[test]
fn a_repository_on_another_filesystem_than_tmp_works() {
    // pack-objects renames its output from the repository's object
    // directory; a temp dir on another filesystem would fail (EXDEV).
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        banger_testkit::skip_or_fail("no /dev/shm (a second filesystem)");
        return;
    }
    let world = World::new();
    let moved = tempfile::tempdir_in(shm).expect("tempdir in /dev/shm");
    let repo = moved.path().join("repo");
    git(
        world.tmp.path(),
        &[
            "clone",
            "-q",
            world.repo.to_str().expect("utf-8"),
            repo.to_str().expect("utf-8"),
        ],
    );
    let guest = world.guest("shm");
    let options = PrepareOptions {
        guest_path: guest.to_str().expect("utf-8").to_owned(),
        ..PrepareOptions::default()
    };
    let plan = plan(&repo, &options).expect("plan");
    banger_workspace::prepare(&plan, &world.ssh, &world.target(), &mut |_| {})
        .expect("prepare from another filesystem");
    assert_eq!(git_raw(&guest, &["status", "--porcelain"]), "");
    let leftovers: Vec<_> = fs_err::read_dir(repo.join(".git/objects"))
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("banger-"))
        .collect();
    assert!(leftovers.is_empty(), "temp dir removed");
}
