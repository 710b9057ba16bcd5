//! [`Request::Reidentify`](banger_agent_proto::Request::Reidentify): a
//! guest resumed from another VM's memory (a fork) becomes its own VM. In
//! order: its interface gets the new MAC and address and the default route
//! (over netlink, so images without iproute2 work too), the hostname and
//! `/etc/hostname`/`/etc/hosts` change, the SSH host key is replaced and the
//! SSH server restarted with it (the image's sshd by SIGHUP, which re-execs
//! it; the agent's own server by reloading its keys), `/etc/machine-id` is
//! rewritten, and the host's entropy is mixed into the kernel's pool before
//! the generator is reseeded (two forks must not draw the same numbers).
//!
//! Every step runs even when an earlier one failed, and the reply names all
//! that failed: a half-identified guest must be visible, not hidden.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use banger_agent_proto::{Identity, Response};
use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::{LinkUnspec, RouteMessageBuilder};

/// Where the host keys live (also read by the agent's own SSH server).
const SSH_DIR: &str = "/etc/ssh";

/// Applies `identity`; [`Response::Done`] when every step worked.
pub fn apply(identity: &Identity) -> Response {
    if let Err(error) = identity.validate() {
        return Response::Error {
            message: error.to_string(),
        };
    }
    let mut failures = Vec::new();
    if let Err(error) = network(identity) {
        failures.push(format!("network: {error}"));
    }
    if let Err(error) = hostname(&identity.hostname) {
        failures.push(format!("hostname: {error}"));
    }
    if let Err(error) = host_key(identity) {
        failures.push(format!("ssh host key: {error}"));
    }
    if let Err(error) = write_atomic(
        Path::new("/etc/machine-id"),
        format!("{}\n", identity.machine_id).as_bytes(),
        0o444,
    ) {
        failures.push(format!("machine-id: {error}"));
    }
    if let Err(error) = reseed(&identity.entropy_bytes()) {
        failures.push(format!("random generator: {error}"));
    }
    if failures.is_empty() {
        Response::Done
    } else {
        let mut message = failures.join("; ");
        banger_agent_proto::truncate_utf8(&mut message, banger_agent_proto::MAX_MESSAGE_BYTES);
        Response::Error { message }
    }
}

/// Why the network could not be re-addressed.
#[derive(Debug, thiserror::Error)]
enum NetworkError {
    #[error("cannot start a runtime for netlink")]
    Runtime(#[source] std::io::Error),
    #[error("cannot open a netlink socket")]
    Connect(#[source] std::io::Error),
    #[error("no interface {0}")]
    NoInterface(String),
    #[error("{op} on {iface}")]
    Request {
        op: &'static str,
        iface: String,
        #[source]
        source: rtnetlink::Error,
    },
}

/// New MAC (with the link down, which every virtio-net accepts), address
/// and default route on the interface.
fn network(identity: &Identity) -> Result<(), NetworkError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(NetworkError::Runtime)?;
    runtime.block_on(async {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetworkError::Connect)?;
        tokio::spawn(connection);
        let iface = identity.iface.clone();
        let failed = |op| {
            let iface = iface.clone();
            move |source| NetworkError::Request { op, iface, source }
        };
        let link = handle
            .link()
            .get()
            .match_name(iface.clone())
            .execute()
            .try_next()
            .await
            .map_err(failed("find the interface"))?
            .ok_or_else(|| NetworkError::NoInterface(iface.clone()))?;
        let index = link.header.index;
        let mac: Vec<u8> = identity
            .mac
            .split(':')
            .filter_map(|octet| u8::from_str_radix(octet, 16).ok())
            .collect();
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).down().build())
            .execute()
            .await
            .map_err(failed("set the link down"))?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).address(mac).build())
            .execute()
            .await
            .map_err(failed("set the MAC address"))?;
        // Every IPv4 address of the source goes: two VMs answering for one
        // address would be worse than none.
        let mut addresses = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut old = Vec::new();
        while let Some(message) = addresses
            .try_next()
            .await
            .map_err(failed("list addresses"))?
        {
            let is_v4 = message
                .attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Address(IpAddr::V4(_))));
            if message.header.index == index && is_v4 {
                old.push(message);
            }
        }
        for message in old {
            handle
                .address()
                .del(message)
                .execute()
                .await
                .map_err(failed("remove an old address"))?;
        }
        handle
            .address()
            .add(index, IpAddr::V4(identity.address), identity.prefix_len)
            .replace()
            .execute()
            .await
            .map_err(failed("add the address"))?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(failed("set the link up"))?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .output_interface(index)
            .gateway(identity.gateway)
            .build();
        handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(failed("set the default route"))?;
        Ok(())
    })
}

/// Sets the kernel's hostname and the files that name it; `/etc/hosts`
/// keeps every line, with the old name replaced where it stood alone.
fn hostname(name: &str) -> std::io::Result<()> {
    let old = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    rustix::system::sethostname(name.as_bytes())?;
    write_atomic(
        Path::new("/etc/hostname"),
        format!("{name}\n").as_bytes(),
        0o644,
    )?;
    let hosts = Path::new("/etc/hosts");
    if let Ok(text) = fs_err::read_to_string(hosts) {
        let rewritten = replace_host_name(&text, &old, name);
        if rewritten != text {
            write_atomic(hosts, rewritten.as_bytes(), 0o644)?;
        }
    }
    Ok(())
}

