//! Content digests (`sha256:<64 hex>`) and a reader that computes one while
//! it streams, with a byte limit.

use std::fmt;
use std::io::Read;

use sha2::{Digest as _, Sha256};

/// A `sha256:` digest; the only algorithm registries and layouts use in
/// practice, so anything else is refused when parsed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a digest of the form sha256:<64 lowercase hex digits>")]
pub struct DigestError {
    /// The refused text.
    pub text: String,
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(text: &str) -> Result<Self, DigestError> {
        let hex = text.strip_prefix("sha256:").ok_or_else(|| DigestError {
            text: text.to_owned(),
        })?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError {
                text: text.to_owned(),
            });
        }
        Ok(Self {
            hex: hex.to_owned(),
        })
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Self {
        Self {
            hex: hasher
                .finalize()
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect(),
        }
    }

    /// The 64 hex digits (a safe file name: only `0-9a-f`).
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The payload of the `io::Error` a [`HashingReader`] returns once more than
/// its limit was read; callers turn it into their own error naming the limit.
#[derive(Debug, thiserror::Error)]
#[error("more than {limit} bytes")]
pub struct LimitExceeded {
    /// The limit in bytes.
    pub limit: u64,
}

/// Whether `error` is a [`HashingReader`]'s (or a limit reader's) limit.
pub fn limit_of(error: &std::io::Error) -> Option<u64> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<LimitExceeded>())
        .map(|exceeded| exceeded.limit)
}

/// Reads through `inner`, hashing every byte and failing with
/// [`LimitExceeded`] after more than `limit` bytes.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
            limit,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Reads `inner` to its end (so trailing bytes after a tar's end are
    /// hashed too) and returns the digest and byte count.
    pub fn finish(mut self) -> std::io::Result<(Digest, u64)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok((Digest::from_hasher(self.hasher), self.count))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.count += read as u64;
        if self.count > self.limit {
            return Err(std::io::Error::other(LimitExceeded { limit: self.limit }));
        }
        self.hasher.update(&buf[..read]);
        Ok(read)
    }
}

/// Counts bytes through `inner` and fails with [`LimitExceeded`] after more
/// than `limit`: the decompressed side of a layer (decompression bombs).
pub struct LimitReader<R> {
    inner: R,
    count: u64,
    limit: u64,
}

impl<R: Read> LimitReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            count: 0,
            limit,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl<R: Read> Read for LimitReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.count += read as u64;
        if self.count > self.limit {
            return Err(std::io::Error::other(LimitExceeded { limit: self.limit }));
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_sha256_hex() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(Digest::parse(&good).unwrap().to_string(), good);
        for bad in [
            "sha512:aa",
            "sha256:",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}/..", "a".repeat(62)),
            "sha256:../../etc/passwd",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hashing_reader_digests_and_limits() {
        let data = b"hello world";
        let reader = HashingReader::new(&data[..], 100);
        let (digest, count) = reader.finish().unwrap();
        assert_eq!(digest, Digest::of(data));
        assert_eq!(count, 11);
        let error = HashingReader::new(&data[..], 5).finish().unwrap_err();
        assert_eq!(limit_of(&error), Some(5));
    }
}
