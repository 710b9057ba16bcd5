//! banger's DNS: `<name>.vm` for every VM.
//!
//! [`VmRecords`] is the live name -> address table the daemon keeps up to
//! date; [`DnsServer`] answers from it, authoritatively, on UDP and TCP of
//! the addresses it is given (by default `127.0.0.1:42069`, plus the bridge
//! address for guests once the bridge exists). Pointing systemd-resolved at
//! the server for the `.vm` domain needs root, so it lives with the other
//! privileged operations in `banger_host::net::resolved`. See `docs/dns.md`.

mod answer;
pub mod records;
mod server;

pub use answer::{RECORD_TTL, ZONE};
pub use records::{RecordsError, VmRecords, validate_name};
pub use server::{DnsError, DnsServer};

/// The default `dns_listen_addr`: loopback, on an unprivileged port so an
/// unprivileged daemon can bind it.
pub const DEFAULT_LISTEN_ADDR: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 42069),
);
