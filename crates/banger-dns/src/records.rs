//! The live table of VM names and addresses the DNS server answers from.
//!
//! [`VmRecords`] is shared between the daemon (which writes it when a VM is
//! created, renamed, started with a new address or deleted) and every
//! listener of the [`DnsServer`](crate::DnsServer) (which reads it for each
//! query). There is no cache in between: a change is visible to the very
//! next query.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Errors of [`VmRecords`]' writers.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordsError {
    /// The name is not a banger VM name, so it cannot be a `<name>.vm` label.
    #[error(
        "invalid VM name {name:?}: expected a lowercase DNS label \
         ([a-z][a-z0-9-]{{0,62}}, not ending in '-')"
    )]
    InvalidName {
        /// The rejected name.
        name: String,
    },
}

/// Checks the banger VM name rule: `[a-z][a-z0-9-]{0,62}`, not ending in `-`.
///
/// The rule is repeated here rather than imported from `banger-api` so this
/// crate stays a leaf; both spell the same DNS label rule.
pub fn validate_name(name: &str) -> Result<(), RecordsError> {
    let bytes = name.as_bytes();
    let valid = matches!(bytes.first(), Some(b'a'..=b'z'))
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        && bytes.last() != Some(&b'-');
    if valid {
        Ok(())
    } else {
        Err(RecordsError::InvalidName {
            name: name.to_owned(),
        })
    }
}

#[derive(Debug, Default)]
struct Table {
    by_name: HashMap<String, Ipv4Addr>,
    /// Bumped on every change; used as the SOA serial so a secondary or a
    /// curious `dig SOA vm` can see that the zone changed.
    serial: u32,
}

/// A shared, cheaply cloneable table `name -> IPv4 address`.
///
/// Clones share the same table. All operations take a short lock and never
/// hold it across an `.await`, so a `std` lock is the right tool; a poisoned
/// lock is recovered because every write leaves the map consistent.
#[derive(Debug, Clone, Default)]
pub struct VmRecords {
    inner: Arc<RwLock<Table>>,
}

impl VmRecords {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds or updates `name`. Returns the previous address, if any.
    pub fn set(&self, name: &str, ip: Ipv4Addr) -> Result<Option<Ipv4Addr>, RecordsError> {
        validate_name(name)?;
        let mut table = self.write();
        let previous = table.by_name.insert(name.to_owned(), ip);
        if previous != Some(ip) {
            table.serial = table.serial.wrapping_add(1);
        }
        Ok(previous)
    }

    /// Removes `name`. Returns its address, or `None` when it had none (an
    /// invalid name simply has none).
    pub fn remove(&self, name: &str) -> Option<Ipv4Addr> {
        let mut table = self.write();
        let removed = table.by_name.remove(name);
        if removed.is_some() {
            table.serial = table.serial.wrapping_add(1);
        }
        removed
    }

    /// Moves the address of `old` to `new` in one step, so no query sees
    /// both names or neither. Returns `Ok(false)` when `old` has no record.
    pub fn rename(&self, old: &str, new: &str) -> Result<bool, RecordsError> {
        validate_name(new)?;
        let mut table = self.write();
        let Some(ip) = table.by_name.remove(old) else {
            return Ok(false);
        };
        table.by_name.insert(new.to_owned(), ip);
        table.serial = table.serial.wrapping_add(1);
        Ok(true)
    }

    /// Replaces the whole table, e.g. from the database when the daemon
    /// starts. Every name is validated first; on error nothing changes.
    pub fn replace_all<I, S>(&self, entries: I) -> Result<(), RecordsError>
    where
        I: IntoIterator<Item = (S, Ipv4Addr)>,
        S: Into<String>,
    {
        let mut by_name = HashMap::new();
        for (name, ip) in entries {
            let name = name.into();
            validate_name(&name)?;
            by_name.insert(name, ip);
        }
        let mut table = self.write();
        table.by_name = by_name;
        table.serial = table.serial.wrapping_add(1);
        Ok(())
    }

    /// The address of `name`, compared case-insensitively (DNS names are).
    pub fn get(&self, name: &str) -> Option<Ipv4Addr> {
        let table = self.read();
        if let Some(ip) = table.by_name.get(name) {
            return Some(*ip);
        }
        // Stored names are lowercase, so only a name with uppercase letters
        // needs the allocation of a lowercased copy.
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return table.by_name.get(&name.to_ascii_lowercase()).copied();
        }
        None
    }

    /// All records, sorted by name.
    pub fn snapshot(&self) -> Vec<(String, Ipv4Addr)> {
        let mut all: Vec<_> = self
            .read()
            .by_name
            .iter()
            .map(|(name, ip)| (name.clone(), *ip))
            .collect();
        all.sort();
        all
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.read().by_name.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.read().by_name.is_empty()
    }

    /// A counter bumped on every change, served as the SOA serial of `vm.`.
    pub fn serial(&self) -> u32 {
        self.read().serial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);

    #[test]
    fn name_rule() {
        for good in ["a", "alpha", "a1", "brave-otter", &"a".repeat(63)] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "-a",
            "a-",
            "Alpha",
            "a.b",
            "a_b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn set_get_remove_rename() {
        let records = VmRecords::new();
        let shared = records.clone();
        assert_eq!(records.set("alpha", IP), Ok(None));
        assert_eq!(shared.get("alpha"), Some(IP));
        assert_eq!(shared.get("ALPHA"), Some(IP));
        assert_eq!(
            records.set("Alpha", IP),
            Err(RecordsError::InvalidName {
                name: "Alpha".into()
            })
        );
        assert_eq!(records.rename("alpha", "beta"), Ok(true));
        assert_eq!(records.get("alpha"), None);
        assert_eq!(records.get("beta"), Some(IP));
        assert_eq!(records.rename("alpha", "gamma"), Ok(false));
        assert_eq!(records.remove("beta"), Some(IP));
        assert!(records.is_empty());
    }

    #[test]
    fn replace_all_is_all_or_nothing() {
        let records = VmRecords::new();
        records.set("keep", IP).expect("valid");
        let err = records.replace_all([("ok", IP), ("Bad", IP)]);
        assert!(err.is_err());
        assert_eq!(records.snapshot(), vec![("keep".to_owned(), IP)]);
        let before = records.serial();
        records
            .replace_all([("b", IP), ("a", Ipv4Addr::new(10, 0, 0, 1))])
            .expect("valid");
        assert_eq!(records.len(), 2);
        assert_eq!(records.snapshot()[0].0, "a");
        assert_ne!(records.serial(), before);
    }
}
