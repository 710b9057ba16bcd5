//! Output bounds: every byte stream a tool returns (command output, file
//! contents, console and session logs) is cut at a limit, with a
//! `truncated` flag and the total size, so an agent's context is never
//! flooded and the server's memory stays small.

use serde::Serialize;

/// Default bytes kept of a command's stdout and of its stderr.
pub const DEFAULT_OUTPUT_BYTES: usize = 64 * 1024;
/// Most bytes any single text in a tool result may carry.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// Default bytes of a console or session log tail.
pub const DEFAULT_LOG_BYTES: usize = 16 * 1024;
/// Most bytes `file_write` accepts.
pub const MAX_WRITE_BYTES: usize = 1024 * 1024;
/// Most entries `file_list` returns.
pub const MAX_LIST_ENTRIES: usize = 1000;
/// Longest input line (one JSON-RPC message) the server reads.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// `requested` bytes (or `default`), never more than [`MAX_OUTPUT_BYTES`].
pub fn limit(requested: Option<u64>, default: usize) -> usize {
    requested.map_or(default, |bytes| {
        usize::try_from(bytes).map_or(MAX_OUTPUT_BYTES, |bytes| bytes.min(MAX_OUTPUT_BYTES))
    })
}

/// Text cut from a byte stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bounded {
    /// The kept bytes as UTF-8 (invalid sequences replaced).
    pub text: String,
    /// Total bytes the stream had.
    pub bytes: u64,
    /// Bytes of the stream `text` covers (from its start for a head, up to
    /// its end for a tail).
    pub kept: u64,
    /// Whether bytes were left out.
    pub truncated: bool,
}

/// Keeps the first `limit` bytes of a stream and counts the rest.
#[derive(Debug)]
pub struct Head {
    kept: Vec<u8>,
    limit: usize,
    total: u64,
}

impl Head {
    /// An empty capture keeping at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            kept: Vec::new(),
            limit,
            total: 0,
        }
    }

    /// Adds bytes; those past the limit are only counted.
    pub fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Whether the limit is reached (more bytes would only be counted).
    pub fn is_full(&self) -> bool {
        self.kept.len() >= self.limit
    }

    /// Whether bytes past the limit were seen.
    pub fn overflowed(&self) -> bool {
        self.total > self.kept.len() as u64
    }

    /// The kept text.
    pub fn finish(self) -> Bounded {
        let truncated = self.total > self.kept.len() as u64;
        let mut kept = self.kept;
        if truncated {
            // Do not end in the middle of a character the cut split.
            kept.truncate(valid_prefix(&kept));
        }
        Bounded {
            text: String::from_utf8_lossy(&kept).into_owned(),
            bytes: self.total,
            kept: kept.len() as u64,
            truncated,
        }
    }
}

/// Keeps the last `limit` bytes of a stream.
#[derive(Debug)]
pub struct Tail {
    kept: Vec<u8>,
    limit: usize,
    total: u64,
}

impl Tail {
    /// An empty capture keeping at most the last `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            kept: Vec::new(),
            limit,
            total: 0,
        }
    }

    /// Adds bytes, dropping the oldest beyond the limit.
    pub fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        self.kept.extend_from_slice(bytes);
        // Trim in batches, not on every push.
        if self.kept.len() > self.limit.saturating_mul(2).max(64 * 1024) {
            let excess = self.kept.len() - self.limit;
            self.kept.drain(..excess);
        }
    }

    /// The kept text.
    pub fn finish(self) -> Bounded {
        let mut kept = self.kept;
        if kept.len() > self.limit {
            let excess = kept.len() - self.limit;
            kept.drain(..excess);
        }
        let truncated = self.total > kept.len() as u64;
        if truncated {
            // Do not start in the middle of a character the cut split.
            let skip = kept
                .iter()
                .take(3)
                .take_while(|byte| (**byte & 0xC0) == 0x80)
                .count();
            kept.drain(..skip);
        }
        Bounded {
            text: String::from_utf8_lossy(&kept).into_owned(),
            bytes: self.total,
            kept: kept.len() as u64,
            truncated,
        }
    }
}

/// `bytes` cut to at most `limit` bytes.
pub fn head(bytes: &[u8], limit: usize) -> Bounded {
    let mut head = Head::new(limit);
    head.push(bytes);
    head.finish()
}

/// Length of `bytes` without a trailing incomplete UTF-8 sequence.
fn valid_prefix(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(error) if error.error_len().is_none() => error.valid_up_to(),
        Err(_) => bytes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_keeps_the_start_and_counts_everything() {
        let mut capture = Head::new(5);
        capture.push(b"hello ");
        capture.push(b"world");
        assert!(capture.is_full());
        assert_eq!(
            capture.finish(),
            Bounded {
                text: "hello".into(),
                bytes: 11,
                kept: 5,
                truncated: true
            }
        );
        assert_eq!(
            head(b"hi", 5),
            Bounded {
                text: "hi".into(),
                bytes: 2,
                kept: 2,
                truncated: false
            }
        );
    }

    #[test]
    fn cuts_never_split_a_character() {
        // "é" is two bytes; a cut after its first byte drops it.
        let bounded = head("aé".as_bytes(), 2);
        assert_eq!(bounded.text, "a");
        assert!(bounded.truncated);
        let mut tail = Tail::new(2);
        tail.push("éa".as_bytes());
        assert_eq!(tail.finish().text, "a");
    }

    #[test]
    fn tail_keeps_the_end_of_a_long_stream() {
        let mut tail = Tail::new(4);
        for _ in 0..100_000 {
            tail.push(b"abcdefgh");
        }
        tail.push(b"XYZ");
        let bounded = tail.finish();
        assert_eq!(bounded.text, "hXYZ");
        assert_eq!(bounded.bytes, 800_003);
        assert!(bounded.truncated);
    }

    #[test]
    fn limits_are_clamped() {
        assert_eq!(limit(None, 10), 10);
        assert_eq!(limit(Some(3), 10), 3);
        assert_eq!(limit(Some(u64::MAX), 10), MAX_OUTPUT_BYTES);
    }
}
