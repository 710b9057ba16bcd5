//! Test support: a small OCI writer. Tar layers are written header by
//! header (so hostile names such as `../x` or `/etc/x` can be made), then
//! packed into an OCI image layout (optionally behind a multi-arch index)
//! or a `docker save` archive.

#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

use banger_oci::Digest;

/// One tar entry.
#[derive(Clone)]
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: u8,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
    pub major: u32,
    pub minor: u32,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    fn new(path: &str, kind: u8, mode: u32) -> Self {
        Self {
            path: path.as_bytes().to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            data: Vec::new(),
            link: Vec::new(),
            major: 0,
            minor: 0,
            xattrs: Vec::new(),
        }
    }
    pub fn file(path: &str, data: &[u8], mode: u32) -> Self {
        let mut entry = Self::new(path, b'0', mode);
        entry.data = data.to_vec();
        entry
    }
    pub fn dir(path: &str, mode: u32) -> Self {
        Self::new(path, b'5', mode)
    }
    pub fn symlink(path: &str, target: &str) -> Self {
        let mut entry = Self::new(path, b'2', 0o777);
        entry.link = target.as_bytes().to_vec();
        entry
    }
    pub fn hardlink(path: &str, target: &str) -> Self {
        let mut entry = Self::new(path, b'1', 0o644);
        entry.link = target.as_bytes().to_vec();
        entry
    }
    pub fn chardev(path: &str, major: u32, minor: u32, mode: u32) -> Self {
        let mut entry = Self::new(path, b'3', mode);
        entry.major = major;
        entry.minor = minor;
        entry
    }
    pub fn fifo(path: &str, mode: u32) -> Self {
        Self::new(path, b'6', mode)
    }
    pub fn whiteout(dir: &str, name: &str) -> Self {
        let path = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        Self::file(&path, b"", 0o644)
    }
    pub fn opaque(dir: &str) -> Self {
        Self::file(&format!("{dir}/.wh..wh..opq"), b"", 0o644)
    }
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn xattr(mut self, name: &str, value: &[u8]) -> Self {
        self.xattrs.push((name.to_owned(), value.to_vec()));
        self
    }
}

fn octal(field: &mut [u8], value: u64) {
    let text = format!("{:0width$o}\0", value, width = field.len() - 1);
    field.copy_from_slice(text.as_bytes());
}

fn header(path: &[u8], kind: u8, entry: &Entry, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    let name_len = path.len().min(100);
    h[..name_len].copy_from_slice(&path[..name_len]);
    octal(&mut h[100..108], u64::from(entry.mode));
    octal(&mut h[108..116], u64::from(entry.uid));
    octal(&mut h[116..124], u64::from(entry.gid));
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = kind;
    let link_len = entry.link.len().min(100);
    h[157..157 + link_len].copy_from_slice(&entry.link[..link_len]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], u64::from(entry.major));
    octal(&mut h[337..345], u64::from(entry.minor));
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    h
}

fn pad(out: &mut Vec<u8>) {
    while out.len() % 512 != 0 {
        out.push(0);
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = key.len() + value.len() + 3;
    let mut len = body_len + 1;
    while len.to_string().len() + body_len != len {
        len = len.to_string().len() + body_len;
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// An uncompressed tar of `entries`.
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let mut pax = Vec::new();
        if entry.path.len() > 100 {
            pax.extend(pax_record("path", &entry.path));
        }
        if entry.link.len() > 100 {
            pax.extend(pax_record("linkpath", &entry.link));
        }
        for (name, value) in &entry.xattrs {
            pax.extend(pax_record(&format!("SCHILY.xattr.{name}"), value));
        }
        if !pax.is_empty() {
            let pax_entry = Entry::new("PaxHeader", b'x', 0o644);
            out.extend_from_slice(&header(b"PaxHeader", b'x', &pax_entry, pax.len() as u64));
            out.extend_from_slice(&pax);
            pad(&mut out);
        }
        out.extend_from_slice(&header(
            &entry.path,
            entry.kind,
            entry,
            entry.data.len() as u64,
        ));
        out.extend_from_slice(&entry.data);
        pad(&mut out);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

/// Layer media type for bytes produced by [`tar`], [`gzip`] or [`zstd`].
pub fn layer_media_type(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    }
}

fn write_blob(dir: &Path, bytes: &[u8]) -> (Digest, u64) {
    let digest = Digest::of(bytes);
    let path = dir.join("blobs/sha256").join(digest.hex());
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, bytes).unwrap();
    (digest, bytes.len() as u64)
}

pub fn config_json(arch: &str, layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|layer| Digest::of(layer).to_string())
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/bin:/bin", "BANGER_TEST=1"],
            "Entrypoint": ["/bin/entry"],
            "Cmd": ["--serve"],
            "WorkingDir": "/srv",
            "User": "1000:1000"
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap()
}

