//! Property tests of the OCI parsers: digests, image references, path
//! normalisation and layer (tar) ingestion. Hostile tars — arbitrary bytes,
//! or well-formed headers with `..`, absolute paths, whiteouts, symlinks and
//! hardlinks pointing anywhere — must never panic, never write outside the
//! content directory, and either fail or leave a tree whose every name is
//! one normalised component whose file content is where the tree says.
//!
//! Cases per property: proptest's default (256), or `PROPTEST_CASES=N`.

use std::path::Path;

use banger_oci::Digest;
use banger_oci::layer::{LayerLimits, apply_layer};
use banger_oci::reference::{ImageRef, Source};
use banger_oci::tree::{Kind, ROOT, Tree, normalize};
use proptest::prelude::*;

const LIMITS: LayerLimits = LayerLimits {
    max_layer_bytes: 1024 * 1024,
    max_image_bytes: 1024 * 1024,
    max_inodes: 1000,
};

/// One path component, hostile ones overrepresented.
fn component() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"..".to_vec()),
        Just(b".".to_vec()),
        Just(Vec::new()),
        Just(b"etc".to_vec()),
        Just(b"a".to_vec()),
        Just(b".wh.a".to_vec()),
        Just(b".wh..wh..opq".to_vec()),
        Just(b".wh.".to_vec()),
        proptest::collection::vec(
            any::<u8>().prop_filter("no NUL or /", |b| *b != 0 && *b != b'/'),
            1..6
        ),
    ]
}

/// A path of up to five components, sometimes absolute.
fn entry_path() -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), proptest::collection::vec(component(), 0..5)).prop_map(|(absolute, parts)| {
        let mut path = if absolute { b"/".to_vec() } else { Vec::new() };
        path.extend(parts.join(&b'/'));
        path.truncate(99);
        path
    })
}

/// One tar entry: type byte, path, link target and content.
#[derive(Debug, Clone)]
struct Entry {
    kind: u8,
    path: Vec<u8>,
    link: Vec<u8>,
    data: Vec<u8>,
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        prop::sample::select(vec![
            b'0', b'5', b'2', b'1', b'3', b'4', b'6', b'g', b'x', b'Z',
        ]),
        entry_path(),
        entry_path(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(kind, path, link, data)| Entry {
            kind,
            path,
            link,
            data,
        })
}

/// Writes a ustar header by hand (tar::Builder refuses `..`, which is the
/// point here) followed by the data and padding.
fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        let data: &[u8] = if entry.kind == b'0' { &entry.data } else { &[] };
        {
            let bytes = header.as_mut_bytes();
            bytes[..entry.path.len()].copy_from_slice(&entry.path);
            bytes[157..157 + entry.link.len()].copy_from_slice(&entry.link);
        }
        header.set_entry_type(tar::EntryType::new(entry.kind));
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Every file under `dir` (recursively), with whether it is a regular file.
fn host_files(dir: &Path) -> Vec<(std::path::PathBuf, bool)> {
    let mut out = Vec::new();
    for entry in fs_err::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            out.extend(host_files(&entry.path()));
        }
        out.push((entry.path(), kind.is_file()));
    }
    out
}

/// Applies `bytes` as layer 0 to a fresh tree whose content dir sits in a
/// temp dir beside a sentinel, then checks what the property promises.
fn ingest(bytes: &[u8]) -> Result<(), TestCaseError> {
    let outer = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let content = outer.path().join("content");
    fs_err::create_dir(&content).map_err(|e| TestCaseError::fail(e.to_string()))?;
    fs_err::write(outer.path().join("sentinel"), b"keep")
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut tree = Tree::new(&content);
    let result = apply_layer(&mut tree, bytes, 0, "sha256:test", &LIMITS);

    // Nothing was written outside the content dir, and only plain files in it.
    let mut outside: Vec<_> = fs_err::read_dir(outer.path())
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    outside.sort();
    prop_assert_eq!(outside, vec!["content", "sentinel"]);
    prop_assert_eq!(
        fs_err::read(outer.path().join("sentinel")).ok(),
        Some(b"keep".to_vec())
    );
    for (path, regular) in host_files(&content) {
        prop_assert!(regular, "{} is not a regular file", path.display());
    }

    if result.is_err() {
        return Ok(());
    }
    for (components, inode) in tree.walk_names(ROOT, None) {
        for name in &components {
            prop_assert!(
                !name.is_empty() && name != b"." && name != b"..",
                "bad component {:?}",
                name
            );
            prop_assert!(
                !name.contains(&b'/') && !name.contains(&0),
                "bad component {:?}",
                name
            );
        }
        let node = tree
            .inode(inode)
            .ok_or_else(|| TestCaseError::fail("dangling inode"))?;
        // An entry named `.wh.*` is a whiteout, never a file; only a parent
        // directory implied by a deeper path can carry such a name.
        let leaf = components.last().map(Vec::as_slice).unwrap_or_default();
        prop_assert!(
            !leaf.starts_with(b".wh.") || matches!(node.kind, Kind::Dir(_)),
            "whiteout kept as a file: {:?}",
            components
        );
        if let Kind::File { size } = node.kind {
            let on_disk = fs_err::metadata(tree.content_path(inode))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(tree.content_path(inode).starts_with(&content));
            prop_assert_eq!(on_disk.len(), size);
        }
    }
    Ok(())
}

