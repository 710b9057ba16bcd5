//! Listening sockets of the guest, from `/proc/net/{tcp,tcp6,udp,udp6}`,
//! with their owning processes found through `/proc/<pid>/fd`.
//!
//! Reading `/proc` directly keeps the agent independent of `ss`/`netstat`
//! being installed in the image.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use banger_agent_proto::{
    ListeningSocket, MAX_CMDLINE_BYTES, MAX_COMM_BYTES, MAX_SOCKETS, SocketProcess, Transport,
    truncate_utf8,
};

/// `TCP_LISTEN` in `include/net/tcp_states.h`.
const TCP_LISTEN: u8 = 0x0a;
/// `TCP_CLOSE`: what an unconnected, bound UDP socket shows.
const UDP_UNCONNECTED: u8 = 0x07;

/// Upper bound on the processes scanned, so a fork bomb in the guest cannot
/// make one request unbounded.
const MAX_PIDS_SCANNED: usize = 32_768;

/// One socket line parsed from a `/proc/net/*` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSocket {
    /// TCP or UDP.
    pub transport: Transport,
    /// Local address.
    pub address: IpAddr,
    /// Local port.
    pub port: u16,
    /// Socket inode (0 for sockets without one, e.g. in TIME_WAIT).
    pub inode: u64,
}

/// Reads all listening sockets under `proc_root` (normally `/proc`), keeping
/// at most [`MAX_SOCKETS`]. Returns the sockets and whether some were left out.
pub fn listening_sockets(proc_root: &Path) -> (Vec<ListeningSocket>, bool) {
    let mut raw = Vec::new();
    for (file, transport) in [
        ("tcp", Transport::Tcp),
        ("tcp6", Transport::Tcp),
        ("udp", Transport::Udp),
        ("udp6", Transport::Udp),
    ] {
        // A missing table (IPv6 disabled) is not an error.
        if let Ok(text) = fs_err::read_to_string(proc_root.join("net").join(file)) {
            raw.extend(parse_table(&text, transport));
        }
    }
    raw.sort_by_key(|socket| (socket.transport, socket.port, socket.address));
    raw.dedup_by(|a, b| (a.transport, a.address, a.port) == (b.transport, b.address, b.port));
    let truncated = raw.len() > MAX_SOCKETS;
    raw.truncate(MAX_SOCKETS);
    let inodes: HashSet<u64> = raw.iter().map(|s| s.inode).filter(|&i| i != 0).collect();
    let owners = socket_owners(proc_root, &inodes);
    let sockets = raw
        .into_iter()
        .map(|socket| ListeningSocket {
            transport: socket.transport,
            address: socket.address,
            port: socket.port,
            process: owners
                .get(&socket.inode)
                .map(|&pid| describe_process(proc_root, pid)),
        })
        .collect();
    (sockets, truncated)
}

/// Parses one `/proc/net/{tcp,tcp6,udp,udp6}` table, keeping listening TCP
/// sockets or unconnected UDP sockets. Malformed lines are skipped.
pub fn parse_table(text: &str, transport: Transport) -> Vec<RawSocket> {
    let wanted = match transport {
        Transport::Tcp => TCP_LISTEN,
        Transport::Udp => UDP_UNCONNECTED,
    };
    // First line is the column header.
    text.lines()
        .skip(1)
        .filter_map(|line| parse_line(line, transport, wanted))
        .collect()
}

fn parse_line(line: &str, transport: Transport, wanted: u8) -> Option<RawSocket> {
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
    let fields: Vec<&str> = line.split_whitespace().collect();
    let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
    if state != wanted {
        return None;
    }
    let (address, port) = parse_endpoint(fields.get(1)?)?;
    let inode = fields.get(9)?.parse().ok()?;
    Some(RawSocket {
        transport,
        address,
        port,
        inode,
    })
}

