//! Extract the uncompressed ELF `vmlinux` from an x86 `bzImage`, in pure Rust.
//!
//! Firecracker releases up to v1.16 boot only an ELF `vmlinux`, while distributions
//! ship compressed `bzImage`s (`/boot/vmlinuz-*`). The boot protocol's setup header
//! says where the compressed kernel sits: `payload_offset` (0x248) and
//! `payload_length` (0x24c), relative to the start of the protected-mode code at
//! `(setup_sects + 1) * 512`. Debian's cloud kernel compresses with LZ4 in the
//! *legacy* frame format (magic `0x184C2102`, independent blocks of at most 8 MiB,
//! each preceded by its 32-bit compressed size) followed by the kernel build's
//! 4-byte uncompressed-size trailer. gzip, xz and zstd payloads are handled too so
//! other distribution kernels work. The result is checked to be an ELF file.
//!
//! QEMU boots the `bzImage` directly; this module only matters for Firecracker.

use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::elf;

const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
const LZ4_LEGACY_BLOCK: usize = 8 << 20;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Why a vmlinux could not be extracted.
#[derive(Debug, Error)]
pub enum VmlinuxError {
    /// Reading the bzImage or writing the vmlinux failed.
    #[error("{path}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Extraction from a file failed; wraps the in-memory error with the path.
    #[error("extracting vmlinux from {path}")]
    InFile {
        /// The bzImage.
        path: PathBuf,
        /// What went wrong.
        source: Box<VmlinuxError>,
    },
    /// The input is not a bzImage (missing `HdrS`, too old a boot protocol, or
    /// header fields pointing outside the file).
    #[error("not a usable bzImage: {0}")]
    NotBzImage(&'static str),
    /// The payload uses a compression this module does not know.
    #[error("unknown payload compression (first bytes {0:02x?})")]
    UnknownCompression(Vec<u8>),
    /// The payload is corrupt.
    #[error("{format} payload: {detail}")]
    Decompress {
        /// Compression format name.
        format: &'static str,
        /// Description from the decoder.
        detail: String,
    },
    /// Decompression worked but the result is not an ELF image.
    #[error("decompressed payload is not an ELF vmlinux: {0}")]
    NotElf(#[from] elf::ElfError),
}

/// Compression of a bzImage payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// LZ4 legacy frame (Debian's choice).
    Lz4Legacy,
    /// gzip.
    Gzip,
    /// xz.
    Xz,
    /// zstd.
    Zstd,
}

fn u32_at(data: &[u8], off: usize) -> Option<u32> {
    data.get(off..off + 4)?
        .try_into()
        .ok()
        .map(u32::from_le_bytes)
}

/// Returns the compressed payload slice of a bzImage.
pub fn payload(bzimage: &[u8]) -> Result<&[u8], VmlinuxError> {
    if bzimage.get(0x202..0x206) != Some(b"HdrS") {
        return Err(VmlinuxError::NotBzImage("no HdrS setup header signature"));
    }
    let version = bzimage
        .get(0x206..0x208)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or(VmlinuxError::NotBzImage("truncated header"))?;
    // payload_offset/length appeared in boot protocol 2.08.
    if version < 0x0208 {
        return Err(VmlinuxError::NotBzImage("boot protocol older than 2.08"));
    }
    let mut setup_sects = usize::from(
        *bzimage
            .get(0x1f1)
            .ok_or(VmlinuxError::NotBzImage("truncated header"))?,
    );
    if setup_sects == 0 {
        // Documented quirk: 0 means 4.
        setup_sects = 4;
    }
    let offset =
        u32_at(bzimage, 0x248).ok_or(VmlinuxError::NotBzImage("truncated header"))? as usize;
    let length =
        u32_at(bzimage, 0x24c).ok_or(VmlinuxError::NotBzImage("truncated header"))? as usize;
    let start = (setup_sects + 1) * 512 + offset;
    bzimage
        .get(start..start.saturating_add(length))
        .ok_or(VmlinuxError::NotBzImage("payload outside the file"))
}

/// Detects the payload compression from its magic bytes.
pub fn detect(payload: &[u8]) -> Result<Compression, VmlinuxError> {
    if u32_at(payload, 0) == Some(LZ4_LEGACY_MAGIC) {
        Ok(Compression::Lz4Legacy)
    } else if payload.starts_with(&GZIP_MAGIC) {
        Ok(Compression::Gzip)
    } else if payload.starts_with(&XZ_MAGIC) {
        Ok(Compression::Xz)
    } else if payload.starts_with(&ZSTD_MAGIC) {
        Ok(Compression::Zstd)
    } else {
        Err(VmlinuxError::UnknownCompression(
            payload.iter().take(8).copied().collect(),
        ))
    }
}

/// Extracts the ELF vmlinux from bzImage bytes.
pub fn extract_vmlinux(bzimage: &[u8]) -> Result<Vec<u8>, VmlinuxError> {
    let payload = payload(bzimage)?;
    let out = match detect(payload)? {
        Compression::Lz4Legacy => decode_lz4_legacy(payload)?,
        Compression::Gzip => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(payload)
                .read_to_end(&mut out)
                .map_err(|e| decompress_err("gzip", e))?;
            out
        }
        Compression::Xz => {
            // The kernel build appends a 4-byte size after the xz stream; the xz
            // decoder would read it as invalid stream padding.
            let body = payload
                .get(..payload.len().saturating_sub(4))
                .unwrap_or(payload);
            let mut out = Vec::new();
            lzma_rs::xz_decompress(&mut std::io::BufReader::new(body), &mut out)
                .map_err(|e| decompress_err("xz", e))?;
            out
        }
        Compression::Zstd => {
            let mut out = Vec::new();
            let mut dec = ruzstd::decoding::StreamingDecoder::new(payload)
                .map_err(|e| decompress_err("zstd", e))?;
            dec.read_to_end(&mut out)
                .map_err(|e| decompress_err("zstd", e))?;
            out
        }
    };
    elf::check_header(&out)?;
    Ok(out)
}

