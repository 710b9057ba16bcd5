//! End-to-end VM suite: real bangerd, real Debian guests under QEMU (TCG on
//! hosts where KVM cannot run guests), inside a network namespace the test
//! creates. Boots are slow (~25-45 s each), so scenarios share VMs.
//!
//! The first `vm create` finds no image and builds the default Debian image
//! and pulls the default kernel itself, which the suite checks too. That
//! step needs a Debian mirror, so it runs in the host's namespace with
//! `--no-start` (a daemon that starts no VM never touches the host network);
//! everything that boots runs inside the test's own namespace.
//! With `BANGER_VMM=firecracker` on a KVM host the same suite drives
//! Firecracker.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::vm_suite::Suite;

impl Suite {
    fn links(&self) -> String {
        let output = self
            .netns
            .wrap(Command::new("ip").args(["-br", "link"]))
            .output()
            .expect("ip runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `dig @127.0.0.1 -p 42069 ARGS` inside the namespace.
    fn dig(&self, args: &[&str]) -> String {
        let mut all = vec!["@127.0.0.1", "-p", "42069", "+time=2", "+tries=1"];
        all.extend_from_slice(args);
        self.in_netns("dig", &all)
    }

    /// banger's nftables tables in the namespace.
    fn nft_banger(&self) -> String {
        let output = self
            .netns
            .wrap(Command::new("nft").args(["list", "table", "inet", "banger"]))
            .output()
            .expect("nft runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The ruleset without banger's own tables.
    fn foreign_ruleset(&self) -> String {
        let ruleset = self.in_netns("nft", &["list", "ruleset"]);
        let mut kept = String::new();
        let mut skipping = false;
        for line in ruleset.lines() {
            if line.starts_with("table ") {
                skipping = line.ends_with(" banger {");
            }
            if !skipping {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        kept
    }

    fn database_count(&self, sql: &str) -> String {
        let output = Command::new("sqlite3")
            .arg(self.env.paths().database())
            .arg(sql)
            .output()
            .expect("sqlite3 runs");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

/// Host allocation (st_blocks * 512) of `path`, not its apparent size.
fn allocated_bytes(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs_err::metadata(path).expect("stat a VM disk").blocks() * 512
}

/// Disks that give space back (docs/reliability.md): the image enables the
/// periodic and shutdown trims, and under QEMU (`discard=unmap`) a trim after
/// deleting 512 MiB in /root (the work disk) or 256 MiB under / (the
/// overlay's upper disk) returns at least 90% of it to the host.
/// Firecracker's block device has no discard, which the guest sees.
/// Returns, under QEMU, the work disk and its allocation with 256 MiB
/// deleted but not yet trimmed, for the check after `vm stop`.
fn disks_give_space_back(suite: &Suite) -> Option<(std::path::PathBuf, u64)> {
    assert_eq!(
        suite.ssh(
            "alpha",
            "systemctl is-enabled fstrim.timer banger-fstrim-shutdown.service"
        ),
        "enabled\nenabled\n"
    );
    let shown = suite.json(&["vm", "show", "alpha", "--json"]);
    let work = std::path::Path::new(shown["dir"].as_str().expect("VM dir")).join("work.ext4");
    suite.ssh(
        "alpha",
        "dd if=/dev/urandom of=/root/trim-me bs=1M count=512 iflag=fullblock status=none && sync",
    );
    let written = allocated_bytes(&work);
    let trimmed = suite.ssh("alpha", "rm /root/trim-me && sync && fstrim -av");
    let after = allocated_bytes(&work);
    if shown["backend"] == "firecracker" {
        assert!(
            !trimmed.contains("/root:"),
            "Firecracker's block device has no discard: {trimmed}"
        );
        return None;
    }
    assert!(
        trimmed.contains("/root:"),
        "the work disk is trimmed: {trimmed}"
    );
    let freed = written.saturating_sub(after);
    eprintln!(
        "trim: work.ext4 allocated {written} bytes with 512 MiB written, {after} after rm + fstrim: {freed} bytes back"
    );
    assert!(
        freed >= (512u64 << 20) / 10 * 9,
        "the host got {freed} bytes back of 512 MiB deleted ({written} -> {after}): {trimmed}"
    );
    // The overlay's upper disk too (files under / outside /root): the
    // initramfs exposes its mount at /run/banger/upper for fstrim.
    let overlay = work.with_file_name("overlay.ext4");
    suite.ssh(
        "alpha",
        "dd if=/dev/urandom of=/var/tmp/trim-me bs=1M count=256 iflag=fullblock status=none && sync",
    );
    let upper_written = allocated_bytes(&overlay);
    let upper_trimmed = suite.ssh("alpha", "rm /var/tmp/trim-me && sync && fstrim -av");
    let upper_after = allocated_bytes(&overlay);
    let upper_freed = upper_written.saturating_sub(upper_after);
    eprintln!(
        "trim: overlay.ext4 allocated {upper_written} bytes with 256 MiB written, {upper_after} after rm + fstrim: {upper_freed} bytes back"
    );
    assert!(
        upper_trimmed.contains("/run/banger/upper:"),
        "the overlay's upper disk is trimmed: {upper_trimmed}"
    );
    assert!(
        upper_freed >= (256u64 << 20) / 10 * 9,
        "the host got {upper_freed} bytes back of 256 MiB deleted under / ({upper_written} -> {upper_after}): {upper_trimmed}"
    );
    // The daemon reports the same allocation: vm show per disk, system df
    // per VM.
    let shown = suite.json(&["vm", "show", "alpha", "--json"]);
    let reported = shown["disks"]
        .as_array()
        .and_then(|disks| disks.iter().find(|disk| disk["name"] == "work"))
        .and_then(|disk| disk["allocated_bytes"].as_u64())
        .expect("the work disk in vm show");
    assert!(
        reported.abs_diff(after) < 64 << 20,
        "{reported} vs {after}: {shown}"
    );
    let df = suite.json(&["system", "df", "--json"]);
    let alpha_df = df["vms"]
        .as_array()
        .and_then(|vms| vms.iter().find(|vm| vm["name"] == "alpha"))
        .expect("alpha in system df");
    assert!(
        alpha_df["disks_bytes"].as_u64().unwrap_or(0) >= reported,
        "{df}"
    );
    // The trim at shutdown: 256 MiB written and deleted without a trim come
    // back once the VM stops (checked after the suite's `vm stop`).
    suite.ssh(
        "alpha",
        "dd if=/dev/urandom of=/root/trim-at-stop bs=1M count=256 iflag=fullblock status=none && sync && rm /root/trim-at-stop && sync",
    );
    Some((work.clone(), allocated_bytes(&work)))
}

fn pid_of(value: &serde_json::Value) -> rustix::process::Pid {
    let pid = i32::try_from(value["pid"].as_u64().expect("pid")).expect("pid fits");
    rustix::process::Pid::from_raw(pid).expect("non-zero pid")
}

#[test]
fn vm_lifecycle_end_to_end() {
    let mut suite = Suite::bare("life");
    // This suite checks the daemon's own build of the default image, so it
    // never reuses another suite's.
    suite
        .vars
        .push((common::vm_suite::REBUILD_VAR.to_owned(), "1".into()));

    // First create, in the host namespace (it needs the Debian mirror): no
    // image exists, so the default image is built and the default kernel
    // pulled on the way.
    let (alpha, stderr) = suite.create_in_host_namespace("alpha");
    assert!(
        stderr.contains("no image exists yet"),
        "the user is told about the image build: {stderr}"
    );
    assert_eq!(alpha["state"], "created");
    // From here on, everything happens inside the test's namespace, which
    // also holds a foreign nftables table banger must never touch.
    suite.in_netns("nft", &["add", "table", "ip", "foreign"]);
    suite.in_netns(
        "nft",
        &[
            "add",
            "chain",
            "ip",
            "foreign",
            "input",
            "{ type filter hook input priority 10; policy accept; }",
        ],
    );
    suite.in_netns(
        "nft",
        &[
            "add", "rule", "ip", "foreign", "input", "tcp", "dport", "9", "counter", "accept",
        ],
    );
    let foreign_before = suite.foreign_ruleset();
    suite.ok(&["vm", "start", "alpha"]);
    let images = suite.json(&["image", "list", "--json"]);
    assert_eq!(images[0]["name"], common::vm_suite::BARE_IMAGE);
    assert_eq!(images[0]["managed"], true);

    let uname = suite.ssh("alpha", "uname -a");
    assert!(uname.starts_with("Linux alpha "), "{uname}");
    // The random pool is fed by the host's entropy device, not left to
    // interrupt jitter (which stalls sshd and udev under emulation).
    let rng = suite.ssh(
        "alpha",
        "cat /sys/devices/virtual/misc/hw_random/rng_current",
    );
    assert!(rng.trim().starts_with("virtio_rng"), "{rng}");

    // The guest agent: ports (sshd, and a web server started now), stats,
    // the reminder after `vm ssh`, and doctor's agent line.
    suite.ssh(
        "alpha",
        "setsid nohup python3 -m http.server 8080 >/dev/null 2>&1 </dev/null &",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let ports = loop {
        let ports = suite.json(&["vm", "ports", "alpha", "--json"]);
        let has_web = ports["ports"]
            .as_array()
            .is_some_and(|all| all.iter().any(|port| port["port"] == 8080));
        if has_web || Instant::now() > deadline {
            break ports;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let all = ports["ports"].as_array().expect("ports");
    let ssh_port = all
        .iter()
        .find(|port| port["port"] == 22 && port["protocol"] == "tcp")
        .expect("sshd listens on 22");
    assert_eq!(ssh_port["guest_process"]["command"], "sshd", "{ports}");
    assert_eq!(ssh_port["endpoint"], "alpha.vm:22");
    let web = all
        .iter()
        .find(|port| port["port"] == 8080)
        .expect("http.server on 8080");
    assert_eq!(web["url"], "http://alpha.vm:8080/", "{ports}");
    assert!(
        web["guest_process"]["cmdline"]
            .as_str()
            .is_some_and(|cmd| cmd.contains("http.server")),
        "{ports}"
    );
    let stats = suite.json(&["vm", "stats", "alpha", "--json"]);
    let guest = &stats["guest"];
    let mem_total = guest["mem_total_bytes"].as_u64().expect("guest memory");
    assert!(
        (1u64 << 30..=2u64 << 30).contains(&mem_total),
        "2 GiB VM reports {mem_total} bytes: {stats}"
    );
    assert!(
        guest["uptime_secs"]
            .as_u64()
            .is_some_and(|uptime| uptime > 0),
        "{stats}"
    );
    assert!(
        guest["work_total_bytes"]
            .as_u64()
            .is_some_and(|total| total > 6u64 << 30),
        "8 GiB work disk: {stats}"
    );
    assert!(
        stats["host"]["vmm_rss_bytes"]
            .as_u64()
            .is_some_and(|rss| rss > 64 << 20),
        "{stats}"
    );
    let reminder = suite.run(&["vm", "ssh", "alpha", "--", "true"]);
    assert!(reminder.status.success());
    let stderr = String::from_utf8_lossy(&reminder.stderr);
    assert_eq!(
        stderr
            .lines()
            .filter(|line| line.contains("still running"))
            .count(),
        1,
        "one reminder line: {stderr}"
    );
    assert!(stderr.contains("banger vm stop alpha"), "{stderr}");
    let doctor: serde_json::Value =
        serde_json::from_slice(&suite.run(&["doctor", "--json"]).stdout).expect("doctor JSON");
    let agent_line = doctor["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|check| check["name"] == "guest-agent");
    assert_eq!(
        agent_line.map(|check| check["status"].clone()),
        Some(serde_json::json!("pass")),
        "{doctor}"
    );
    suite.ssh(
        "alpha",
        "echo work > /root/in-root && echo system > /etc/in-etc && sync",
    );
    let untrimmed = disks_give_space_back(&suite);

    // Stop and start: both the work disk and the overlay keep their files.
    suite.ok(&["vm", "stop", "alpha"]);
    if let Some((work, before)) = untrimmed {
        let after = allocated_bytes(&work);
        eprintln!("trim at shutdown: work.ext4 {before} -> {after} bytes");
        assert!(
            before.saturating_sub(after) >= (256u64 << 20) / 10 * 9,
            "banger-fstrim-shutdown.service gave back {} of 256 MiB ({before} -> {after})",
            before.saturating_sub(after)
        );
    }
    assert_eq!(
        suite.json(&["vm", "show", "alpha", "--json"])["state"],
        "stopped"
    );
    suite.ok(&["vm", "start", "alpha"]);
    assert_eq!(
        suite.ssh("alpha", "cat /root/in-root /etc/in-etc"),
        "work\nsystem\n"
    );
    suite.ok(&["vm", "restart", "alpha"]);
    assert_eq!(suite.ssh("alpha", "cat /root/in-root"), "work\n");

    // A second VM: distinct address, reachable from the first over the bridge.
    let beta = suite.json(&[
        "vm", "create", "--name", "beta", "--memory", "1024", "--json",
    ]);
    let alpha = suite.json(&["vm", "show", "alpha", "--json"]);
    assert_ne!(alpha["ip"], beta["ip"]);
    let ping = suite.ssh(
        "alpha",
        &format!(
            "ping -c 1 -W 5 {} >/dev/null && echo reachable",
            beta["ip"].as_str().expect("ip")
        ),
    );
    assert_eq!(ping, "reachable\n");

    // DNS: `<name>.vm` from the host (banger's server) and from a guest
    // (the bridge listener is its first nameserver).
    let beta_ip = beta["ip"].as_str().expect("ip").to_owned();
    assert_eq!(suite.dig(&["beta.vm", "+short"]).trim(), beta_ip);
    assert!(suite.dig(&["nobody.vm"]).contains("status: NXDOMAIN"));
    assert!(suite.dig(&["example.com"]).contains("status: REFUSED"));
    assert_eq!(
        suite.ssh("alpha", "getent hosts beta.vm | cut -d' ' -f1"),
        format!("{beta_ip}\n")
    );

    // NAT: a fake internet host in a second namespace is reachable only
    // while NAT is on for the VM; rules live in banger's table only.
    let internet = suite.fake_internet();
    let fetch = "curl -s -m 5 -o /dev/null -w '%{http_code}' http://198.51.100.2:8000/ || true";
    assert_ne!(suite.ssh("alpha", fetch), "200", "no NAT: no way out");
    suite.ok(&["vm", "set", "alpha", "beta", "--nat"]);
    assert_eq!(
        suite.ssh("alpha", fetch),
        "200",
        "NAT on: reaches the internet host"
    );
    assert!(
        suite
            .nft_banger()
            .contains(alpha["ip"].as_str().expect("ip")),
        "rules name the VM's address"
    );
    suite.ok(&["vm", "set", "beta", "--no-nat"]);
    assert_ne!(suite.ssh("beta", fetch), "200", "NAT off again: cut");
    assert_eq!(
        suite.ssh(
            "alpha",
            "curl -s -m 3 -o /dev/null -w '%{http_code}' http://169.254.169.254/ || true"
        ),
        "000"
    );
    drop(internet);

    // SIGKILL the daemon: the next command starts a new one, which adopts
    // the running VMs; SSH still works.
    let daemon = suite.json(&["daemon", "status", "--json"]);
    rustix::process::kill_process(pid_of(&daemon), rustix::process::Signal::KILL)
        .expect("kill daemon");
    std::thread::sleep(Duration::from_millis(300));
    let listed = suite.json(&["vm", "list", "--json"]);
    assert!(
        listed
            .as_array()
            .expect("array")
            .iter()
            .all(|vm| vm["state"] == "running"),
        "{listed}"
    );
    assert_ne!(
        suite.json(&["daemon", "status", "--json"])["pid"],
        daemon["pid"]
    );
    assert_eq!(suite.ssh("beta", "hostname"), "beta\n");
    assert!(
        suite
            .nft_banger()
            .contains(alpha["ip"].as_str().expect("ip")),
        "NAT rules rebuilt by the new daemon"
    );

    // SIGKILL beta's VMM (adopted by the new daemon: not its child): the
    // daemon's watcher notices at once (within 2 s, plus the CLI's own time
    // here) and records it stopped; a start brings it back with its data.
    suite.ssh("beta", "echo kept > /root/kept && sync");
    let beta = suite.json(&["vm", "show", "beta", "--json"]);
    rustix::process::kill_process(pid_of(&beta), rustix::process::Signal::KILL).expect("kill VMM");
    suite.wait_for_state("beta", "stopped", Duration::from_secs(3));
    let reason = suite.json(&["vm", "show", "beta", "--json"])["last_error"].clone();
    assert!(
        reason
            .as_str()
            .is_some_and(|e| e.contains("the VMM exited on its own")),
        "{reason}"
    );
    suite.ok(&["vm", "start", "beta"]);
    assert_eq!(suite.ssh("beta", "cat /root/kept"), "kept\n");

    // Everything the daemon wrote (images, kernels, VM disks and keys,
    // database, logs, sockets) is owner-only, but for the documented
    // exceptions.
    suite.assert_owner_only(rustix::process::geteuid().as_raw());

    // Delete leaves nothing: no TAP, no files, no row, no known_hosts entry.
    let taps: Vec<String> = ["alpha", "beta"]
        .iter()
        .map(|vm| {
            suite.json(&["vm", "show", vm, "--json"])["tap"]
                .as_str()
                .expect("tap")
                .to_owned()
        })
        .collect();
    let refused = suite.run(&["vm", "delete", "alpha"]);
    assert!(
        !refused.status.success(),
        "deleting a running VM needs --force"
    );
    suite.ok(&["vm", "delete", "--force", "alpha", "beta"]);
    let links = suite.links();
    for tap in &taps {
        assert!(
            !links.contains(&format!("{tap} ")),
            "TAP {tap} left behind:\n{links}"
        );
    }
    for vm in ["alpha", "beta"] {
        assert!(
            !suite.env.paths().state_dir.join("vms").join(vm).exists(),
            "files of {vm} left behind"
        );
        assert!(
            !suite.env.paths().runtime_dir.join("vms").join(vm).exists(),
            "runtime dir of {vm} left behind"
        );
    }
    assert_eq!(suite.database_count("SELECT count(*) FROM vms"), "0");
    let known_hosts = fs_err::read_to_string(suite.env.paths().state_dir.join("ssh/known_hosts"))
        .unwrap_or_default();
    assert!(
        !known_hosts.contains("alpha.vm") && !known_hosts.contains("beta.vm"),
        "{known_hosts}"
    );
    assert_eq!(suite.json(&["vm", "list", "--json"]), serde_json::json!([]));
    let rules = suite.nft_banger();
    assert!(
        !rules.contains(alpha["ip"].as_str().expect("ip")),
        "no rule of a deleted VM: {rules}"
    );
    assert_eq!(
        suite.foreign_ruleset(),
        foreign_before,
        "nothing outside banger's tables changed"
    );
    assert!(
        suite.dig(&["alpha.vm"]).contains("status: NXDOMAIN"),
        "record gone with the VM"
    );

    // vm run: the exit status propagates; --rm leaves no VM.
    let ran = suite.run(&["vm", "run", "--name", "gamma", "--", "sh", "-c", "exit 7"]);
    assert_eq!(
        ran.status.code(),
        Some(7),
        "{}{}",
        String::from_utf8_lossy(&ran.stderr),
        suite.consoles()
    );
    suite.ok(&["vm", "delete", "--force", "gamma"]);
    suite.ok(&["vm", "run", "--rm", "--", "true"]);
    assert_eq!(suite.json(&["vm", "list", "--json"]), serde_json::json!([]));
    let leftovers = suite.netns.pids().len();
    let daemons = suite.env.daemon_pids().len();
    assert_eq!(
        leftovers, daemons,
        "only the daemon is left in the namespace"
    );
}
