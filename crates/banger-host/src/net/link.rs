//! Link and address operations over rtnetlink (no `ip` shell-outs).
//!
//! The in-process [`crate::privileged::InProcessOps`] uses this to create and
//! inspect the bridge, attach TAPs to it, bring links up and delete them.
//! `iproute2` costs 4–14 ms per step here; a netlink request is a fraction
//! of a millisecond (FACTS.md). A [`Netlink`] talks to the network namespace
//! of the thread that created it: the kernel binds a netlink socket to the
//! creator's namespace, which is what lets the tests run everything inside a
//! namespace of their own.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_core::Nla;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::{Handle, LinkBridge, LinkUnspec};

/// `ENODEV`: what the kernel answers when a named link does not exist.
const ENODEV: i32 = 19;

/// A netlink request that failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket")]
    Connect {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A request about one link failed.
    #[error("netlink {op} for {name:?} failed")]
    Request {
        /// What was being done (`"add bridge"`, `"delete link"`, ...).
        op: &'static str,
        /// The link's name.
        name: String,
        /// The netlink error.
        #[source]
        source: rtnetlink::Error,
    },
}

/// The TUN-specific attributes the kernel reports for a tun/tap link
/// (`IFLA_TUN_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TunAttrs {
    /// Owning uid, `None` when unrestricted.
    pub owner: Option<u32>,
    /// `true` for a TAP (Ethernet), `false` for a TUN (IP).
    pub is_tap: bool,
    /// Survives its last file descriptor being closed.
    pub persist: bool,
    /// Frames carry a `virtio_net_hdr` (needed for offloads).
    pub vnet_hdr: bool,
    /// Frames carry the packet-info header (banger never wants it).
    pub pi: bool,
}

/// What banger needs to know about one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSummary {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// `IFLA_INFO_KIND`: `Bridge`, `Tun`, `Veth`, ... `None` for physical
    /// devices and loopback.
    pub kind: Option<InfoKind>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Index of the bridge this link is a port of.
    pub controller: Option<u32>,
    /// TUN attributes, for tun/tap links.
    pub tun: Option<TunAttrs>,
}

impl LinkSummary {
    fn from_message(message: &LinkMessage) -> Self {
        let mut summary = LinkSummary {
            index: message.header.index,
            name: String::new(),
            kind: None,
            up: message.header.flags.contains(LinkFlags::Up),
            controller: None,
            tun: None,
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => summary.name.clone_from(name),
                LinkAttribute::Controller(index) => summary.controller = Some(*index),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(kind) => summary.kind = Some(kind.clone()),
                            LinkInfo::Data(InfoData::Tun(nlas)) => {
                                summary.tun = Some(parse_tun(nlas));
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if summary.kind == Some(InfoKind::Tun) && summary.tun.is_none() {
            summary.tun = Some(TunAttrs::default());
        }
        summary
    }
}

/// Decodes `IFLA_TUN_*` (linux/if_link.h), which netlink-packet-route only
/// exposes as raw attributes.
fn parse_tun(nlas: &[rtnetlink::packet_route::link::InfoTun]) -> TunAttrs {
    const OWNER: u16 = 1;
    const TYPE: u16 = 3;
    const PI: u16 = 4;
    const VNET_HDR: u16 = 5;
    const PERSIST: u16 = 6;
    const IFF_TAP: u8 = 2;
    let mut attrs = TunAttrs::default();
    for nla in nlas {
        let mut value = vec![0u8; nla.value_len()];
        nla.emit_value(&mut value);
        let first = value.first().copied().unwrap_or(0);
        match nla.kind() {
            OWNER => {
                if let Ok(bytes) = <[u8; 4]>::try_from(value.as_slice()) {
                    // (uid_t)-1 means "no owner".
                    let uid = u32::from_ne_bytes(bytes);
                    attrs.owner = (uid != u32::MAX).then_some(uid);
                }
            }
            TYPE => attrs.is_tap = first == IFF_TAP,
            PI => attrs.pi = first != 0,
            VNET_HDR => attrs.vnet_hdr = first != 0,
            PERSIST => attrs.persist = first != 0,
            _ => {}
        }
    }
    attrs
}

/// A connection to the kernel's routing netlink in one network namespace.
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a netlink socket in the calling thread's network namespace and
    /// spawns its connection task on the current tokio runtime.
    pub fn connect() -> Result<Self, LinkError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| LinkError::Connect { source })?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// The link called `name`, or `None` when there is none.
    pub async fn link_by_name(&self, name: &str) -> Result<Option<LinkSummary>, LinkError> {
        let mut stream = self.handle.link().get().match_name(name).execute();
        match stream.try_next().await {
            Ok(message) => Ok(message.as_ref().map(LinkSummary::from_message)),
            Err(rtnetlink::Error::NetlinkError(message))
                if message.code.map(|code| code.get()) == Some(-ENODEV) =>
            {
                Ok(None)
            }
            Err(source) => Err(request("get link", name, source)),
        }
    }