fn decompress_err(format: &'static str, e: impl std::fmt::Display) -> VmlinuxError {
    VmlinuxError::Decompress {
        format,
        detail: e.to_string(),
    }
}

/// Decodes an LZ4 legacy frame, including the kernel's trailing size word.
fn decode_lz4_legacy(payload: &[u8]) -> Result<Vec<u8>, VmlinuxError> {
    let err = |detail: String| VmlinuxError::Decompress {
        format: "lz4",
        detail,
    };
    let mut out = Vec::new();
    let mut scratch = vec![0u8; LZ4_LEGACY_BLOCK];
    let mut pos = 4;
    // The largest compressed size of an 8 MiB block (LZ4_compressBound).
    let max_chunk = LZ4_LEGACY_BLOCK + LZ4_LEGACY_BLOCK / 255 + 16;
    while pos < payload.len() {
        let chunk =
            u32_at(payload, pos).ok_or_else(|| err(format!("truncated block header at {pos}")))?;
        if chunk == LZ4_LEGACY_MAGIC {
            // Concatenated legacy frames: skip the next frame's magic.
            pos += 4;
            continue;
        }
        if payload.len() - pos == 4 {
            // The kernel's size_append trailer: the uncompressed length.
            if chunk as usize != out.len() {
                return Err(err(format!(
                    "size trailer says {chunk} bytes, decoded {}",
                    out.len()
                )));
            }
            break;
        }
        let chunk = chunk as usize;
        if chunk > max_chunk {
            return Err(err(format!(
                "block size {chunk} at {pos} exceeds the legacy maximum"
            )));
        }
        pos += 4;
        let block = payload
            .get(pos..pos + chunk)
            .ok_or_else(|| err(format!("block at {pos} runs past the payload end")))?;
        let n = lz4_flex::block::decompress_into(block, &mut scratch)
            .map_err(|e| err(format!("block at {pos}: {e}")))?;
        out.extend_from_slice(&scratch[..n]);
        pos += chunk;
    }
    Ok(out)
}

