//! [`Identity`]: what makes a guest one VM and not another, sent with
//! [`Request::Reidentify`](crate::Request::Reidentify) to a guest resumed
//! from another VM's memory (a fork). Everything else in the guest (its
//! processes, files, page cache) is the source's on purpose.
//!
//! Both ends validate: the host builds identities from its own records, and
//! the agent, which applies them as root, refuses anything that does not fit
//! the rules here before touching the system.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest SSH key text accepted (an ed25519 private key is about 400 bytes).
pub const MAX_KEY_BYTES: usize = 8 * 1024;
/// Bytes of entropy carried, hex-encoded (so twice as many characters).
pub const ENTROPY_BYTES: usize = 64;

/// A guest's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The guest interface to re-address (banger's is `eth0`).
    pub iface: String,
    /// Its new MAC address, `xx:xx:xx:xx:xx:xx`, lowercase.
    pub mac: String,
    /// Its new IPv4 address.
    pub address: Ipv4Addr,
    /// Prefix length of the VM network.
    pub prefix_len: u8,
    /// The default gateway (the host's bridge).
    pub gateway: Ipv4Addr,
    /// The new hostname (the VM's name).
    pub hostname: String,
    /// The new SSH host private key, OpenSSH format (ed25519).
    pub ssh_host_key: String,
    /// Its public line (`ssh-ed25519 AAAA... comment`).
    pub ssh_host_key_pub: String,
    /// The new `/etc/machine-id`: 32 lowercase hex digits.
    pub machine_id: String,
    /// [`ENTROPY_BYTES`] random bytes from the host, lowercase hex, mixed
    /// into the guest's pool before its generator is reseeded.
    pub entropy: String,
}

/// Why an [`Identity`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdentityError {
    /// A field breaks its rule.
    #[error("identity field {field} is invalid: {rule}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule it breaks.
        rule: &'static str,
    },
}

fn invalid(field: &'static str, rule: &'static str) -> IdentityError {
    IdentityError::Invalid { field, rule }
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// Whether `name` is a hostname label banger gives VMs: 1 to 63 of
/// `a-z`, `0-9` and `-`, starting with a letter, not ending with `-`.
pub fn is_valid_hostname(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes.last() != Some(&b'-')
        && bytes
            .iter()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || *byte == b'-')
}

impl Identity {
    /// Checks every field against its rule.
    pub fn validate(&self) -> Result<(), IdentityError> {
        let iface_ok = !self.iface.is_empty()
            && self.iface.len() < 16
            && self
                .iface
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if !iface_ok {
            return Err(invalid("iface", "1 to 15 of a-z, A-Z, 0-9, - and _"));
        }
        let mac_ok = self.mac.len() == 17
            && self.mac.split(':').count() == 6
            && self
                .mac
                .split(':')
                .all(|octet| octet.len() == 2 && is_lower_hex(octet));
        if !mac_ok {
            return Err(invalid("mac", "six lowercase hex octets joined by ':'"));
        }
        if self.prefix_len == 0 || self.prefix_len > 30 {
            return Err(invalid("prefix_len", "1 to 30"));
        }
        if self.address.is_unspecified()
            || self.address.is_broadcast()
            || self.address.is_multicast()
        {
            return Err(invalid("address", "a unicast address"));
        }
        if self.gateway == self.address {
            return Err(invalid("gateway", "an address other than the guest's"));
        }
        if !is_valid_hostname(&self.hostname) {
            return Err(invalid(
                "hostname",
                "1 to 63 of a-z, 0-9 and -, starting with a letter, not ending with -",
            ));
        }
        let key_text_ok = |text: &str| {
            !text.is_empty()
                && text.len() <= MAX_KEY_BYTES
                && text
                    .bytes()
                    .all(|byte| byte == b'\n' || (0x20..0x7f).contains(&byte))
        };
        if !key_text_ok(&self.ssh_host_key)
            || !self
                .ssh_host_key
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        {
            return Err(invalid(
                "ssh_host_key",
                "an OpenSSH private key in printable ASCII",
            ));
        }
        if !key_text_ok(&self.ssh_host_key_pub)
            || self.ssh_host_key_pub.trim_end().contains('\n')
            || !self.ssh_host_key_pub.starts_with("ssh-ed25519 ")
        {
            return Err(invalid(
                "ssh_host_key_pub",
                "one `ssh-ed25519 ...` line in printable ASCII",
            ));
        }
        if self.machine_id.len() != 32
            || !is_lower_hex(&self.machine_id)
            || self.machine_id.bytes().all(|byte| byte == b'0')
        {
            return Err(invalid(
                "machine_id",
                "32 lowercase hex digits, not all zero",
            ));
        }
        if self.entropy.len() != 2 * ENTROPY_BYTES || !is_lower_hex(&self.entropy) {
            return Err(invalid("entropy", "128 lowercase hex digits"));
        }
        Ok(())
    }

    /// The entropy as bytes (after [`Identity::validate`]; else empty).
    pub fn entropy_bytes(&self) -> Vec<u8> {
        if self.entropy.len() % 2 != 0 || !is_lower_hex(&self.entropy) {
            return Vec::new();
        }
        self.entropy
            .as_bytes()
            .chunks(2)
            .filter_map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Identity {
        crate::schema::identity_example()
    }

    #[test]
    fn the_example_is_valid_and_its_entropy_decodes() {
        let identity = example();
        assert_eq!(identity.validate(), Ok(()));
        assert_eq!(identity.entropy_bytes().len(), ENTROPY_BYTES);
    }

    #[test]
    fn each_broken_field_is_named() {
        type Mutation = Box<dyn Fn(&mut Identity)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("iface", Box::new(|i| i.iface = "eth0;reboot".into())),
            ("mac", Box::new(|i| i.mac = "AA:BB:CC:DD:EE:FF".into())),
            ("prefix_len", Box::new(|i| i.prefix_len = 0)),
            ("address", Box::new(|i| i.address = Ipv4Addr::BROADCAST)),
            ("gateway", Box::new(|i| i.gateway = i.address)),
            ("hostname", Box::new(|i| i.hostname = "a\nb".into())),
            ("hostname", Box::new(|i| i.hostname = "x-".into())),
            (
                "ssh_host_key",
                Box::new(|i| i.ssh_host_key = "not a key".into()),
            ),
            (
                "ssh_host_key_pub",
                Box::new(|i| i.ssh_host_key_pub = "ssh-ed25519 A\nssh-rsa B".into()),
            ),
            ("machine_id", Box::new(|i| i.machine_id = "0".repeat(32))),
            ("entropy", Box::new(|i| i.entropy = "zz".repeat(64))),
        ];
        for (field, mutate) in cases {
            let mut identity = example();
            mutate(&mut identity);
            assert!(
                matches!(identity.validate(), Err(IdentityError::Invalid { field: f, .. }) if f == field),
                "{field}: {:?}",
                identity.validate()
            );
        }
    }
}