/// Parses `ADDR:PORT` in the kernel's hex form: the address is printed as
/// 32-bit words in host byte order (little-endian on x86_64 and aarch64),
/// the port as a plain hex number.
fn parse_endpoint(field: &str) -> Option<(IpAddr, u16)> {
    let (address, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words = address
        .as_bytes()
        .chunks(8)
        .map(|chunk| {
            let text = std::str::from_utf8(chunk).ok()?;
            (chunk.len() == 8)
                .then(|| u32::from_str_radix(text, 16).ok())
                .flatten()
                .map(u32::to_ne_bytes)
        })
        .collect::<Option<Vec<[u8; 4]>>>()?;
    let address = match words.as_slice() {
        [a] => IpAddr::V4(Ipv4Addr::from(*a)),
        [a, b, c, d] => {
            let mut bytes = [0u8; 16];
            for (index, word) in [a, b, c, d].into_iter().enumerate() {
                bytes[index * 4..index * 4 + 4].copy_from_slice(word);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((address, port))
}

/// Maps each wanted socket inode to the lowest pid holding it, by reading the
/// `socket:[INODE]` links in `/proc/<pid>/fd`.
pub fn socket_owners(proc_root: &Path, inodes: &HashSet<u64>) -> BTreeMap<u64, u32> {
    let mut owners = BTreeMap::new();
    if inodes.is_empty() {
        return owners;
    }
    let Ok(entries) = fs_err::read_dir(proc_root) else {
        return owners;
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .take(MAX_PIDS_SCANNED)
        .collect();
    pids.sort_unstable();
    for pid in pids {
        // Processes exit while we scan, and kernel threads have no fds we
        // may read: every error here just means "not this one".
        let Ok(fds) = fs_err::read_dir(proc_root.join(pid.to_string()).join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs_err::read_link(fd.path()) else {
                continue;
            };
            if let Some(inode) = socket_inode(&target.to_string_lossy()) {
                if inodes.contains(&inode) {
                    owners.entry(inode).or_insert(pid);
                }
            }
        }
        if owners.len() == inodes.len() {
            break;
        }
    }
    owners
}

/// Parses an fd link target `socket:[12345]`.
pub fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Reads the name and command line of `pid`, bounded in length.
fn describe_process(proc_root: &Path, pid: u32) -> SocketProcess {
    let dir = proc_root.join(pid.to_string());
    let comm = fs_err::read(dir.join("comm"))
        .map(|bytes| text_of(&bytes, MAX_COMM_BYTES))
        .unwrap_or_default();
    let cmdline = fs_err::read(dir.join("cmdline"))
        .map(|bytes| cmdline_text(&bytes))
        .unwrap_or_default();
    SocketProcess { pid, comm, cmdline }
}

/// Turns raw `/proc/<pid>/cmdline` bytes into one line: NULs become spaces,
/// trailing NULs are dropped, length is capped.
pub fn cmdline_text(bytes: &[u8]) -> String {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let joined: Vec<u8> = bytes[..end]
        .iter()
        .map(|&b| if b == 0 { b' ' } else { b })
        .collect();
    text_of(&joined, MAX_CMDLINE_BYTES)
}

/// Lossy UTF-8 of at most about `max_bytes` input bytes, trimmed of the
/// trailing newline, capped at `max_bytes` output bytes.
fn text_of(bytes: &[u8], max_bytes: usize) -> String {
    let head = &bytes[..bytes.len().min(max_bytes)];
    let mut text = String::from_utf8_lossy(head)
        .trim_end_matches('\n')
        .to_owned();
    truncate_utf8(&mut text, max_bytes);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18923 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 20001 1 0000000000000000 100 0 0 10 0
   2: 0F02000A:0016 0202000A:C350 01 00000000:00000000 02:0009A5C5 00000000     0        0 21000 2 0000000000000000 20 4 31 10 -1
   3: garbage line
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18925 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18930 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18931 1 0000000000000000 100 0 0 10 0
";

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 15000 2 0000000000000000 0
  200: 0F02000A:D431 08080808:0035 01 00000000:00000000 00:00000000 00000000     0        0 15001 2 0000000000000000 0
";

    #[test]
    fn tcp_listeners_are_parsed_and_connections_skipped() {
        let sockets = parse_table(TCP, Transport::Tcp);
        assert_eq!(
            sockets,
            vec![
                RawSocket {
                    transport: Transport::Tcp,
                    address: "0.0.0.0".parse().expect("ip"),
                    port: 22,
                    inode: 18923,
                },
                RawSocket {
                    transport: Transport::Tcp,
                    address: "127.0.0.1".parse().expect("ip"),
                    port: 8080,
                    inode: 20001,
                },
            ]
        );
    }

    #[test]
    fn tcp6_addresses_are_decoded() {
        let sockets = parse_table(TCP6, Transport::Tcp);
        let got: Vec<(String, u16)> = sockets
            .iter()
            .map(|s| (s.address.to_string(), s.port))
            .collect();
        assert_eq!(
            got,
            vec![
                ("::".to_owned(), 22),
                ("::1".to_owned(), 3000),
                ("::ffff:127.0.0.1".to_owned(), 80),
            ]
        );
    }

    #[test]
    fn udp_keeps_only_unconnected_sockets() {
        let sockets = parse_table(UDP, Transport::Udp);
        assert_eq!(sockets.len(), 1);
        assert_eq!(sockets[0].address.to_string(), "127.0.0.53");
        assert_eq!(sockets[0].port, 53);
        assert_eq!(sockets[0].inode, 15000);
    }

    #[test]
    fn socket_links_and_cmdlines() {
        assert_eq!(socket_inode("socket:[18923]"), Some(18923));
        assert_eq!(socket_inode("pipe:[1]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(
            cmdline_text(b"/usr/bin/python3\0-m\0http.server\0\0"),
            "/usr/bin/python3 -m http.server"
        );
        assert_eq!(cmdline_text(&[b'a'; 5000]).len(), MAX_CMDLINE_BYTES);
        assert_eq!(cmdline_text(b""), "");
    }

    #[test]
    fn fake_proc_tree_maps_inodes_to_processes() {
        let root = tempfile::tempdir().expect("tempdir");
        let proc_root = root.path();
        fs_err::create_dir_all(proc_root.join("net")).expect("mkdir");
        fs_err::write(proc_root.join("net/tcp"), TCP).expect("write");
        fs_err::write(proc_root.join("net/udp"), UDP).expect("write");
        for (pid, comm, inode) in [
            (700, "web", 20001),
            (300, "sshd", 18923),
            (301, "sshd", 18923),
        ] {
            let fd = proc_root.join(format!("{pid}/fd"));
            fs_err::create_dir_all(&fd).expect("mkdir");
            fs_err::write(proc_root.join(format!("{pid}/comm")), format!("{comm}\n"))
                .expect("write");
            fs_err::write(
                proc_root.join(format!("{pid}/cmdline")),
                format!("/usr/sbin/{comm}\0-D\0"),
            )
            .expect("write");
            fs_err::os::unix::fs::symlink(format!("socket:[{inode}]"), fd.join("3")).expect("link");
            fs_err::os::unix::fs::symlink("/dev/null", fd.join("0")).expect("link");
        }
        let (sockets, truncated) = listening_sockets(proc_root);
        assert!(!truncated);
        type Row = (Transport, u16, Option<(u32, String, String)>);
        let got: Vec<Row> = sockets
            .into_iter()
            .map(|s| {
                (
                    s.transport,
                    s.port,
                    s.process.map(|p| (p.pid, p.comm, p.cmdline)),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Transport::Tcp,
                    22,
                    Some((300, "sshd".into(), "/usr/sbin/sshd -D".into()))
                ),
                (
                    Transport::Tcp,
                    8080,
                    Some((700, "web".into(), "/usr/sbin/web -D".into()))
                ),
                (Transport::Udp, 53, None),
            ]
        );
    }
}