/// Reads the bzImage at `bzimage` and writes the ELF vmlinux to `out`
/// (through a temporary file renamed into place, so a crash never leaves a
/// half-written vmlinux behind).
pub fn extract_vmlinux_file(bzimage: &Path, out: &Path) -> Result<(), VmlinuxError> {
    let data = fs_err::read(bzimage).map_err(|source| VmlinuxError::Io {
        path: bzimage.to_owned(),
        source,
    })?;
    let elf = extract_vmlinux(&data).map_err(|e| VmlinuxError::InFile {
        path: bzimage.to_owned(),
        source: Box::new(e),
    })?;
    let tmp = out.with_extension("tmp");
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| VmlinuxError::Io { path, source }
    };
    fs_err::write(&tmp, &elf).map_err(io(&tmp))?;
    fs_err::rename(&tmp, out).map_err(io(out))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A fake vmlinux: ELF header bytes then compressible filler.
    fn fake_vmlinux(len: usize) -> Vec<u8> {
        let mut v = crate::elf::tests::tiny_elf(".text", b"kernel", false);
        v.extend((0..len).map(|i| (i % 251) as u8 ^ (i / 4096) as u8));
        v
    }

    /// Wraps a payload in a minimal bzImage: setup_sects = 2, HdrS, version 2.15,
    /// payload at offset 0x100 after the setup code.
    fn fake_bzimage(payload: &[u8]) -> Vec<u8> {
        let setup_sects = 2u8;
        let pm_start = (usize::from(setup_sects) + 1) * 512;
        let payload_offset = 0x100usize;
        let mut img = vec![0u8; pm_start + payload_offset];
        img[0x1f1] = setup_sects;
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        img[0x248..0x24c].copy_from_slice(&(payload_offset as u32).to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        img.extend_from_slice(payload);
        img.extend_from_slice(&[0xcc; 64]); // trailing junk after the payload
        img
    }

    /// Encodes like `lz4 -l` followed by the kernel's size_append.
    fn lz4_legacy(data: &[u8]) -> Vec<u8> {
        let mut out = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for block in data.chunks(LZ4_LEGACY_BLOCK) {
            let c = lz4_flex::block::compress(block);
            out.extend_from_slice(&(c.len() as u32).to_le_bytes());
            out.extend_from_slice(&c);
        }
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }

    #[test]
    fn lz4_legacy_multi_block_roundtrip() {
        // Larger than one 8 MiB block, so block iteration is exercised.
        let vmlinux = fake_vmlinux(9 << 20);
        let img = fake_bzimage(&lz4_legacy(&vmlinux));
        assert_eq!(
            detect(payload(&img).unwrap()).unwrap(),
            Compression::Lz4Legacy
        );
        let out = extract_vmlinux(&img).unwrap();
        assert_eq!(out.len(), vmlinux.len());
        assert!(out == vmlinux);
        assert_eq!(&out[..4], &elf::ELF_MAGIC);
    }

    #[test]
    fn lz4_wrong_trailer_is_detected() {
        let vmlinux = fake_vmlinux(1000);
        let mut payload = lz4_legacy(&vmlinux);
        let n = payload.len();
        payload[n - 4..].copy_from_slice(&7u32.to_le_bytes());
        let err = extract_vmlinux(&fake_bzimage(&payload)).unwrap_err();
        assert!(err.to_string().contains("size trailer"), "{err}");
    }

    #[test]
    fn gzip_payload() {
        let vmlinux = fake_vmlinux(100_000);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&vmlinux).unwrap();
        let img = fake_bzimage(&enc.finish().unwrap());
        assert!(extract_vmlinux(&img).unwrap() == vmlinux);
    }

    #[test]
    fn xz_payload_with_size_trailer() {
        let vmlinux = fake_vmlinux(50_000);
        let mut payload = Vec::new();
        lzma_rs::xz_compress(&mut &vmlinux[..], &mut payload).unwrap();
        payload.extend_from_slice(&(vmlinux.len() as u32).to_le_bytes());
        assert!(extract_vmlinux(&fake_bzimage(&payload)).unwrap() == vmlinux);
    }

    #[test]
    fn rejects_non_elf_and_non_bzimage() {
        assert!(matches!(
            extract_vmlinux(&[0u8; 4096]),
            Err(VmlinuxError::NotBzImage(_))
        ));
        let img = fake_bzimage(&lz4_legacy(&[0x55; 5000]));
        assert!(matches!(
            extract_vmlinux(&img),
            Err(VmlinuxError::NotElf(_))
        ));
        let img = fake_bzimage(b"garbage!");
        assert!(matches!(
            extract_vmlinux(&img),
            Err(VmlinuxError::UnknownCompression(_))
        ));
    }

    #[test]
    fn file_roundtrip_and_error_names_path() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("vmlinuz");
        let dst = dir.path().join("vmlinux");
        let vmlinux = fake_vmlinux(10_000);
        fs_err::write(&src, fake_bzimage(&lz4_legacy(&vmlinux))).unwrap();
        extract_vmlinux_file(&src, &dst).unwrap();
        assert!(fs_err::read(&dst).unwrap() == vmlinux);
        let missing = dir.path().join("missing");
        let err = extract_vmlinux_file(&missing, &dst).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
