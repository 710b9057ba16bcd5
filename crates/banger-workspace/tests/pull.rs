//! Pull against a fake VM (a local `sh -c` standing in for ssh).

mod common;

use std::path::Path;

use banger_workspace::{Mode, PrepareOptions, PullError, PullOptions, PullOutcome, pull};
use common::{World, git, git_raw, one_commit_repo, write};

/// Everything about the host checkout a pull must not change.
fn host_state(repo: &Path) -> (String, String, String, String) {
    (
        git(repo, &["rev-parse", "HEAD"]),
        git(repo, &["symbolic-ref", "HEAD"]),
        git_raw(repo, &["status", "--porcelain"]),
        git_raw(repo, &["ls-files", "-s", "--debug"]),
    )
}

fn prepared(world: &World, name: &str, mode: Mode) -> std::path::PathBuf {
    let guest = world.guest(name);
    let options = PrepareOptions {
        mode,
        ..PrepareOptions::default()
    };
    world.prepare(&guest, options).expect("prepare");
    guest
}

fn pull_options(guest: &Path) -> PullOptions {
    let mut options = PullOptions::new("devbox");
    options.guest_path = guest.to_str().expect("utf-8").to_owned();
    options
}

/// Pulls `guest` with the default options and expects a branch.
fn pull_default(world: &World, guest: &Path) -> banger_workspace::PullReport {
    pulled(
        pull(
            &world.repo,
            &pull_options(guest),
            &world.ssh,
            &world.target(),
        )
        .expect("pull"),
    )
}

fn pulled(outcome: PullOutcome) -> banger_workspace::PullReport {
    match outcome {
        PullOutcome::Pulled(report) => report,
        PullOutcome::NothingToPull { .. } => panic!("expected a pull, got nothing"),
    }
}

#[test]
fn guest_commits_and_uncommitted_work_arrive_as_a_branch() {
    let world = World::new();
    let base = git(&world.repo, &["rev-parse", "HEAD"]);
    let guest = prepared(&world, "repo", Mode::Shallow);
    // Guest: one commit (with the default identity unset: the host's
    // user.name was copied), then an edit and a new untracked file.
    write(
        &guest.join("src/b.rs"),
        "fn main() { println!(\"guest\"); }\n",
    );
    git(&guest, &["commit", "-q", "-am", "guest commit"]);
    write(&guest.join("a.txt"), "edited in guest\n");
    write(&guest.join("fresh.txt"), "new in guest\n");
    let guest_status = git_raw(&guest, &["status", "--porcelain"]);
    let guest_head = git(&guest, &["rev-parse", "HEAD"]);
    let guest_index = fs_err::read(guest.join(".git/index")).expect("index");

    // Host: dirty state that must survive untouched.
    write(&world.repo.join("a.txt"), "host edit\n");
    write(&world.repo.join("staged.txt"), "staged\n");
    git(&world.repo, &["add", "staged.txt"]);
    write(&world.repo.join("untracked.txt"), "u\n");
    let before = host_state(&world.repo);

    let report = pull_default(&world, &guest);
    assert_eq!(host_state(&world.repo), before, "host checkout untouched");
    assert_eq!(report.branch, "banger/devbox");
    assert_eq!(report.commits, 2);
    assert!(report.uncommitted_commit);
    assert_eq!(report.old_tip, None);
    assert_eq!(
        git(&world.repo, &["rev-parse", "banger/devbox"]),
        report.tip
    );
    assert_eq!(
        git(&world.repo, &["log", "--format=%s", "banger/devbox"]),
        "banger: uncommitted changes in VM devbox\nguest commit\ninitial"
    );
    assert_eq!(git(&world.repo, &["rev-parse", "banger/devbox~2"]), base);
    assert_eq!(
        git(&world.repo, &["show", "banger/devbox:a.txt"]),
        "edited in guest"
    );
    assert_eq!(
        git(&world.repo, &["show", "banger/devbox:fresh.txt"]),
        "new in guest"
    );
    assert_eq!(
        git(&world.repo, &["show", "banger/devbox~1:src/b.rs"]),
        "fn main() { println!(\"guest\"); }"
    );
    assert_eq!(
        git(
            &world.repo,
            &["log", "-1", "--format=%an", "banger/devbox~1"]
        ),
        "Host Person"
    );

    // Guest untouched: same HEAD, index and status.
    assert_eq!(git(&guest, &["rev-parse", "HEAD"]), guest_head);
    assert_eq!(git_raw(&guest, &["status", "--porcelain"]), guest_status);
    assert_eq!(
        fs_err::read(guest.join(".git/index")).expect("index"),
        guest_index
    );

    // Pulling again with more guest work moves the branch forward.
    git(&guest, &["add", "-A"]);
    git(&guest, &["commit", "-q", "-m", "second guest commit"]);
    let again = pull_default(&world, &guest);
    assert!(!again.uncommitted_commit);
    assert_eq!(again.old_tip.as_deref(), Some(report.tip.as_str()));
    assert!(again.rewound, "the old wip commit is not an ancestor");
    assert_eq!(
        git(&world.repo, &["log", "-1", "--format=%s", "banger/devbox"]),
        "second guest commit"
    );
}

