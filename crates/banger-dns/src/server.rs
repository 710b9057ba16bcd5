//! [`DnsServer`]: UDP and TCP listeners serving the `vm.` zone.
//!
//! Each listening address gets its own hickory-server [`Server`] (one UDP
//! socket and one TCP listener on the same port), all sharing one
//! [`VmRecords`]. Keeping them separate is what lets the daemon add the
//! bridge address when the bridge appears, and drop it when the bridge
//! goes, without touching the loopback listener.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::NetError;
use tokio::net::{TcpListener, TcpSocket, UdpSocket};

use crate::answer::VmHandler;
use crate::records::VmRecords;

/// How long a TCP connection may stay idle before it is closed; DNS clients
/// send their query right away, so this only sheds stuck connections.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Responses buffered per TCP connection before the connection waits.
const TCP_RESPONSE_BUFFER: usize = 32;

/// When asked for port 0, UDP picks a free port and TCP must then get the
/// same one; if TCP's is taken, a few fresh tries are cheap.
const EPHEMERAL_PORT_TRIES: usize = 16;

/// Errors of [`DnsServer`].
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The UDP socket could not be bound (address in use, address not on
    /// this host, port below 1024 without `CAP_NET_BIND_SERVICE`...).
    #[error("cannot bind DNS (UDP) on {addr}")]
    BindUdp {
        /// The address that failed.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The TCP listener could not be bound.
    #[error("cannot bind DNS (TCP) on {addr}")]
    BindTcp {
        /// The address that failed.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// This server already listens on the address.
    #[error("already serving DNS on {addr}")]
    AlreadyListening {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// This server does not listen on the address.
    #[error("not serving DNS on {addr}")]
    NotListening {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// A listener's tasks ended with an error while shutting down.
    #[error("DNS listener on {addr} failed")]
    Listener {
        /// The listener's address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: NetError,
    },
}

/// An authoritative DNS server for `<name>.vm`, on any number of addresses.
///
/// Must be created and used inside a Tokio runtime. Dropping it aborts the
/// listeners at once; [`DnsServer::shutdown`] stops them gracefully.
pub struct DnsServer {
    records: VmRecords,
    /// Keyed by the address actually bound (port 0 resolved).
    listeners: BTreeMap<SocketAddr, Server<VmHandler>>,
}

impl fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsServer")
            .field("listeners", &self.listeners.keys().collect::<Vec<_>>())
            .field("records", &self.records.len())
            .finish()
    }
}

impl DnsServer {
    /// Serves `records` on UDP and TCP of every address in `addrs` (an
    /// empty list is fine: listeners can be added later). Port 0 picks a
    /// free port, the same for UDP and TCP; see [`DnsServer::local_addrs`].
    ///
    /// On error nothing keeps listening.
    pub async fn bind(addrs: &[SocketAddr], records: VmRecords) -> Result<Self, DnsError> {
        let mut server = Self {
            records,
            listeners: BTreeMap::new(),
        };
        for addr in addrs {
            // An early return drops `server`, which aborts the listeners
            // already started.
            server.add_listener(*addr).await?;
        }
        Ok(server)
    }

    /// The records this server answers from (a clone shares the table).
    pub fn records(&self) -> &VmRecords {
        &self.records
    }

    /// The addresses served, with port 0 resolved to the real port.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.keys().copied().collect()
    }

    /// Starts serving on `addr` (UDP and TCP) and returns the address
    /// bound. Used for the bridge address once the bridge exists: binding
    /// an address no interface has fails with `EADDRNOTAVAIL`.
    pub async fn add_listener(&mut self, addr: SocketAddr) -> Result<SocketAddr, DnsError> {
        if addr.port() != 0 && self.listeners.contains_key(&addr) {
            return Err(DnsError::AlreadyListening { addr });
        }
        let (udp, tcp, bound) = bind_pair(addr)?;
        let mut server = Server::new(VmHandler {
            records: self.records.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        tracing::info!(addr = %bound, "serving DNS for .vm");
        self.listeners.insert(bound, server);
        Ok(bound)
    }

    /// Stops serving on `addr` (as returned by [`DnsServer::add_listener`]
    /// or [`DnsServer::local_addrs`]), waiting for its tasks to end.
    pub async fn remove_listener(&mut self, addr: SocketAddr) -> Result<(), DnsError> {
        let mut server = self
            .listeners
            .remove(&addr)
            .ok_or(DnsError::NotListening { addr })?;
        tracing::info!(%addr, "stopping DNS listener");
        server
            .shutdown_gracefully()
            .await
            .map_err(|source| DnsError::Listener { addr, source })
    }

    /// Stops every listener gracefully: sockets stop accepting, in-flight
    /// queries finish. Reports the first listener that failed, after all
    /// were stopped.
    pub async fn shutdown(mut self) -> Result<(), DnsError> {
        let mut first_error = None;
        for addr in self.local_addrs() {
            if let Err(error) = self.remove_listener(addr).await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Binds UDP and TCP on the same address and port.
fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), DnsError> {
    let tries = if addr.port() == 0 {
        EPHEMERAL_PORT_TRIES
    } else {
        1
    };
    let mut last_error = None;
    for _ in 0..tries {
        let udp = bind_udp(addr)?;
        let bound = udp
            .local_addr()
            .map_err(|source| DnsError::BindUdp { addr, source })?;
        match bind_tcp(bound) {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            // Only a port we did not choose ourselves is worth retrying.
            Err(source) if addr.port() == 0 && source.kind() == io::ErrorKind::AddrInUse => {
                last_error = Some(source);
            }
            Err(source) => {
                return Err(DnsError::BindTcp {
                    addr: bound,
                    source,
                });
            }
        }
    }
    Err(DnsError::BindTcp {
        addr,
        source: last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)),
    })
}

fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, DnsError> {
    let wrap = |source| DnsError::BindUdp { addr, source };
    let socket = std::net::UdpSocket::bind(addr).map_err(wrap)?;
    socket.set_nonblocking(true).map_err(wrap)?;
    UdpSocket::from_std(socket).map_err(wrap)
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted daemon must get its port back while connections of the
    // previous one linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}
