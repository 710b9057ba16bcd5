//! Checksum-verified downloads for `url` kernel catalog entries.
//!
//! The file is streamed into a temporary name next to its destination while
//! its sha256 is computed; only a matching digest is renamed into place, so a
//! mismatch, a network error or an interrupted run leaves nothing behind.
//! `https://` is accepted for any host; plain `http://` only for loopback
//! (local mirrors and tests); `file://` for mirrors on disk.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why a download failed. Nothing is left at the destination.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The URL's scheme or host is not allowed.
    #[error("refusing to download {url}: use https://, http:// to a loopback address, or file://")]
    UnsupportedUrl {
        /// The URL.
        url: String,
    },
    /// The expected digest is not 64 hex digits.
    #[error("sha256 {sha256:?} for {url} is not 64 hexadecimal digits")]
    BadDigest {
        /// The URL.
        url: String,
        /// The digest given.
        sha256: String,
    },
    /// The HTTP request failed.
    #[error("cannot download {url}")]
    Http {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: Box<ureq::Error>,
    },
    /// Reading the source or writing the destination failed.
    #[error("cannot {action} {path} while downloading {url}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The content's digest differs from the catalog's.
    #[error(
        "checksum mismatch for {url}: expected sha256 {expected}, got {actual}; the download was discarded"
    )]
    ChecksumMismatch {
        /// The URL.
        url: String,
        /// From the catalog.
        expected: String,
        /// Of the received bytes.
        actual: String,
    },
}

const CHUNK: usize = 256 * 1024;

fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            name
        } else {
            host
        }
    });
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// Whether `url` uses a scheme and host [`download_verified`] accepts.
pub fn is_allowed_url(url: &str) -> bool {
    url.starts_with("https://")
        || is_loopback_http(url)
        || url
            .strip_prefix("file://")
            .is_some_and(|path| Path::new(path).is_absolute())
}

/// Downloads `url` to `dest`, verifying `sha256` (lowercase hex).
/// `progress(done_bytes, total_bytes)` is called as data arrives.
pub fn download_verified(
    url: &str,
    sha256: &str,
    dest: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(), DownloadError> {
    let expected = sha256.to_ascii_lowercase();
    if expected.len() != 64 || !expected.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(DownloadError::BadDigest {
            url: url.to_owned(),
            sha256: sha256.to_owned(),
        });
    }
    let (mut reader, total): (Box<dyn Read>, Option<u64>) =
        if let Some(path) = url.strip_prefix("file://") {
            let path = Path::new(path);
            if !path.is_absolute() {
                return Err(DownloadError::UnsupportedUrl {
                    url: url.to_owned(),
                });
            }
            let file = fs_err::File::open(path).map_err(|source| DownloadError::Io {
                action: "open",
                path: path.to_owned(),
                url: url.to_owned(),
                source,
            })?;
            let total = file.metadata().ok().map(|metadata| metadata.len());
            (Box::new(file), total)
        } else if url.starts_with("https://") || is_loopback_http(url) {
            let response = ureq::get(url)
                .call()
                .map_err(|source| DownloadError::Http {
                    url: url.to_owned(),
                    source: Box::new(source),
                })?;
            let total = response.body().content_length();
            (Box::new(response.into_body().into_reader()), total)
        } else {
            return Err(DownloadError::UnsupportedUrl {
                url: url.to_owned(),
            });
        };

    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        let url = url.to_owned();
        move |source| DownloadError::Io {
            action,
            path,
            url,
            source,
        }
    };
    let parent = dest.parent().unwrap_or(Path::new("."));
    fs_err::create_dir_all(parent).map_err(io("create", parent))?;
    let temp = dest.with_extension(format!("partial-{}", std::process::id()));
    let result = (|| {
        let mut file = fs_err::File::create(&temp).map_err(io("create", &temp))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; CHUNK];
        let mut done = 0u64;
        loop {
            let read = reader
                .read(&mut buffer)
                .map_err(io("read from", Path::new(url)))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            file.write_all(&buffer[..read])
                .map_err(io("write", &temp))?;
            done += read as u64;
            progress(done, total);
        }
        let actual: String = hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        if actual != expected {
            return Err(DownloadError::ChecksumMismatch {
                url: url.to_owned(),
                expected: expected.clone(),
                actual,
            });
        }
        file.sync_all().map_err(io("sync", &temp))?;
        fs_err::rename(&temp, dest).map_err(io("rename into", dest))
    })();
    if result.is_err() {
        let _ = fs_err::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;
    use std::net::TcpListener;

    use super::*;

    fn digest(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        fs_err::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn file_url_with_matching_digest_lands_atomically() {
        let temp = tempfile::tempdir().unwrap();
        let source = temp.path().join("kernel.bin");
        fs_err::write(&source, b"kernel bytes").unwrap();
        let dest = temp.path().join("out/kernel");
        let mut calls = 0;
        let url = format!("file://{}", source.display());
        download_verified(&url, &digest(b"kernel bytes"), &dest, &mut |_, _| {
            calls += 1
        })
        .unwrap();
        assert_eq!(fs_err::read(&dest).unwrap(), b"kernel bytes");
        assert!(calls > 0);
        assert_eq!(
            leftovers(&temp.path().join("out")),
            vec!["kernel".to_owned()]
        );
    }

    #[test]
    fn checksum_mismatch_leaves_nothing_behind() {
        let temp = tempfile::tempdir().unwrap();
        let source = temp.path().join("kernel.bin");
        fs_err::write(&source, b"tampered").unwrap();
        let out = temp.path().join("out");
        let dest = out.join("kernel");
        let url = format!("file://{}", source.display());
        let error =
            download_verified(&url, &digest(b"original"), &dest, &mut |_, _| {}).unwrap_err();
        assert!(
            matches!(error, DownloadError::ChecksumMismatch { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("discarded"));
        assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
    }

    #[test]
    fn http_download_from_loopback_reports_progress() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let body = vec![7u8; 600_000];
        let served = body.clone();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                served.len()
            )
            .unwrap();
            stream.write_all(&served).unwrap();
        });
        let temp = tempfile::tempdir().unwrap();
        let dest = temp.path().join("kernel");
        let mut last = (0, None);
        download_verified(
            &format!("http://127.0.0.1:{port}/k"),
            &digest(&body),
            &dest,
            &mut |done, total| last = (done, total),
        )
        .unwrap();
        server.join().unwrap();
        assert_eq!(last, (600_000, Some(600_000)));
        assert_eq!(fs_err::read(&dest).unwrap().len(), 600_000);
    }

    #[test]
    fn non_loopback_http_and_bad_digests_are_refused() {
        let temp = tempfile::tempdir().unwrap();
        let dest = temp.path().join("k");
        let good = "0".repeat(64);
        let error =
            download_verified("http://example.com/k", &good, &dest, &mut |_, _| {}).unwrap_err();
        assert!(matches!(error, DownloadError::UnsupportedUrl { .. }));
        let error = download_verified("ftp://x/k", &good, &dest, &mut |_, _| {}).unwrap_err();
        assert!(matches!(error, DownloadError::UnsupportedUrl { .. }));
        let error =
            download_verified("https://example.com/k", "abc", &dest, &mut |_, _| {}).unwrap_err();
        assert!(matches!(error, DownloadError::BadDigest { .. }));
        assert!(leftovers(temp.path()).is_empty());
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_http("http://127.0.0.1:8080/x"));
        assert!(is_loopback_http("http://localhost/x"));
        assert!(!is_loopback_http("http://127.0.0.1.evil.com/x"));
        assert!(!is_loopback_http("https://127.0.0.1/x"));
    }
}
