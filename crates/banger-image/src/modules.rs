//! Kernel module discovery and dependency resolution.
//!
//! The initramfs carries only the handful of modules needed to reach the root
//! filesystem (virtio transport, block, net, overlay, vsock), loaded by `/init`
//! with busybox `insmod`, which neither resolves dependencies nor decompresses.
//! So the host side does both: [`ModuleIndex`] reads `modules.dep` (or, when a
//! distribution package ships without one because `depmod` normally runs at
//! install time, builds the same information from each module's `.modinfo`
//! `depends=` field), [`ModuleIndex::resolve`] returns the closure of the wanted
//! modules in load order (dependencies first), and [`read_module`] returns a
//! module's bytes decompressed (`.ko.xz`, `.ko.zst`, `.ko.gz`).
//!
//! [`ensure_modules_dep`] writes `modules.dep` into a modules tree so that the
//! modules disk handed to guests is usable too (by `modprobe` when the host's
//! `depmod` was available to also write the binary indexes).

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

use crate::elf;

/// Module file suffixes this crate understands, most common first.
const SUFFIXES: [&str; 4] = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"];

/// Why module information could not be gathered.
#[derive(Debug, Error)]
pub enum ModulesError {
    /// Reading or writing a file failed.
    #[error("{path}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A module file could not be decompressed.
    #[error("decompressing module {path}: {detail}")]
    Decompress {
        /// Module file.
        path: PathBuf,
        /// Decoder message.
        detail: String,
    },
    /// A module file is not a valid ELF object.
    #[error("module {path}")]
    Elf {
        /// Module file.
        path: PathBuf,
        /// Parse error.
        source: elf::ElfError,
    },
    /// A `modules.dep` line could not be parsed.
    #[error("{path}:{line}: malformed modules.dep line")]
    BadDepLine {
        /// The modules.dep file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A wanted module (or a dependency of one) is neither a module file nor built in.
    #[error("kernel module {name} not found in {modules_dir} (needed by {needed_by})")]
    NotFound {
        /// Normalised module name.
        name: String,
        /// The modules tree searched.
        modules_dir: PathBuf,
        /// Which module or request pulled it in.
        needed_by: String,
    },
    /// The dependency graph has a cycle (a broken modules.dep).
    #[error("dependency cycle through kernel module {0}")]
    Cycle(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ModulesError + '_ {
    move |source| ModulesError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Normalises a module name the way the kernel does (`-` and `_` are equivalent).
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Module name from a relative path like `kernel/drivers/virtio/virtio_pci.ko.xz`.
pub fn name_from_path(rel_path: &str) -> Option<String> {
    let file = rel_path.rsplit('/').next()?;
    SUFFIXES
        .iter()
        .find_map(|s| file.strip_suffix(s))
        .map(normalize_name)
}

/// One loadable module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleEntry {
    /// Normalised name (`virtio_pci`).
    pub name: String,
    /// Path relative to the modules directory (`kernel/drivers/virtio/virtio_pci.ko`).
    pub rel_path: String,
    /// Normalised names of the modules it depends on.
    pub depends: Vec<String>,
}

/// All modules of one kernel plus its built-in list.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    modules_dir: PathBuf,
    modules: BTreeMap<String, ModuleEntry>,
    builtin: HashSet<String>,
}

impl ModuleIndex {
    /// Loads the index of `modules_dir` (`.../lib/modules/<version>`): from
    /// `modules.dep` when present, else by scanning the tree's `.modinfo` sections.
    pub fn load(modules_dir: &Path) -> Result<Self, ModulesError> {
        let dep = modules_dir.join("modules.dep");
        let mut index = if dep.exists() {
            let text = fs_err::read_to_string(&dep).map_err(io_err(&dep))?;
            Self::parse_modules_dep(&dep, &text)?
        } else {
            Self::scan(modules_dir)?
        };
        index.modules_dir = modules_dir.to_owned();
        let builtin = modules_dir.join("modules.builtin");
        if builtin.exists() {
            let text = fs_err::read_to_string(&builtin).map_err(io_err(&builtin))?;
            index.builtin = text.lines().filter_map(name_from_path).collect();
        }
        Ok(index)
    }

