//! banger's minimal init, for images that have none (`/sbin/init` missing
//! or `banger.init=banger`): the initramfs execs `banger-vsock-agent --init`
//! as PID 1 in the image (docs/boot-chain.md). The initramfs has already
//! configured the network, hostname, resolver, host keys and the owner's
//! key; this process:
//!
//! - mounts `/dev/pts` and `/dev/shm` when missing;
//! - turns Ctrl-Alt-Del into a signal (Firecracker's `SendCtrlAltDel`);
//! - runs the agent (with the SSH server when asked) as its child and
//!   starts it again if it dies;
//! - reaps every orphan (PID 1's duty);
//! - shuts down on the ACPI power button (QEMU's `system_powerdown`, i.e.
//!   `vm stop`), SIGINT (Ctrl-Alt-Del), SIGPWR, SIGUSR1 and SIGUSR2
//!   (busybox `halt`/`poweroff`), and reboots on SIGTERM (busybox
//!   `reboot`): SIGTERM to every process, SIGKILL after a grace period,
//!   sync, then the reboot system call.

use std::ffi::OsString;
use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions};
use rustix::system::RebootCommand;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// How long processes get between SIGTERM and SIGKILL at shutdown.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// Pause before starting a dead agent again, so a crash loop stays cheap.
const RESPAWN_DELAY: Duration = Duration::from_secs(1);
/// `KEY_POWER` in `linux/input-event-codes.h`.
const KEY_POWER: u16 = 116;
/// `EV_KEY`.
const EV_KEY: u16 = 1;

/// Runs as PID 1 and never returns unless the runtime cannot be built.
/// `agent_args` are the arguments of the agent child; None runs no agent.
pub fn run(agent_args: Option<Vec<OsString>>) -> ExitCode {
    eprintln!("banger-init: banger's init is PID 1");
    crate::devpts::ensure_mounted();
    mount_shm();
    if let Err(error) = rustix::system::reboot(RebootCommand::CadOff) {
        eprintln!("banger-init: cannot route Ctrl-Alt-Del to init: {error}");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("banger-init: cannot start: {error}");
            // PID 1 must not exit (the kernel would panic): power off.
            power_off(RebootCommand::PowerOff);
        }
    };
    runtime.block_on(supervise(agent_args))
}

fn mount_shm() {
    if std::path::Path::new("/dev/shm").exists() {
        return;
    }
    let _ = fs_err::create_dir_all("/dev/shm");
    let flags = rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV;
    if let Err(error) = rustix::mount::mount("tmpfs", "/dev/shm", "tmpfs", flags, c"mode=1777") {
        eprintln!("banger-init: cannot mount /dev/shm: {error}");
    }
}

fn spawn_agent(args: &[OsString]) -> Option<Pid> {
    match std::process::Command::new("/proc/self/exe")
        .args(args)
        .spawn()
    {
        Ok(child) => Pid::from_raw(i32::try_from(child.id()).unwrap_or(0)),
        Err(error) => {
            eprintln!("banger-init: cannot start the agent: {error}");
            None
        }
    }
}

async fn supervise(agent_args: Option<Vec<OsString>>) -> ExitCode {
    let kinds = [
        (SignalKind::child(), None),
        (SignalKind::terminate(), Some(RebootCommand::Restart)),
        (SignalKind::interrupt(), Some(RebootCommand::PowerOff)),
        (SignalKind::user_defined1(), Some(RebootCommand::Halt)),
        (SignalKind::user_defined2(), Some(RebootCommand::PowerOff)),
        (
            SignalKind::from_raw(Signal::POWER.as_raw()),
            Some(RebootCommand::PowerOff),
        ),
        (SignalKind::hangup(), None),
    ];
    let (events, mut next) = mpsc::unbounded_channel::<Option<RebootCommand>>();
    for (kind, action) in kinds {
        match signal(kind) {
            Ok(mut stream) => {
                let events = events.clone();
                tokio::spawn(async move {
                    while stream.recv().await.is_some() {
                        if events.send(action).is_err() {
                            return;
                        }
                    }
                });
            }
            Err(error) => eprintln!("banger-init: cannot handle signal {kind:?}: {error}"),
        }
    }
    {
        let events = events.clone();
        watch_power_button(move || {
            let _ = events.send(Some(RebootCommand::PowerOff));
        });
    }
    let mut agent = agent_args.as_deref().and_then(spawn_agent);
    let mut respawn_at: Option<Instant> = None;
    loop {
        let wait = respawn_at.map_or(Duration::from_secs(3600), |at| {
            at.saturating_duration_since(Instant::now())
        });
        let event = tokio::select! {
            event = next.recv() => event,
            () = tokio::time::sleep(wait) => Some(None),
        };
        match event {
            Some(Some(action)) => shutdown(action),
            Some(None) => {}
            None => shutdown(RebootCommand::PowerOff),
        }
        // Reap whatever exited (also on the timer: a SIGCHLD that arrived
        // while another was being handled is coalesced).
        while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
            if Some(pid) == agent {
                eprintln!("banger-init: the agent exited ({status:?}); starting it again");
                agent = None;
                respawn_at = Some(Instant::now() + RESPAWN_DELAY);
            }
        }
        if agent.is_none() && respawn_at.is_some_and(|at| at <= Instant::now()) {
            respawn_at = None;
            agent = agent_args.as_deref().and_then(spawn_agent);
        }
    }
}