/// `text` with every whitespace-separated field equal to `old` replaced by
/// `new` (comments untouched).
pub fn replace_host_name(text: &str, old: &str, new: &str) -> String {
    if old.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let (content, comment) = match body.find('#') {
            Some(at) => body.split_at(at),
            None => (body, ""),
        };
        let mut rebuilt = String::new();
        let mut field = String::new();
        for ch in content.chars().chain(std::iter::once(' ')) {
            if ch.is_whitespace() {
                rebuilt.push_str(if field == old { new } else { &field });
                field.clear();
                rebuilt.push(ch);
            } else {
                field.push(ch);
            }
        }
        rebuilt.pop();
        out.push_str(&rebuilt);
        out.push_str(comment);
        out.push_str(newline);
    }
    out
}

/// Replaces the ed25519 host key and restarts whichever SSH server runs.
fn host_key(identity: &Identity) -> std::io::Result<()> {
    let dir = Path::new(SSH_DIR);
    fs_err::create_dir_all(dir)?;
    write_atomic(
        &dir.join("ssh_host_ed25519_key"),
        identity.ssh_host_key.as_bytes(),
        0o600,
    )?;
    let public = format!("{}\n", identity.ssh_host_key_pub.trim_end());
    write_atomic(
        &dir.join("ssh_host_ed25519_key.pub"),
        public.as_bytes(),
        0o644,
    )?;
    crate::sshd::reload_host_keys();
    for pid in sshd_listeners(Path::new("/proc")) {
        // SIGHUP makes OpenSSH's listener re-exec itself and read its host
        // keys again; open sessions are separate processes and continue.
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::HUP);
    }
    Ok(())
}

/// The OpenSSH listener processes: `sshd` whose parent is not an `sshd`
/// (session processes are children of the listener).
pub fn sshd_listeners(proc: &Path) -> Vec<rustix::process::Pid> {
    let Ok(entries) = fs_err::read_dir(proc) else {
        return Vec::new();
    };
    let stat = |pid: i32| -> Option<(String, i32)> {
        let text = fs_err::read_to_string(proc.join(pid.to_string()).join("stat")).ok()?;
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        let comm = text.get(open + 1..close)?.to_owned();
        let ppid = text.get(close + 2..)?.split(' ').nth(1)?.parse().ok()?;
        Some((comm, ppid))
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            stat(*pid).is_some_and(|(comm, ppid)| {
                comm == "sshd" && stat(ppid).is_none_or(|(parent, _)| parent != "sshd")
            })
        })
        .filter_map(rustix::process::Pid::from_raw)
        .collect()
}

/// Mixes `entropy` into the pool (credited, as it comes from the host's
/// generator) and forces the generator to reseed from it.
fn reseed(entropy: &[u8]) -> std::io::Result<()> {
    let random = fs_err::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")?;
    (&random).write_all(entropy)?;
    // RNDRESEEDCRNG = _IO('R', 0x07): reseed the CRNG now from the pool,
    // which holds the bytes just written.
    const RNDRESEEDCRNG: rustix::ioctl::Opcode = rustix::ioctl::opcode::none(b'R', 0x07);
    // SAFETY: RNDRESEEDCRNG takes no argument; the NoArg ioctl passes none
    // and the descriptor is an open /dev/urandom.
    unsafe { rustix::ioctl::ioctl(random.file(), rustix::ioctl::NoArg::<RNDRESEEDCRNG>::new()) }?;
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, so a reader never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let temporary = path.with_extension("banger-new");
    {
        let mut file = fs_err::File::create(&temporary)?;
        fs_err::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs_err::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lines_change_only_the_old_name() {
        let text = "127.0.0.1 localhost\n127.0.1.1 web web.vm # web here\n::1 localhost webby\n";
        assert_eq!(
            replace_host_name(text, "web", "web-2"),
            "127.0.0.1 localhost\n127.0.1.1 web-2 web.vm # web here\n::1 localhost webby\n"
        );
        assert_eq!(replace_host_name("a\tweb", "web", "x"), "a\tx");
        assert_eq!(replace_host_name(text, "", "x"), text);
    }

    #[test]
    fn an_invalid_identity_changes_nothing() {
        let mut identity = banger_agent_proto::schema::identity_example();
        identity.hostname = "bad name".into();
        assert!(
            matches!(apply(&identity), Response::Error { message } if message.contains("hostname"))
        );
    }

    #[test]
    fn sshd_listeners_skip_session_processes() {
        let proc = tempfile::tempdir().expect("tempdir");
        let write = |pid: i32, comm: &str, ppid: i32| {
            let dir = proc.path().join(pid.to_string());
            fs_err::create_dir_all(&dir).expect("mkdir");
            fs_err::write(dir.join("stat"), format!("{pid} ({comm}) S {ppid} 1 1 0"))
                .expect("stat");
        };
        write(1, "systemd", 0);
        write(300, "sshd", 1);
        write(400, "sshd", 300);
        write(500, "bash", 400);
        let listeners: Vec<i32> = sshd_listeners(proc.path())
            .into_iter()
            .map(rustix::process::Pid::as_raw_nonzero)
            .map(i32::from)
            .collect();
        assert_eq!(listeners, vec![300]);
    }
}