proptest! {
    /// normalize yields only real names, never climbs above the root, and
    /// is idempotent.
    #[test]
    fn normalize_gives_clean_components(path in entry_path()) {
        let parts = normalize(&path);
        for part in &parts {
            prop_assert!(!part.is_empty() && part != b"." && part != b".." && !part.contains(&b'/'));
        }
        prop_assert_eq!(normalize(&parts.join(&b'/')), parts.clone());
        let mut absolute = b"/../../".to_vec();
        absolute.extend_from_slice(&path);
        prop_assert_eq!(normalize(&absolute), parts);
    }

    /// Hand-made tars with hostile paths, links and types never escape the
    /// content dir and leave a normalised tree or an error.
    #[test]
    fn hostile_tar_entries_stay_inside(entries in proptest::collection::vec(entry(), 0..12)) {
        ingest(&tar_of(&entries))?;
    }

    /// Arbitrary bytes, or a valid tar with bytes flipped, never panic the
    /// reader or the tree.
    #[test]
    fn arbitrary_layer_bytes_never_panic(
        entries in proptest::collection::vec(entry(), 0..4),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        raw in proptest::collection::vec(any::<u8>(), 0..2048),
        use_raw in any::<bool>(),
    ) {
        let mut bytes = if use_raw { raw } else { tar_of(&entries) };
        if !bytes.is_empty() {
            for (at, value) in flips {
                let at = at.index(bytes.len());
                bytes[at] ^= value;
            }
        }
        ingest(&bytes)?;
    }

    /// A digest parses exactly from `sha256:` and 64 lowercase hex digits,
    /// and prints back as that text.
    #[test]
    fn digests_parse_only_the_canonical_form(text in "(sha256:)?[0-9a-fA-F]{62,66}|\\PC{0,80}", data in proptest::collection::vec(any::<u8>(), 0..64)) {
        let canonical = text.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        match Digest::parse(&text) {
            Ok(digest) => {
                prop_assert!(canonical);
                prop_assert_eq!(digest.to_string(), text);
            }
            Err(error) => {
                prop_assert!(!canonical);
                let quoted = format!("{text:?}");
                prop_assert!(error.to_string().contains(&quoted));
            }
        }
        let digest = Digest::of(&data);
        prop_assert_eq!(Digest::parse(&digest.to_string()), Ok(digest));
    }

    /// References: arbitrary text is parsed or refused naming the text; a
    /// parsed reference prints as text that parses to the same reference.
    #[test]
    fn references_round_trip(text in "([a-z0-9.-]{1,12}(:[0-9]{1,5})?/)?[a-z0-9._/-]{1,20}(:[A-Za-z0-9._-]{1,10})?(@sha256:[0-9a-f]{64})?|\\PC{0,40}|(oci|docker-archive):\\PC{0,20}") {
        match Source::parse(&text) {
            Ok(source) => {
                let shown = source.to_string();
                prop_assert_eq!(Source::parse(&shown), Ok(source), "{} printed as {}", text, shown);
            }
            Err(error) => {
                let quoted = format!("{text:?}");
                prop_assert!(error.to_string().contains(&quoted));
            }
        }
        if let Ok(reference) = ImageRef::parse(&text) {
            prop_assert!(!reference.repository.is_empty());
            prop_assert!(reference.tag.is_some() || reference.digest.is_some());
        }
    }
}

/// Regression (found by `hostile_tar_entries_stay_inside`): an entry whose
/// path cleans to a whiteout name (`.wh.a/etc/..`) was stored as a file
/// named `.wh.a`; like containerd, banger now cleans the path first, so it
/// is the whiteout of `a`.
#[test]
fn whiteout_is_recognised_on_the_cleaned_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = Tree::new(dir.path());
    let file = |path: &[u8]| Entry {
        kind: b'0',
        path: path.to_vec(),
        link: Vec::new(),
        data: b"x".to_vec(),
    };
    apply_layer(&mut tree, &tar_of(&[file(b"a")])[..], 0, "lower", &LIMITS).expect("lower layer");
    assert!(tree.lookup(b"a").expect("lookup").is_some());
    apply_layer(
        &mut tree,
        &tar_of(&[file(b".wh.a/etc/..")])[..],
        1,
        "upper",
        &LIMITS,
    )
    .expect("upper layer");
    assert!(tree.lookup(b"a").expect("lookup").is_none());
    assert!(tree.lookup(b".wh.a").expect("lookup").is_none());
}
