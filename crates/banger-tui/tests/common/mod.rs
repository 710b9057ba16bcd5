//! Fixtures shared by the TUI's tests: VMs in every state, stats, ports,
//! sessions, images and kernels, and rendering into a test terminal.
#![allow(dead_code)]

use std::net::Ipv4Addr;

use banger_api::images::ImageInfo;
use banger_api::kernels::KernelInfo;
use banger_api::sessions::{SessionInfo, SessionState, StdinMode};
use banger_api::vms::{
    GuestProcess, GuestSideStats, HostSideStats, SshInfo, VmBackend, VmInfo, VmPort, VmPorts,
    VmState, VmStats,
};
use banger_api::{ImageName, KernelName, SessionName, VmName};
use banger_tui::app::App;
use banger_tui::{DaemonUpdate, Theme};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;

pub fn name(text: &str) -> VmName {
    VmName::parse(text).expect("VM name")
}

pub fn vm(vm_name: &str, state: VmState, octet: u8) -> VmInfo {
    let ran = !matches!(state, VmState::Created);
    let running = matches!(
        state,
        VmState::Running | VmState::Starting | VmState::Stopping
    );
    VmInfo {
        name: name(vm_name),
        state,
        image: Some(ImageName::parse("debian-bookworm").expect("image")),
        vcpus: 2,
        memory_mib: 2048,
        disk_bytes: 8 << 30,
        ip: Ipv4Addr::new(172, 16, 0, octet),
        mac: format!("02:00:ac:10:00:{octet:02x}"),
        vsock_cid: u32::from(octet) + 100,
        tap: running.then(|| format!("bgtap{octet}")),
        backend: ran.then_some(VmBackend::Qemu),
        pid: running.then_some(4000 + u32::from(octet)),
        dir: format!("/home/dev/.local/state/banger/vms/{vm_name}"),
        console_log: format!("/home/dev/.local/state/banger/vms/{vm_name}/console.log"),
        last_error: (state == VmState::Error)
            .then(|| "starting the VMM: qemu-system-x86_64 exited with status 1".to_owned()),
        nat: octet.is_multiple_of(2),
        saved_memory_bytes: (state == VmState::Paused).then_some(600 << 20),
        disks: Vec::new(),
        ssh: SshInfo {
            user: "root".into(),
            ip: Ipv4Addr::new(172, 16, 0, octet),
            host_alias: format!("{vm_name}.vm"),
            identity: "/home/dev/.local/state/banger/ssh/id_ed25519".into(),
            known_hosts: "/home/dev/.local/state/banger/ssh/known_hosts".into(),
        },
        created_at: 1_700_000_000,
        updated_at: 1_700_000_100,
    }
}

pub fn stats(vm_name: &str, cpu: f64, uptime_secs: u64) -> VmStats {
    VmStats {
        vm: name(vm_name),
        sampled_at: 1_700_000_200,
        host: HostSideStats {
            vmm_cpu_percent: Some(cpu),
            vmm_rss_bytes: Some(700 << 20),
            overlay_allocated_bytes: 45 << 20,
            work_allocated_bytes: 1200 << 20,
        },
        guest: Some(GuestSideStats {
            load: [0.10, 0.05, 0.01],
            mem_total_bytes: 1980 << 20,
            mem_available_bytes: 1650 << 20,
            root_used_bytes: Some(1100 << 20),
            root_total_bytes: Some(2 << 30),
            work_used_bytes: Some(300 << 20),
            work_total_bytes: Some(7800 << 20),
            uptime_secs,
        }),
        guest_error: None,
    }
}

pub fn ports(vm_name: &str) -> VmPorts {
    let port = |number: u16, url: bool, reachable: bool, command: &str| VmPort {
        protocol: "tcp".into(),
        port: number,
        bind_address: if reachable { "0.0.0.0" } else { "127.0.0.1" }.into(),
        endpoint: format!("{vm_name}.vm:{number}"),
        ip_endpoint: format!("172.16.0.2:{number}"),
        reachable,
        url: url.then(|| format!("http://{vm_name}.vm:{number}/")),
        guest_process: Some(GuestProcess {
            pid: 300 + u32::from(number % 100),
            command: command.into(),
            cmdline: command.into(),
        }),
    };
    VmPorts {
        vm: name(vm_name),
        ip: Ipv4Addr::new(172, 16, 0, 2),
        ports: vec![
            port(22, false, true, "sshd"),
            port(4096, true, true, "opencode"),
            port(5432, false, false, "postgres"),
        ],
        truncated: false,
    }
}

pub fn session(vm_name: &str, session_name: &str, state: SessionState, pipe: bool) -> SessionInfo {
    SessionInfo {
        name: SessionName::parse(session_name).expect("session name"),
        vm: name(vm_name),
        command: vec!["make".into(), "watch".into()],
        cwd: "/root/repo".into(),
        stdin_mode: if pipe {
            StdinMode::Pipe
        } else {
            StdinMode::Detached
        },
        state,
        pid: (state == SessionState::Running).then_some(812),
        exit_code: (state == SessionState::Exited).then_some(0),
        signal: None,
        attached: false,
        stdout_bytes: Some(1024),
        stderr_bytes: Some(0),
        created_at: 1_700_000_300,
    }
}

