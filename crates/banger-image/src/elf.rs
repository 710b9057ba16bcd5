//! Minimal, read-only ELF64 little-endian inspection.
//!
//! The boot chain needs three tiny facts from ELF files and nothing more: that a
//! decompressed kernel really is an ELF image, whether a host binary (busybox) is
//! statically linked (no `PT_INTERP` program header), and the contents of a kernel
//! module's `.modinfo` section (where its `depends=` list lives). Pulling a full
//! ELF crate in for that is not worth it; this module bounds-checks every read and
//! reports malformed input as [`ElfError`] instead of panicking.

use thiserror::Error;

/// The four bytes every ELF file starts with.
pub const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];

const PT_INTERP: u32 = 3;

/// Why an ELF file could not be inspected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ElfError {
    /// The data does not start with the ELF magic.
    #[error("not an ELF file (bad magic)")]
    NotElf,
    /// Only 64-bit little-endian ELF is supported (x86_64 guests and hosts).
    #[error("unsupported ELF class/encoding (need ELF64 little-endian)")]
    Unsupported,
    /// A header or table points outside the file.
    #[error("truncated or malformed ELF: {0}")]
    Malformed(&'static str),
}

fn u16_at(data: &[u8], off: usize) -> Result<u16, ElfError> {
    data.get(off..off + 2)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or(ElfError::Malformed("u16 out of bounds"))
}

fn u32_at(data: &[u8], off: usize) -> Result<u32, ElfError> {
    data.get(off..off + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(ElfError::Malformed("u32 out of bounds"))
}

fn u64_at(data: &[u8], off: usize) -> Result<u64, ElfError> {
    data.get(off..off + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(ElfError::Malformed("u64 out of bounds"))
}

fn to_usize(v: u64) -> Result<usize, ElfError> {
    usize::try_from(v).map_err(|_| ElfError::Malformed("offset does not fit usize"))
}

/// Checks the ELF identification bytes: magic, 64-bit class, little-endian.
pub fn check_header(data: &[u8]) -> Result<(), ElfError> {
    if data.get(..4) != Some(&ELF_MAGIC[..]) {
        return Err(ElfError::NotElf);
    }
    // EI_CLASS = 2 (ELFCLASS64), EI_DATA = 1 (little-endian).
    if data.get(4) != Some(&2) || data.get(5) != Some(&1) {
        return Err(ElfError::Unsupported);
    }
    Ok(())
}

/// Returns true when the binary has a `PT_INTERP` program header, i.e. needs a
/// dynamic loader and would not run inside an initramfs that has no libc.
pub fn has_interpreter(data: &[u8]) -> Result<bool, ElfError> {
    check_header(data)?;
    let phoff = to_usize(u64_at(data, 0x20)?)?;
    let phentsize = usize::from(u16_at(data, 0x36)?);
    let phnum = usize::from(u16_at(data, 0x38)?);
    for i in 0..phnum {
        let base = phoff
            .checked_add(i * phentsize)
            .ok_or(ElfError::Malformed("program header offset overflow"))?;
        if u32_at(data, base)? == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Returns the bytes of the section named `name`, or `None` when absent.
pub fn section<'a>(data: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, ElfError> {
    check_header(data)?;
    let shoff = to_usize(u64_at(data, 0x28)?)?;
    let shentsize = usize::from(u16_at(data, 0x3a)?);
    let shnum = usize::from(u16_at(data, 0x3c)?);
    let shstrndx = usize::from(u16_at(data, 0x3e)?);
    if shnum == 0 {
        return Ok(None);
    }
    let header = |i: usize| -> Result<(u32, usize, usize), ElfError> {
        let base = shoff
            .checked_add(i * shentsize)
            .ok_or(ElfError::Malformed("section header offset overflow"))?;
        let name_off = u32_at(data, base)?;
        let off = to_usize(u64_at(data, base + 0x18)?)?;
        let size = to_usize(u64_at(data, base + 0x20)?)?;
        Ok((name_off, off, size))
    };
    let (_, str_off, str_size) = header(shstrndx)?;
    let strtab = data
        .get(str_off..str_off.saturating_add(str_size))
        .ok_or(ElfError::Malformed("section name table out of bounds"))?;
    for i in 0..shnum {
        let (name_off, off, size) = header(i)?;
        let rest = strtab
            .get(name_off as usize..)
            .ok_or(ElfError::Malformed("section name out of bounds"))?;
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        if &rest[..end] == name.as_bytes() {
            return data
                .get(off..off.saturating_add(size))
                .map(Some)
                .ok_or(ElfError::Malformed("section data out of bounds"));
        }
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a tiny ELF64 LE file with one named section (plus the null section
    /// and `.shstrtab`), and optionally a PT_INTERP program header.
    pub(crate) fn tiny_elf(section_name: &str, contents: &[u8], interp: bool) -> Vec<u8> {
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(&ELF_MAGIC);
        out[4] = 2;
        out[5] = 1;
        out[6] = 1;
        // Program header table right after the ELF header.
        let phoff = 64u64;
        out[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        out[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        out[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let mut ph = vec![0u8; 56];
        let ptype: u32 = if interp { PT_INTERP } else { 1 };
        ph[..4].copy_from_slice(&ptype.to_le_bytes());
        out.extend_from_slice(&ph);
        let sec_off = out.len() as u64;
        out.extend_from_slice(contents);
        let strtab_off = out.len() as u64;
        let mut strtab = vec![0u8];
        let name_idx = strtab.len() as u32;
        strtab.extend_from_slice(section_name.as_bytes());
        strtab.push(0);
        let shstr_idx = strtab.len() as u32;
        strtab.extend_from_slice(b".shstrtab\0");
        out.extend_from_slice(&strtab);
        let shoff = out.len() as u64;
        let mut sh = |name: u32, off: u64, size: u64| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&off.to_le_bytes());
            h[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&h);
        };
        sh(0, 0, 0);
        sh(name_idx, sec_off, contents.len() as u64);
        sh(shstr_idx, strtab_off, strtab.len() as u64);
        out[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        out[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        out[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        out
    }

    #[test]
    fn finds_section_and_interp() {
        let elf = tiny_elf(".modinfo", b"depends=a,b\0", true);
        assert_eq!(
            section(&elf, ".modinfo").unwrap(),
            Some(&b"depends=a,b\0"[..])
        );
        assert_eq!(section(&elf, ".nope").unwrap(), None);
        assert!(has_interpreter(&elf).unwrap());
        let static_elf = tiny_elf(".x", b"", false);
        assert!(!has_interpreter(&static_elf).unwrap());
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(check_header(b"MZ\0\0"), Err(ElfError::NotElf));
        let mut elf = tiny_elf(".x", b"", false);
        elf.truncate(70);
        assert!(section(&elf, ".x").is_err());
    }
}