    /// Parses the text of a `modules.dep` file (`path` is only used in errors).
    ///
    /// Each line is `rel/path.ko: dep1.ko dep2.ko ...`.
    pub fn parse_modules_dep(path: &Path, text: &str) -> Result<Self, ModulesError> {
        let mut modules = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = || ModulesError::BadDepLine {
                path: path.to_owned(),
                line: i + 1,
            };
            let (module, deps) = line.split_once(':').ok_or_else(bad)?;
            let name = name_from_path(module.trim()).ok_or_else(bad)?;
            let depends = deps
                .split_whitespace()
                .map(|d| name_from_path(d).ok_or_else(bad))
                .collect::<Result<Vec<_>, _>>()?;
            modules.insert(
                name.clone(),
                ModuleEntry {
                    name,
                    rel_path: module.trim().to_owned(),
                    depends,
                },
            );
        }
        Ok(Self {
            modules_dir: path.parent().map(Path::to_owned).unwrap_or_default(),
            modules,
            builtin: HashSet::new(),
        })
    }

    /// Builds the index by reading every module file's `.modinfo` `depends=`.
    pub fn scan(modules_dir: &Path) -> Result<Self, ModulesError> {
        let mut modules = BTreeMap::new();
        let mut stack = vec![modules_dir.to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in fs_err::read_dir(&dir).map_err(io_err(&dir))? {
                let entry = entry.map_err(io_err(&dir))?;
                let path = entry.path();
                let ft = entry.file_type().map_err(io_err(&path))?;
                if ft.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Ok(rel) = path.strip_prefix(modules_dir) else {
                    continue;
                };
                let rel = rel.to_string_lossy().into_owned();
                let Some(name) = name_from_path(&rel) else {
                    continue;
                };
                let data = read_module(&path)?;
                let depends = modinfo_depends(&data).map_err(|source| ModulesError::Elf {
                    path: path.clone(),
                    source,
                })?;
                modules.insert(
                    name.clone(),
                    ModuleEntry {
                        name,
                        rel_path: rel,
                        depends,
                    },
                );
            }
        }
        Ok(Self {
            modules_dir: modules_dir.to_owned(),
            modules,
            builtin: HashSet::new(),
        })
    }

    /// Looks a module up by (any spelling of) its name.
    pub fn get(&self, name: &str) -> Option<&ModuleEntry> {
        self.modules.get(&normalize_name(name))
    }

    /// True when the kernel has `name` built in (listed in `modules.builtin`).
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalize_name(name))
    }

    /// Number of loadable modules known.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// True when no loadable modules are known.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Returns the wanted modules and all their dependencies, each once, in an
    /// order where every module comes after the modules it depends on. Built-in
    /// modules are skipped (nothing to load).
    pub fn resolve(&self, wanted: &[&str]) -> Result<Vec<&ModuleEntry>, ModulesError> {
        let mut order = Vec::new();
        let mut done = HashSet::new();
        let mut in_progress = HashSet::new();
        for w in wanted {
            self.visit(
                &normalize_name(w),
                "request",
                &mut order,
                &mut done,
                &mut in_progress,
            )?;
        }
        Ok(order)
    }

    fn visit<'a>(
        &'a self,
        name: &str,
        needed_by: &str,
        order: &mut Vec<&'a ModuleEntry>,
        done: &mut HashSet<String>,
        in_progress: &mut HashSet<String>,
    ) -> Result<(), ModulesError> {
        if done.contains(name) {
            return Ok(());
        }
        let Some(entry) = self.modules.get(name) else {
            if self.builtin.contains(name) {
                done.insert(name.to_owned());
                return Ok(());
            }
            return Err(ModulesError::NotFound {
                name: name.to_owned(),
                modules_dir: self.modules_dir.clone(),
                needed_by: needed_by.to_owned(),
            });
        };
        if !in_progress.insert(name.to_owned()) {
            return Err(ModulesError::Cycle(name.to_owned()));
        }
        for dep in &entry.depends {
            self.visit(dep, name, order, done, in_progress)?;
        }
        in_progress.remove(name);
        done.insert(name.to_owned());
        order.push(entry);
        Ok(())
    }

    /// Renders the index in `modules.dep` format, with each module's full
    /// transitive dependency list (as `depmod` writes it).
    pub fn to_modules_dep(&self) -> Result<String, ModulesError> {
        let mut out = String::new();
        for entry in self.modules.values() {
            let closure = self.resolve(&[entry.name.as_str()])?;
            out.push_str(&entry.rel_path);
            out.push(':');
            // depmod lists dependencies so that the last one is loaded first.
            for dep in closure.iter().rev().skip(1) {
                out.push(' ');
                out.push_str(&dep.rel_path);
            }
            out.push('\n');
        }
        Ok(out)
    }
}