#[test]
fn wip_commit_uses_a_fixed_identity_when_none_is_configured() {
    let world = World::new();
    let guest = prepared(&world, "repo", Mode::Shallow);
    // prepare copied the host identity; the fake guest has no global one.
    git(&guest, &["config", "--unset", "user.name"]);
    git(&guest, &["config", "--unset", "user.email"]);
    write(&guest.join("a.txt"), "changed\n");
    let report = pull_default(&world, &guest);
    assert_eq!(report.commits, 1);
    assert_eq!(
        git(
            &world.repo,
            &["log", "-1", "--format=%an <%ae>", "banger/devbox"]
        ),
        "banger <banger@devbox.vm>"
    );
}

#[test]
fn nothing_to_pull_is_not_an_error() {
    let world = World::new();
    let guest = prepared(&world, "repo", Mode::Shallow);
    let outcome = pull(
        &world.repo,
        &pull_options(&guest),
        &world.ssh,
        &world.target(),
    )
    .expect("pull");
    assert_eq!(
        outcome,
        PullOutcome::NothingToPull {
            base: git(&world.repo, &["rev-parse", "HEAD"])
        }
    );
    assert!(
        git(&world.repo, &["branch", "--list", "banger/devbox"]).is_empty(),
        "no branch created"
    );
}

#[test]
fn a_checked_out_branch_is_refused() {
    let world = World::new();
    let guest = prepared(&world, "repo", Mode::Shallow);
    write(&guest.join("a.txt"), "changed\n");
    let mut options = pull_options(&guest);
    options.branch = Some("main".into());
    let error = pull(&world.repo, &options, &world.ssh, &world.target()).expect_err("refused");
    assert!(matches!(error, PullError::CheckedOut { .. }), "{error}");

    // Also in another worktree.
    let other = world.tmp.path().join("wt");
    git(
        &world.repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "side",
            other.to_str().expect("utf-8"),
        ],
    );
    options.branch = Some("side".into());
    let error = pull(&world.repo, &options, &world.ssh, &world.target()).expect_err("refused");
    assert!(error.to_string().contains("side"), "{error}");

    options.branch = Some("-bad".into());
    let error = pull(&world.repo, &options, &world.ssh, &world.target()).expect_err("bad name");
    assert!(matches!(error, PullError::BadBranchName { .. }), "{error}");
}

#[test]
fn a_diverged_custom_branch_needs_force_but_the_default_branch_moves() {
    let world = World::new();
    let guest = prepared(&world, "repo", Mode::Shallow);
    write(&guest.join("a.txt"), "changed\n");
    // An unrelated host commit on the custom branch.
    git(&world.repo, &["branch", "mine"]);
    git(&world.repo, &["checkout", "-q", "-b", "tmp"]);
    write(&world.repo.join("x.txt"), "x\n");
    git(&world.repo, &["add", "x.txt"]);
    git(&world.repo, &["commit", "-q", "-m", "host side"]);
    let host_side = git(&world.repo, &["rev-parse", "HEAD"]);
    git(&world.repo, &["checkout", "-q", "main"]);
    git(&world.repo, &["branch", "-f", "mine", &host_side]);

    let mut options = pull_options(&guest);
    options.branch = Some("mine".into());
    let error = pull(&world.repo, &options, &world.ssh, &world.target()).expect_err("diverged");
    assert!(matches!(error, PullError::Diverged { .. }), "{error}");
    assert_eq!(git(&world.repo, &["rev-parse", "mine"]), host_side);

    options.force = true;
    let report = pulled(pull(&world.repo, &options, &world.ssh, &world.target()).expect("forced"));
    assert_eq!(report.old_tip.as_deref(), Some(host_side.as_str()));
    assert!(report.rewound);

    // The default branch is banger's: it moves, reporting the old tip.
    git(&world.repo, &["branch", "banger/devbox", &host_side]);
    let report = pulled(
        pull(
            &world.repo,
            &pull_options(&guest),
            &world.ssh,
            &world.target(),
        )
        .expect("default"),
    );
    assert_eq!(report.old_tip.as_deref(), Some(host_side.as_str()));
    assert!(git(&world.repo, &["reflog", "banger/devbox"]).contains("banger: pull from VM devbox"));
}

#[test]
fn full_copy_guests_pull_from_the_recorded_base() {
    let world = World::new();
    let guest = prepared(&world, "full", Mode::FullCopy);
    write(&guest.join("a.txt"), "full copy edit\n");
    git(&guest, &["commit", "-q", "-am", "in full copy"]);
    let report = pull_default(&world, &guest);
    assert_eq!(report.commits, 1);
    assert!(!report.uncommitted_commit);
    assert_eq!(
        git(&world.repo, &["show", "banger/devbox:a.txt"]),
        "full copy edit"
    );
}

#[test]
fn a_base_the_host_lacks_is_a_clear_error() {
    let world = World::new();
    let guest = prepared(&world, "repo", Mode::Shallow);
    write(&guest.join("a.txt"), "changed\n");
    // An unrelated repository that never had the base commit.
    let stranger = world.tmp.path().join("stranger");
    one_commit_repo(&stranger, "z.txt", "z\n", "other");
    let error = pull(
        &stranger,
        &pull_options(&guest),
        &world.ssh,
        &world.target(),
    )
    .expect_err("missing base");
    assert!(matches!(error, PullError::MissingBase { .. }), "{error}");
}

#[test]
fn a_guest_path_without_a_repo_fails_clearly() {
    let world = World::new();
    let guest = world.guest("missing");
    let error = pull(
        &world.repo,
        &pull_options(&guest),
        &world.ssh,
        &world.target(),
    )
    .expect_err("no repo");
    assert!(
        error.to_string().contains("does not exist in the VM"),
        "{error}"
    );
}