/// Writes one image manifest (config + `layers`, each already compressed
/// or not) into the layout at `dir`; returns its descriptor JSON.
pub fn write_manifest(dir: &Path, arch: &str, layers: &[Vec<u8>]) -> serde_json::Value {
    // diff_ids are of the uncompressed tars; tests only read them for docker archives.
    let (config_digest, config_size) = write_blob(dir, &config_json(arch, layers));
    let layer_descriptors: Vec<serde_json::Value> = layers
        .iter()
        .map(|layer| {
            let (digest, size) = write_blob(dir, layer);
            serde_json::json!({"mediaType": layer_media_type(layer), "digest": digest.to_string(), "size": size})
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_size},
        "layers": layer_descriptors,
    }))
    .unwrap();
    let (digest, size) = write_blob(dir, &manifest);
    serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest.to_string(),
        "size": size,
        "platform": {"architecture": arch, "os": "linux"},
    })
}

/// An OCI layout at `dir` with one image tagged `tag`; with `multi_arch`
/// the tag names an index of an amd64 image (`layers`) and an arm64 one
/// (a single different layer).
pub fn oci_layout(dir: &Path, tag: &str, layers: &[Vec<u8>], multi_arch: bool) {
    fs_err::create_dir_all(dir).unwrap();
    fs_err::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut top = write_manifest(dir, "amd64", layers);
    if multi_arch {
        let arm = write_manifest(
            dir,
            "arm64",
            &[tar(&[Entry::file("arm64-only", b"arm\n", 0o644)])],
        );
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [arm, top],
        }))
        .unwrap();
        let (digest, size) = write_blob(dir, &index);
        top = serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest.to_string(),
            "size": size,
        });
    }
    top["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [top]});
    fs_err::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A `docker save` archive (legacy layout: `<n>/layer.tar`, uncompressed).
pub fn docker_archive(path: &Path, layers: &[Vec<u8>]) {
    let config = config_json("amd64", layers);
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let layer_names: Vec<String> = (0..layers.len())
        .map(|i| format!("{i}/layer.tar"))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["test/archive:latest"],
        "Layers": layer_names,
    }]))
    .unwrap();
    let mut entries = vec![Entry::file(&config_name, &config, 0o644)];
    for (name, layer) in layer_names.iter().zip(layers) {
        entries.push(Entry::dir(name.split('/').next().unwrap(), 0o755));
        entries.push(Entry::file(name, layer, 0o644));
    }
    entries.push(Entry::file("manifest.json", &manifest, 0o644));
    fs_err::write(path, tar(&entries)).unwrap();
}

/// Runs `debugfs -R request image` and returns stdout.
pub fn debugfs(image: &Path, request: &str) -> String {
    let output = Command::new(banger_oci::ext4::find_program("debugfs"))
        .arg("-R")
        .arg(request)
        .arg(image)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// (mode as octal text, uid, gid, links) of `path` in `image`, from `debugfs stat`.
pub fn stat(image: &Path, path: &str) -> Option<(String, u32, u32, u32)> {
    let text = debugfs(image, &format!("stat \"{path}\""));
    let field = |name: &str| -> Option<String> {
        let start = text.find(name)? + name.len();
        Some(text[start..].split_whitespace().next()?.to_owned())
    };
    Some((
        field("Mode:")?,
        field("User:")?.parse().ok()?,
        field("Group:")?.parse().ok()?,
        field("Links:")?.parse().ok()?,
    ))
}

/// Contents of `path` in `image`.
pub fn cat(image: &Path, path: &str) -> String {
    debugfs(image, &format!("cat \"{path}\""))
}

/// Names in directory `path` of `image` (without `.` and `..`).
pub fn ls(image: &Path, path: &str) -> Vec<String> {
    let mut names: Vec<String> = debugfs(image, &format!("ls -p \"{path}\""))
        .lines()
        .filter_map(|line| line.split('/').nth(5).map(str::to_owned))
        .filter(|name| !name.is_empty() && name != "." && name != "..")
        .collect();
    names.sort();
    names
}

/// A temp dir under the target dir (same filesystem as the cache).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn paths(root: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let cache = root.join("cache");
    let work = root.join("work");
    let out = root.join("out");
    for dir in [&cache, &work, &out] {
        fs_err::create_dir_all(dir).unwrap();
    }
    (cache, work, out)
}