/// Extracts the `depends=` list from a module's `.modinfo` section.
pub fn modinfo_depends(module: &[u8]) -> Result<Vec<String>, elf::ElfError> {
    let Some(modinfo) = elf::section(module, ".modinfo")? else {
        return Ok(Vec::new());
    };
    Ok(modinfo
        .split(|&b| b == 0)
        .filter_map(|kv| kv.strip_prefix(b"depends="))
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|d| !d.is_empty())
        .map(|d| normalize_name(&d))
        .collect())
}

/// Reads a module file, decompressing `.ko.xz`, `.ko.zst` and `.ko.gz`, because
/// busybox `insmod` (and the kernel's `init_module`) want a plain ELF object.
pub fn read_module(path: &Path) -> Result<Vec<u8>, ModulesError> {
    let raw = fs_err::read(path).map_err(io_err(path))?;
    let name = path.to_string_lossy();
    let err = |detail: String| ModulesError::Decompress {
        path: path.to_owned(),
        detail,
    };
    let mut out = Vec::new();
    if name.ends_with(".ko.xz") {
        lzma_rs::xz_decompress(&mut std::io::BufReader::new(&raw[..]), &mut out)
            .map_err(|e| err(e.to_string()))?;
    } else if name.ends_with(".ko.zst") {
        ruzstd::decoding::StreamingDecoder::new(&raw[..])
            .map_err(|e| err(e.to_string()))?
            .read_to_end(&mut out)
            .map_err(|e| err(e.to_string()))?;
    } else if name.ends_with(".ko.gz") {
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| err(e.to_string()))?;
    } else {
        return Ok(raw);
    }
    Ok(out)
}

/// Makes sure `modules_dir` has a `modules.dep`.
///
/// Distribution kernel packages ship without one (`depmod` runs at install
/// time). When the host has `depmod` it is run with `-b` so the binary indexes
/// that guest `modprobe` needs are produced as well; otherwise a text
/// `modules.dep` is generated from the modules' `.modinfo` sections, which is
/// enough for this crate (guest `modprobe` would then need `depmod -a` first).
/// Returns true when the binary indexes exist afterwards.
pub fn ensure_modules_dep(modules_dir: &Path, version: &str) -> Result<bool, ModulesError> {
    let dep = modules_dir.join("modules.dep");
    let bin = modules_dir.join("modules.dep.bin");
    if dep.exists() {
        return Ok(bin.exists());
    }
    // modules_dir is <base>/lib/modules/<version> or <base>/usr/lib/modules/<version>;
    // `depmod -b <base>` wants <base>. (A depmod that only knows /lib/modules
    // fails on the usr layout, and the text fallback below takes over.)
    let in_modules = modules_dir.parent().and_then(Path::file_name) == Some("modules".as_ref());
    let under_usr =
        modules_dir.ancestors().nth(3).and_then(Path::file_name) == Some("usr".as_ref());
    let base = modules_dir
        .ancestors()
        .nth(if under_usr { 4 } else { 3 })
        .filter(|_| in_modules);
    if let (Some(base), Some(depmod)) = (base, find_depmod()) {
        let status = Command::new(&depmod)
            .arg("-b")
            .arg(base)
            .arg(version)
            .status()
            .map_err(io_err(&depmod))?;
        if status.success() && dep.exists() {
            return Ok(bin.exists());
        }
    }
    write_text_modules_dep(modules_dir)?;
    Ok(false)
}

/// Generates `modules.dep` from the `.modinfo` sections, without `depmod`.
fn write_text_modules_dep(modules_dir: &Path) -> Result<(), ModulesError> {
    let dep = modules_dir.join("modules.dep");
    let text = ModuleIndex::scan(modules_dir)?.to_modules_dep()?;
    let tmp = modules_dir.join("modules.dep.tmp");
    fs_err::write(&tmp, text).map_err(io_err(&tmp))?;
    fs_err::rename(&tmp, &dep).map_err(io_err(&dep))?;
    Ok(())
}

