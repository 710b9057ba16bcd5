//! The build itself: mmdebstrap's command line and output, the staging
//! directory that is always cleaned up, sizing and `mkfs.ext4 -d`.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use super::progress::ProgressParser;
use super::{
    BuildMode, BuiltImage, CUSTOMISATION_VERSION, CUSTOMISE_SCRIPT, DEFAULT_MIRROR,
    ImageBuildError, ImageBuildSpec, ROOTFS_LABEL, WORK_LABEL, base, io_err, resolve_packages,
    rootfs_size, secs, shell_quote, validate_mirror, validate_suite,
};
use crate::provision::{
    BaseRecord, DEFAULT_REGISTRY, PROVISION_SCRIPT, Plan, ProvisionRecord, ProvisionSpec, fetch,
    stage,
};

const ROOTFS: &str = "rootfs.ext4";
const WORK_SEED: &str = "work-seed.ext4";

/// mmdebstrap's arguments (without the program name) for installing
/// `packages` from `suite` at `mirror` into the directory `tree`, reusing and
/// refreshing the `.deb` cache: `cache_in` is synced into the chroot's
/// `/var/cache/apt/archives` before anything is downloaded and everything apt
/// used is synced out to `cache_out` (an existing, empty directory) before
/// mmdebstrap's cleanup empties it. `--skip=essential/unlink` keeps the
/// essential packages there too. `customise_hook` is an executable file (the
/// customisation script) run with the tree as its argument.
#[allow(clippy::too_many_arguments)]
pub fn mmdebstrap_args(
    mode: BuildMode,
    suite: &str,
    mirror: &str,
    packages: &[String],
    tree: &Path,
    cache_in: &Path,
    cache_out: &Path,
    customise_hook: &Path,
) -> Vec<OsString> {
    let mut sync_in = OsString::from("sync-in ");
    sync_in.push(shell_quote(cache_in.as_os_str()));
    sync_in.push(" /var/cache/apt/archives/");
    let mut sync_out = OsString::from("sync-out /var/cache/apt/archives ");
    sync_out.push(shell_quote(cache_out.as_os_str()));
    let mut args: Vec<OsString> = [
        "--verbose",
        mode.as_arg(),
        "--variant=minbase",
        "--format=directory",
        "--skip=essential/unlink",
        // dpkg's fsyncs cost a large part of the install time, and a crash
        // mid-build discards the tree anyway. mmdebstrap leaves this option in
        // the tree's dpkg.cfg.d; the customisation script removes it again.
        "--dpkgopt=force-unsafe-io",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    // Names were validated (no commas, spaces or leading dashes), so one
    // comma-separated --include is unambiguous.
    args.push(format!("--include={}", packages.join(",")).into());
    args.push(r#"--setup-hook=mkdir -p "$1"/var/cache/apt/archives/"#.into());
    let mut hook = OsString::from("--setup-hook=");
    hook.push(sync_in);
    args.push(hook);
    let mut hook = OsString::from("--customize-hook=");
    hook.push(sync_out);
    args.push(hook);
    // An executable file is run directly (no shell), whatever its path holds.
    let mut hook = OsString::from("--customize-hook=");
    hook.push(customise_hook);
    args.push(hook);
    // "--" ends the options: suite, target and mirror are positional only.
    args.push("--".into());
    args.push(suite.into());
    args.push(tree.as_os_str().to_owned());
    args.push(mirror.into());
    args
}

/// Everything created in `out_dir` and the cache during a build; removed on
/// drop, so a failed (or successful) build leaves only the renamed results.
struct Staging {
    dir: PathBuf,
    files: Vec<PathBuf>,
    cache_new: Option<PathBuf>,
    helper: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = fs_err::remove_file(f);
        }
        if let Some(c) = &self.cache_new {
            let _ = fs_err::remove_dir_all(c);
        }
        // Unprivileged builds leave files owned by subuids that only the user
        // namespace can delete.
        if self.helper && self.dir.exists() {
            let _ = Command::new("mmdebstrap")
                .arg("--unshare-helper")
                .args(["rm", "-rf", "--"])
                .arg(&self.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = fs_err::remove_dir_all(&self.dir);
    }
}

/// Where `program` is: on PATH, else in /usr/sbin or /sbin, which are not on
/// an unprivileged user's PATH on Debian but hold e2fsprogs' tools.
pub(super) fn find_program(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

/// A command, run through `mmdebstrap --unshare-helper` when `helper` is set
/// (so it sees the tree's in-namespace ownership).
fn tool(program: &str, helper: bool) -> Command {
    let program = find_program(program);
    if helper {
        let mut c = Command::new("mmdebstrap");
        c.arg("--unshare-helper").arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run_tool(mut cmd: Command, name: &str, path: &Path) -> Result<String, ImageBuildError> {
    let out = cmd
        .output()
        .map_err(|source| ImageBuildError::ToolMissing {
            tool: name.to_owned(),
            package: match name {
                "mkfs.ext4" | "debugfs" => "e2fsprogs",
                "find" => "findutils",
                _ => "coreutils",
            }
            .to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(ImageBuildError::Tool {
            tool: name.to_owned(),
            path: path.to_owned(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `du` of `dir`: (bytes on disk, inodes).
fn tree_usage(dir: &Path, helper: bool) -> Result<(u64, u64), ImageBuildError> {
    let parse = |flag: &str| -> Result<u64, ImageBuildError> {
        let mut cmd = tool("du", helper);
        cmd.args(["-s", "-x", flag]).arg(dir);
        let out = run_tool(cmd, "du", dir)?;
        out.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ImageBuildError::Tool {
                tool: "du".into(),
                path: dir.to_owned(),
                detail: format!("unexpected output {out:?}"),
            })
    };
    Ok((parse("-B1")?, parse("--inodes")?))
}

fn mkfs(
    image: &Path,
    size: u64,
    src: &Path,
    label: &str,
    journal: bool,
    inodes: Option<u64>,
    helper: bool,
) -> Result<(), ImageBuildError> {
    let f = fs_err::File::create(image).map_err(io_err(image))?;
    f.set_len(size).map_err(io_err(image))?;
    drop(f);
    // Inside the user namespace the caller's uid is unmapped, so mkfs (as the
    // namespace's root) may write the caller's file only through the "other"
    // bits. The file sits in a 0711 directory under a name nobody can list,
    // and is 0644 again right after mkfs.
    let set_mode = |mode: u32| {
        fs_err::set_permissions(image, std::fs::Permissions::from_mode(mode)).map_err(io_err(image))
    };
    if helper {
        set_mode(0o666)?;
    }
    let mut cmd = tool("mkfs.ext4", helper);
    // -m 0: no blocks reserved for root; root_owner: the filesystem root is
    // root's whatever uid runs mkfs.
    cmd.args(["-q", "-F", "-m", "0", "-E", "root_owner=0:0", "-L", label]);
    if !journal {
        cmd.args(["-O", "^has_journal"]);
    }
    if let Some(n) = inodes {
        cmd.arg("-N").arg(n.to_string());
    }
    cmd.arg("-d").arg(src).arg(image);
    run_tool(cmd, "mkfs.ext4", image)?;
    set_mode(0o644)
}

/// `name=version` of every installed package in the tree's dpkg status file.
fn installed_packages(tree: &Path) -> Result<Vec<String>, ImageBuildError> {
    let status = tree.join("var/lib/dpkg/status");
    let text = fs_err::read_to_string(&status).map_err(io_err(&status))?;
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let field = |name: &str| {
            para.lines()
                .find_map(|l| l.strip_prefix(name).map(str::trim))
                .unwrap_or("")
        };
        if field("Status:") == "install ok installed" {
            out.push(format!("{}={}", field("Package:"), field("Version:")));
        }
    }
    out.sort();
    Ok(out)
}

/// Runs mmdebstrap, copying all output to `log` and reporting progress.
/// What a failed mmdebstrap said of a full disk, if anything.
fn no_space_line(line: &str) -> bool {
    line.contains("No space left on device") || line.contains("Disk quota exceeded")
}

/// Runs mmdebstrap; `out_dir` and `cache` are named when a disk fills up.
fn run_mmdebstrap(
    args: &[OsString],
    log: &Path,
    (out_dir, cache): (&Path, &Path),
    progress: &mut dyn FnMut(&str, &str),
) -> Result<(), ImageBuildError> {
    let log_file = fs_err::File::create(log).map_err(io_err(log))?;
    let log_file = Arc::new(Mutex::new(log_file));
    let mut child = Command::new("mmdebstrap")
        .args(args)
        .env("BANGER_CUSTOMISATION", CUSTOMISATION_VERSION.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ImageBuildError::ToolMissing {
            tool: "mmdebstrap".into(),
            package: "mmdebstrap".into(),
            source,
        })?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    let streams: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    for stream in streams.into_iter().flatten() {
        let tx = tx.clone();
        let log_file = Arc::clone(&log_file);
        readers.push(std::thread::spawn(move || {
            let mut r = BufReader::new(stream);
            let mut buf = Vec::new();
            while matches!(r.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                if let Ok(mut f) = log_file.lock() {
                    let _ = f.write_all(&buf);
                }
                let _ = tx.send(String::from_utf8_lossy(&buf).trim_end().to_owned());
                buf.clear();
            }
        }));
    }
    drop(tx);
    let mut parser = ProgressParser::default();
    // For the error message: apt/mmdebstrap "E:" lines if any, else the
    // last few lines.
    let mut tail: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut no_space: Option<String> = None;
    for line in rx {
        if let Some((stage, msg)) = parser.line(&line) {
            progress(stage, &msg);
        }
        if no_space.is_none() && no_space_line(&line) {
            no_space = Some(line.clone());
        }
        if line.starts_with("E: ") && errors.len() < 4 {
            errors.push(line.clone());
        }
        tail.push(line);
        if tail.len() > 5 {
            tail.remove(0);
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait().map_err(io_err(log))?;
    if let (false, Some(line)) = (status.success(), no_space) {
        return Err(ImageBuildError::NoSpace {
            out_dir: out_dir.to_owned(),
            cache: cache.to_owned(),
            line,
            log: log.to_owned(),
        });
    }
    if !status.success() {
        return Err(ImageBuildError::Mmdebstrap {
            status: status.to_string(),
            tail: if errors.is_empty() { tail } else { errors }.join(" | "),
            log: log.to_owned(),
        });
    }
    Ok(())
}

fn note(log: &Path, text: &str) {
    if let Ok(mut f) = fs_err::OpenOptions::new().append(true).open(log) {
        let _ = writeln!(f, "banger: {text}");
    }
}

/// Provisioning made ready before mmdebstrap runs: the verified payload and
/// the hook script in the staging directory.
struct Prepared {
    payload: PathBuf,
    hook: PathBuf,
    record: ProvisionRecord,
}

impl Prepared {
    /// The two customize hooks: unpack the payload, then run the script.
    fn hooks(&self) -> Vec<OsString> {
        let mut tar_in = OsString::from("--customize-hook=tar-in ");
        tar_in.push(shell_quote(self.payload.as_os_str()));
        tar_in.push(" /");
        let mut script = OsString::from("--customize-hook=");
        script.push(&self.hook);
        vec![tar_in, script]
    }

    /// The record, with the versions Debian actually installed.
    fn finish(mut self, installed: &[String]) -> ProvisionRecord {
        self.record.installed_debian = installed
            .iter()
            .filter(|entry| {
                let name = entry.split('=').next().unwrap_or("");
                self.record.debian_packages.iter().any(|p| p == name)
            })
            .cloned()
            .collect();
        self.record
    }
}

/// Plans, fetches (verified, cached under `<cache_dir>/npm`) and stages the
/// pinned tools, and adds their Debian packages to `packages`. Fails before
/// anything is installed, so a failure leaves only the staging directory
/// (removed by the caller).
fn prepare_provision(
    provision: &ProvisionSpec,
    packages: &mut Vec<String>,
    staging: &Path,
    cache_dir: &Path,
    progress: &mut dyn FnMut(&str, &str),
) -> Result<Prepared, ImageBuildError> {
    let wrap = |source| ImageBuildError::Provision { source };
    let plan = Plan::load(provision.docker).map_err(wrap)?;
    for package in &plan.debian {
        if !packages.contains(package) {
            packages.push(package.clone());
        }
    }
    let registry = provision.registry.as_deref().unwrap_or(DEFAULT_REGISTRY);
    progress(
        "fetching tools",
        &format!(
            "{} pinned tools from {registry} (cached in {})",
            plan.tools.len(),
            cache_dir.join("npm").display()
        ),
    );
    let tarballs = fetch(&plan, registry, &cache_dir.join("npm"), &mut |message| {
        progress("fetching tools", message)
    })
    .map_err(wrap)?;
    let record = plan.record();
    let payload = staging.join("provision.tar");
    stage(&plan, &tarballs, &record, &payload, &mut |message| {
        progress("staging tools", message)
    })
    .map_err(wrap)?;
    let hook = staging.join("provision.sh");
    fs_err::write(&hook, PROVISION_SCRIPT).map_err(io_err(&hook))?;
    for (path, mode) in [(&hook, 0o755), (&payload, 0o644)] {
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err(path))?;
    }
    Ok(Prepared {
        payload,
        hook,
        record,
    })
}

pub(super) fn build(
    spec: &ImageBuildSpec,
    out_dir: &Path,
    cache_dir: &Path,
    log: &Path,
    progress: &mut dyn FnMut(&str, &str),
) -> Result<BuiltImage, ImageBuildError> {
    let start = Instant::now();
    // A base image decides the suite and the default mirror.
    let base_system = match &spec.base {
        Some(base) => Some(base::inspect(base).map_err(|source| ImageBuildError::Base {
            name: base.name.clone(),
            source,
        })?),
        None => None,
    };
    let suite = base_system
        .as_ref()
        .map_or(spec.suite.as_str(), |system| system.suite.as_str());
    validate_suite(suite)?;
    let mirror = spec.mirror.as_deref().unwrap_or(
        base_system
            .as_ref()
            .map_or(DEFAULT_MIRROR, |system| system.distro.mirror()),
    );
    validate_mirror(mirror)?;
    let mut packages = resolve_packages(spec)?;
    let mode = spec.mode.unwrap_or_else(BuildMode::detect);
    let helper = mode == BuildMode::Unshare && BuildMode::detect() != BuildMode::Root;

    let rootfs = out_dir.join(ROOTFS);
    let work_seed = out_dir.join(WORK_SEED);
    for p in [&rootfs, &work_seed] {
        if p.exists() {
            return Err(ImageBuildError::OutputExists { path: p.clone() });
        }
    }
    fs_err::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    let cache = cache_dir.join("apt-archives").join(suite);
    fs_err::create_dir_all(&cache).map_err(io_err(&cache))?;
    let tag = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let cache_new = cache_dir
        .join("apt-archives")
        .join(format!(".{suite}.new-{tag}"));
    // mmdebstrap parses special hooks as text (shellwords); a lossy path
    // would name a different directory.
    if cache_new.to_str().is_none() {
        return Err(io_err(&cache_new)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the cache path is not valid UTF-8, which mmdebstrap's hooks need",
        )));
    }
    let mut staging = Staging {
        dir: out_dir.join(format!(".image-build-{tag}")),
        files: Vec::new(),
        cache_new: Some(cache_new.clone()),
        helper,
    };
    fs_err::create_dir(&staging.dir).map_err(io_err(&staging.dir))?;
    // The hook runs inside mmdebstrap's user namespace in unshare mode, where
    // the caller's own files count as "other": it must be able to read them.
    let hook = staging.dir.join("customise.sh");
    fs_err::write(&hook, CUSTOMISE_SCRIPT).map_err(io_err(&hook))?;
    for (path, mode) in [(&staging.dir, 0o755), (&hook, 0o755)] {
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err(path))?;
    }
    fs_err::create_dir(&cache_new).map_err(io_err(&cache_new))?;
    let tree = staging.dir.join("tree");
    let root_dir = tree.join("root");

    progress(
        "resolving packages",
        &format!(
            "{} packages requested from Debian {} ({mirror}, mmdebstrap {mode:?} mode)",
            packages.len(),
            suite
        ),
    );
    let provisioned = match &spec.provision {
        Some(provision) => Some(prepare_provision(
            provision,
            &mut packages,
            &staging.dir,
            cache_dir,
            progress,
        )?),
        None => None,
    };
    let mut args = mmdebstrap_args(
        mode, suite, mirror, &packages, &tree, &cache, &cache_new, &hook,
    );
    if let Some(base) = &spec.base {
        progress(
            "reading base image",
            &format!("copying image {}'s files", base.name),
        );
        let tar = staging.dir.join("base.tar");
        base::extract(base, &staging.dir.join("base-tree"), &tar).map_err(|source| {
            ImageBuildError::Base {
                name: base.name.clone(),
                source,
            }
        })?;
        args = base::on_base_args(args, &tar);
    }
    if let Some(prepared) = &provisioned {
        // After banger's customisation: the payload, then the hook that
        // needs it in place. Both before "--" (options only).
        let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
        args.splice(at..at, prepared.hooks());
    }
    run_mmdebstrap(&args, log, (out_dir, &cache), progress)?;
    note(log, &format!("mmdebstrap finished after {}", secs(start)));

    // The new cache holds exactly what this build used, so it replaces the
    // old one (dropping superseded .deb versions).
    fs_err::remove_dir_all(&cache).map_err(io_err(&cache))?;
    fs_err::rename(&cache_new, &cache).map_err(io_err(&cache_new))?;
    staging.cache_new = None;
    let installed = installed_packages(&tree)?;
    let mut provision = provisioned.map(|prepared| prepared.finish(&installed));
    if let (Some(record), Some(base), Some(system)) = (&mut provision, &spec.base, &base_system) {
        record.base = Some(BaseRecord {
            name: base.name.clone(),
            id: base.id,
            os: system.pretty_name.clone(),
            suite: system.suite.clone(),
        });
    }

    // /root -> work seed; then /root is emptied to be the work disk's mount point.
    let (seed_bytes, _) = tree_usage(&root_dir, helper)?;
    let seed_needed = seed_bytes + 16 * (1 << 20);
    if spec.work_seed_size_bytes < seed_needed {
        return Err(ImageBuildError::WorkSeedTooSmall {
            requested: spec.work_seed_size_bytes,
            needed: seed_needed,
        });
    }
    progress(
        "writing work-seed.ext4",
        &format!(
            "{} MiB work seed from /root",
            spec.work_seed_size_bytes >> 20
        ),
    );
    let images = staging.dir.join("images");
    fs_err::create_dir(&images).map_err(io_err(&images))?;
    fs_err::set_permissions(&images, std::fs::Permissions::from_mode(0o711))
        .map_err(io_err(&images))?;
    let rootfs_tmp = images.join(format!("{ROOTFS}.tmp-{tag}"));
    let seed_tmp = images.join(format!("{WORK_SEED}.tmp-{tag}"));
    staging.files.extend([rootfs_tmp.clone(), seed_tmp.clone()]);
    mkfs(
        &seed_tmp,
        spec.work_seed_size_bytes,
        &root_dir,
        WORK_LABEL,
        true,
        None,
        helper,
    )?;
    // mkfs.ext4 -d gives the filesystem root mode 0755 whatever the source
    // directory's mode; /root must be 0700 (sshd's StrictModes, privacy). The
    // image file is the caller's own, so no namespace is needed here.
    let mut chmod = tool("debugfs", false);
    chmod
        .args(["-w", "-R", "set_inode_field / mode 040700"])
        .arg(&seed_tmp);
    run_tool(chmod, "debugfs", &seed_tmp)?;
    let mut empty = tool("find", helper);
    empty.arg(&root_dir).args(["-mindepth", "1", "-delete"]);
    run_tool(empty, "find", &root_dir)?;

    let (tree_bytes, inodes) = tree_usage(&tree, helper)?;
    let size = rootfs_size(tree_bytes, inodes, spec.rootfs_size_bytes)?;
    progress(
        "writing rootfs.ext4",
        &format!(
            "{} MiB tree into a {} MiB image",
            tree_bytes >> 20,
            size >> 20
        ),
    );
    // Enough inodes for the tree plus room to grow, whatever mke2fs would
    // derive from the size.
    let inode_count = inodes + inodes / 2 + 4096;
    mkfs(
        &rootfs_tmp,
        size,
        &tree,
        ROOTFS_LABEL,
        false,
        Some(inode_count),
        helper,
    )?;
    fs_err::rename(&rootfs_tmp, &rootfs).map_err(io_err(&rootfs))?;
    if let Err(e) = fs_err::rename(&seed_tmp, &work_seed) {
        let _ = fs_err::remove_file(&rootfs);
        return Err(io_err(&work_seed)(e));
    }
    staging.files.clear();
    drop(staging);
    note(log, &format!("image written after {}", secs(start)));
    progress("done", &format!("image built in {}", secs(start)));
    Ok(BuiltImage {
        rootfs,
        work_seed,
        packages,
        installed,
        rootfs_bytes: size,
        work_seed_bytes: spec.work_seed_size_bytes,
        tree_bytes,
        suite: suite.to_owned(),
        mode,
        elapsed: start.elapsed(),
        provision,
    })
}