pub fn image(image_name: &str, managed: bool, used_by: &[&str]) -> ImageInfo {
    ImageInfo {
        name: ImageName::parse(image_name).expect("image"),
        managed,
        rootfs: format!("/images/{image_name}/rootfs.ext4"),
        work_seed: Some(format!("/images/{image_name}/work-seed.ext4")),
        kernel: KernelName::parse("debian-cloud-amd64").expect("kernel"),
        initrd: None,
        size_bytes: 1600 << 20,
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
        used_by_vms: used_by.iter().map(|vm| name(vm)).collect(),
        oci: None,
        provision: None,
    }
}

pub fn kernel(kernel_name: &str, version: &str) -> KernelInfo {
    KernelInfo {
        name: KernelName::parse(kernel_name).expect("kernel"),
        version: version.into(),
        source: format!("catalog:{kernel_name}"),
        dir: format!("/cache/kernels/{kernel_name}"),
        bzimage: Some("vmlinuz".into()),
        vmlinux: Some("vmlinux".into()),
        initramfs: "initramfs.cpio.zst".into(),
        modules_disk: Some("modules.ext4".into()),
        size_bytes: 95 << 20,
        created_at: 1_700_000_000,
        used_by_images: vec![ImageName::parse("debian-bookworm").expect("image")],
    }
}

/// An app that has read everything: no VMs.
pub fn empty_app(theme: Theme) -> App {
    let mut app = App::new(theme);
    let _ = app.start();
    let _ = app.apply(DaemonUpdate::EventsConnected);
    let _ = app.apply(DaemonUpdate::Vms(Ok(Vec::new())));
    let _ = app.apply(DaemonUpdate::Images(Ok(Vec::new())));
    let _ = app.apply(DaemonUpdate::Kernels(Ok(Vec::new())));
    app
}

/// An app with one running VM `dev`, its stats, ports and sessions.
pub fn one_vm_app(theme: Theme) -> App {
    let mut app = empty_app(theme);
    let _ = app.apply(DaemonUpdate::Vms(Ok(vec![vm("dev", VmState::Running, 2)])));
    fill_details(&mut app, "dev");
    app
}

fn fill_details(app: &mut App, vm_name: &str) {
    let _ = app.apply(DaemonUpdate::Stats(
        name(vm_name),
        Ok(stats(vm_name, 12.5, 11_040)),
    ));
    let _ = app.apply(DaemonUpdate::Ports(name(vm_name), Ok(ports(vm_name))));
    let _ = app.apply(DaemonUpdate::Sessions(
        name(vm_name),
        Ok(vec![
            session(vm_name, "agent", SessionState::Running, true),
            session(vm_name, "build", SessionState::Exited, false),
        ]),
    ));
}

/// An app with VMs in every state, images and kernels.
pub fn many_vms_app(theme: Theme) -> App {
    let mut app = empty_app(theme);
    let vms = vec![
        vm("api-server", VmState::Running, 2),
        vm("builder", VmState::Stopped, 3),
        vm("ci-runner-with-a-long-name", VmState::Error, 4),
        vm("dev", VmState::Running, 5),
        vm("fresh", VmState::Created, 6),
        vm("parked", VmState::Paused, 7),
        vm("booting", VmState::Starting, 8),
        vm("leaving", VmState::Stopping, 9),
    ];
    let _ = app.apply(DaemonUpdate::Vms(Ok(vms)));
    let _ = app.apply(DaemonUpdate::Stats(name("dev"), Ok(stats("dev", 3.2, 300))));
    fill_details(&mut app, "api-server");
    let _ = app.apply(DaemonUpdate::Images(Ok(vec![
        image("debian-bookworm", true, &["api-server", "builder", "dev"]),
        image("debian-bookworm-minimal", true, &[]),
        image("my-rootfs", false, &["fresh"]),
    ])));
    let _ = app.apply(DaemonUpdate::Kernels(Ok(vec![
        kernel("debian-cloud-amd64", "6.1.0-37-cloud-amd64"),
        kernel("generic-6-12", "6.12.38+deb12-cloud-amd64"),
    ])));
    app
}

/// Draws `app` into a `width` × `height` test terminal.
pub fn render(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal
        .draw(|frame| banger_tui::draw(frame, app))
        .expect("draw");
    terminal
}

/// The rendered text, one line per row.
pub fn screen(app: &App, width: u16, height: u16) -> String {
    text(render(app, width, height).backend().buffer())
}

pub fn text(buffer: &Buffer) -> String {
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let mut line = String::new();
        for x in 0..buffer.area.width {
            line.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