fn find_depmod() -> Option<PathBuf> {
    ["/usr/sbin/depmod", "/sbin/depmod", "/usr/bin/depmod"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko: kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko kernel/net/vmw_vsock/vsock.ko
kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko: kernel/net/vmw_vsock/vsock.ko
kernel/net/vmw_vsock/vsock.ko:
kernel/drivers/char/hw_random/virtio-rng.ko.xz:
";

    fn index() -> ModuleIndex {
        let mut idx = ModuleIndex::parse_modules_dep(Path::new("/m/modules.dep"), DEP).unwrap();
        idx.builtin.insert("ext4".into());
        idx
    }

    fn pos(order: &[&ModuleEntry], name: &str) -> usize {
        order.iter().position(|e| e.name == name).unwrap()
    }

    #[test]
    fn resolves_in_dependency_order_without_duplicates() {
        let idx = index();
        let order = idx
            .resolve(&[
                "virtio_net",
                "vmw_vsock_virtio_transport",
                "virtio-pci",
                "failover",
                "ext4",
            ])
            .unwrap();
        let names: Vec<_> = order.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names.len(), 9, "{names:?}");
        assert!(pos(&order, "failover") < pos(&order, "net_failover"));
        assert!(pos(&order, "net_failover") < pos(&order, "virtio_net"));
        assert!(pos(&order, "vsock") < pos(&order, "vmw_vsock_virtio_transport_common"));
        assert!(
            pos(&order, "vmw_vsock_virtio_transport_common")
                < pos(&order, "vmw_vsock_virtio_transport")
        );
        assert!(pos(&order, "virtio_pci_modern_dev") < pos(&order, "virtio_pci"));
        assert!(!names.contains(&"ext4"), "built-in modules need no loading");
    }

    #[test]
    fn dash_names_and_compressed_suffixes() {
        let idx = index();
        let e = idx.get("virtio-rng").unwrap();
        assert_eq!(e.name, "virtio_rng");
        assert_eq!(e.rel_path, "kernel/drivers/char/hw_random/virtio-rng.ko.xz");
        assert_eq!(
            name_from_path("a/b/overlay.ko.zst").as_deref(),
            Some("overlay")
        );
        assert_eq!(name_from_path("a/b/readme.txt"), None);
    }

    #[test]
    fn missing_module_names_requester() {
        let err = index().resolve(&["virtio_blk"]).unwrap_err();
        assert!(
            err.to_string().contains("virtio_blk") && err.to_string().contains("request"),
            "{err}"
        );
        let broken = ModuleIndex::parse_modules_dep(Path::new("x"), "a.ko: b.ko\n").unwrap();
        let err = broken.resolve(&["a"]).unwrap_err();
        assert!(err.to_string().contains("needed by a"), "{err}");
    }

    #[test]
    fn cycles_are_errors() {
        let idx =
            ModuleIndex::parse_modules_dep(Path::new("x"), "a.ko: b.ko\nb.ko: a.ko\n").unwrap();
        assert!(matches!(idx.resolve(&["a"]), Err(ModulesError::Cycle(_))));
    }

    #[test]
    fn malformed_line_reports_position() {
        let err = ModuleIndex::parse_modules_dep(Path::new("/x/modules.dep"), "a.ko:\nnonsense\n")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/x/modules.dep:2: malformed modules.dep line"
        );
    }

    #[test]
    fn scan_reads_modinfo_and_compressed_modules() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lib/modules/9.9.9");
        fs_err::create_dir_all(root.join("kernel/fs")).unwrap();
        let a = elf::tests::tiny_elf(".modinfo", b"license=GPL\0depends=b-mod,c\0", false);
        fs_err::write(root.join("kernel/fs/a.ko"), &a).unwrap();
        let b = elf::tests::tiny_elf(".modinfo", b"depends=\0", false);
        let mut bxz = Vec::new();
        lzma_rs::xz_compress(&mut &b[..], &mut bxz).unwrap();
        fs_err::write(root.join("kernel/fs/b-mod.ko.xz"), &bxz).unwrap();
        let c = elf::tests::tiny_elf(".modinfo", b"depends=\0", false);
        let mut cgz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut cgz, &c).unwrap();
        fs_err::write(root.join("kernel/fs/c.ko.gz"), cgz.finish().unwrap()).unwrap();

        assert_eq!(read_module(&root.join("kernel/fs/b-mod.ko.xz")).unwrap(), b);
        let idx = ModuleIndex::scan(&root).unwrap();
        assert_eq!(idx.get("a").unwrap().depends, ["b_mod", "c"]);
        write_text_modules_dep(&root).unwrap();
        let reloaded = ModuleIndex::load(&root).unwrap();
        let order = reloaded.resolve(&["a"]).unwrap();
        assert_eq!(order.last().unwrap().name, "a");
        assert_eq!(order.len(), 3);
    }

    #[test]
    fn modules_dep_rendering_roundtrips() {
        let idx = index();
        let text = idx.to_modules_dep().unwrap();
        let again = ModuleIndex::parse_modules_dep(Path::new("x"), &text).unwrap();
        let order = again.resolve(&["virtio_net"]).unwrap();
        let names: Vec<_> = order.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["failover", "net_failover", "virtio_net"]);
    }
}