/// Reads every `/dev/input/event*` device (the ACPI power button is one of
/// them once the `button` and `evdev` modules are loaded by the initramfs)
/// and calls `on_press` on every `KEY_POWER` press.
pub fn watch_power_button(on_press: impl Fn() + Clone + Send + 'static) {
    let Ok(entries) = fs_err::read_dir("/dev/input") else {
        eprintln!("banger-vsock-agent: no /dev/input: the power button (vm stop) is not handled");
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_event = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("event"));
        if !is_event {
            continue;
        }
        let on_press = on_press.clone();
        let spawned = std::thread::Builder::new()
            .name("power-button".into())
            .spawn(move || {
                let Ok(mut device) = fs_err::File::open(&path) else {
                    return;
                };
                // struct input_event on 64-bit: timeval (16), type, code, value.
                let mut event = [0u8; 24];
                while device.read_exact(&mut event).is_ok() {
                    let kind = u16::from_ne_bytes([event[16], event[17]]);
                    let code = u16::from_ne_bytes([event[18], event[19]]);
                    let value = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]);
                    if kind == EV_KEY && code == KEY_POWER && value == 1 {
                        eprintln!("banger-vsock-agent: power button pressed");
                        on_press();
                    }
                }
            });
        if let Err(error) = spawned {
            eprintln!(
                "banger-vsock-agent: cannot watch {}: {error}",
                entry.path().display()
            );
        }
    }
}

/// For an image's own init that ignores the power button (busybox init,
/// OpenRC on it): a press becomes SIGUSR2 to PID 1, busybox init's
/// "power off" (the initramfs asks for this unless PID 1 is systemd).
pub fn forward_power_button_to_init() {
    watch_power_button(|| {
        if let Some(init) = Pid::from_raw(1) {
            if let Err(error) = rustix::process::kill_process(init, Signal::USR2) {
                eprintln!("banger-vsock-agent: cannot signal init: {error}");
            }
        }
    });
}

/// Pids of every process but ourselves (kernel threads included: signals
/// to them are ignored).
fn other_processes() -> Vec<Pid> {
    let me = rustix::process::getpid();
    let Ok(entries) = fs_err::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(Pid::from_raw)
        .filter(|pid| *pid != me)
        .collect()
}

/// Whether a process that is not a kernel thread is left (kernel threads
/// have an empty cmdline).
fn user_processes_left() -> bool {
    other_processes().into_iter().any(|pid| {
        fs_err::read(format!("/proc/{}/cmdline", pid.as_raw_nonzero()))
            .is_ok_and(|cmdline| !cmdline.is_empty())
    })
}

fn reap_all() {
    while let Ok(Some(_)) = rustix::process::wait(WaitOptions::NOHANG) {}
}

/// Ends every process, syncs and halts, powers off or reboots.
fn shutdown(action: RebootCommand) -> ! {
    eprintln!("banger-init: shutting down ({action:?})");
    for pid in other_processes() {
        let _ = rustix::process::kill_process(pid, Signal::TERM);
    }
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline && user_processes_left() {
        reap_all();
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in other_processes() {
        let _ = rustix::process::kill_process(pid, Signal::KILL);
    }
    std::thread::sleep(Duration::from_millis(100));
    reap_all();
    power_off(action)
}

fn power_off(action: RebootCommand) -> ! {
    rustix::fs::sync();
    if let Err(error) = rustix::system::reboot(action) {
        eprintln!("banger-init: reboot system call failed: {error}");
    }
    // PID 1 must never exit.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