    /// Every link in the namespace.
    pub async fn links(&self) -> Result<Vec<LinkSummary>, LinkError> {
        let mut stream = self.handle.link().get().execute();
        let mut links = Vec::new();
        while let Some(message) = stream
            .try_next()
            .await
            .map_err(|source| request("dump links", "*", source))?
        {
            links.push(LinkSummary::from_message(&message));
        }
        Ok(links)
    }

    /// Creates a bridge called `name`, up.
    pub async fn add_bridge(&self, name: &str) -> Result<(), LinkError> {
        self.handle
            .link()
            .add(LinkBridge::new(name).build())
            .execute()
            .await
            .map_err(|source| request("add bridge", name, source))
    }

    /// The IPv4 addresses (with prefix length) on link `index`.
    pub async fn ipv4_addresses(
        &self,
        index: u32,
        name: &str,
    ) -> Result<Vec<(Ipv4Addr, u8)>, LinkError> {
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut addresses = Vec::new();
        while let Some(message) = stream
            .try_next()
            .await
            .map_err(|source| request("list addresses", name, source))?
        {
            // The kernel may ignore the filter on non-strict sockets.
            if message.header.index != index {
                continue;
            }
            for attribute in &message.attributes {
                if let AddressAttribute::Local(IpAddr::V4(address))
                | AddressAttribute::Address(IpAddr::V4(address)) = attribute
                {
                    let entry = (*address, message.header.prefix_len);
                    if !addresses.contains(&entry) {
                        addresses.push(entry);
                    }
                }
            }
        }
        Ok(addresses)
    }

    /// Adds `address/prefix` to link `index` (replacing an equal address).
    pub async fn add_ipv4_address(
        &self,
        index: u32,
        name: &str,
        address: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), LinkError> {
        self.handle
            .address()
            .add(index, IpAddr::V4(address), prefix)
            .replace()
            .execute()
            .await
            .map_err(|source| request("add address", name, source))
    }

    /// Sets link `index` up, and when `controller` is given makes it a port
    /// of that bridge, in one request.
    pub async fn set_up(
        &self,
        index: u32,
        name: &str,
        controller: Option<u32>,
    ) -> Result<(), LinkError> {
        let mut builder = LinkUnspec::new_with_index(index).up();
        if let Some(controller) = controller {
            builder = builder.controller(controller);
        }
        self.handle
            .link()
            .set(builder.build())
            .execute()
            .await
            .map_err(|source| request("set link up", name, source))
    }

    /// Deletes link `index`.
    pub async fn delete(&self, index: u32, name: &str) -> Result<(), LinkError> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(|source| request("delete link", name, source))
    }
}

fn request(op: &'static str, name: &str, source: rtnetlink::Error) -> LinkError {
    LinkError::Request {
        op,
        name: name.to_owned(),
        source,
    }
}
