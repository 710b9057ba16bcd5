//! The image tree layers are applied to: directories, names and inodes in
//! memory, with regular files' content in numbered files of a content
//! directory (`<content dir>/<inode>`).
//!
//! Every path from a layer is resolved here, component by component,
//! against this tree and never against the host: `..` stops at the image's
//! root, absolute paths start at it, and a symlink met in a parent position
//! is followed inside the tree (as a container runtime would follow it inside
//! its root), so no layer can name anything outside the image. The final
//! component is never followed: an entry replaces what has its name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// An inode number in the tree (not the ext4 one).
pub type InodeId = usize;

/// The root directory's inode.
pub const ROOT: InodeId = 0;

/// Most symlinks followed while resolving one path (Linux's limit).
const MAX_SYMLINK_HOPS: usize = 40;

/// Owner, mode and times of an inode, as the tar header says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// Modification time, Unix seconds.
    pub mtime: u64,
    /// Extended attributes (`security.capability`, ...).
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// What an inode is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory and its names.
    Dir(BTreeMap<Vec<u8>, Link>),
    /// A regular file of `size` bytes; content in the content directory.
    File {
        /// Bytes.
        size: u64,
    },
    /// A symbolic link and its target, as written.
    Symlink(Vec<u8>),
    /// A character device.
    Char {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    Block {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// A name in a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The inode it names.
    pub inode: InodeId,
    /// The layer that wrote it (whiteouts and opaque markers hide only lower ones).
    pub layer: usize,
}

/// One inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// What it is.
    pub kind: Kind,
    /// Owner, mode, times.
    pub meta: Meta,
    /// Names pointing at it.
    pub nlink: u32,
}

/// Why an entry could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A parent component is a file, device or FIFO.
    #[error("{path:?}: a parent component is not a directory")]
    NotADirectory {
        /// The entry's path.
        path: String,
    },
    /// Too many symlinks while resolving.
    #[error("{path:?}: too many levels of symbolic links")]
    SymlinkLoop {
        /// The entry's path.
        path: String,
    },
    /// A hardlink's target does not exist (in this layer or below).
    #[error("{path:?}: hardlink target {target:?} does not exist in the image")]
    MissingLinkTarget {
        /// The hardlink.
        path: String,
        /// Its target.
        target: String,
    },
    /// A hardlink to a directory.
    #[error("{path:?}: hardlink target {target:?} is a directory")]
    LinkToDirectory {
        /// The hardlink.
        path: String,
        /// Its target.
        target: String,
    },
    /// Removing a content file failed.
    #[error("cannot remove {path}")]
    Remove {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The tree.
#[derive(Debug)]
pub struct Tree {
    inodes: Vec<Option<Inode>>,
    content_dir: PathBuf,
    live_bytes: u64,
    live_inodes: u64,
}

/// The components of `path` with `.`, empty ones and `..` resolved
/// lexically, stopping at the root.
pub fn normalize(path: &[u8]) -> Vec<Vec<u8>> {
    let mut components: Vec<Vec<u8>> = Vec::new();
    for component in path.split(|byte| *byte == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                components.pop();
            }
            name => components.push(name.to_vec()),
        }
    }
    components
}

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

impl Tree {
    /// An empty tree (a root directory 0755 owned by 0:0) whose file
    /// contents live in `content_dir` (which must exist).
    pub fn new(content_dir: impl Into<PathBuf>) -> Self {
        let root = Inode {
            kind: Kind::Dir(BTreeMap::new()),
            meta: Meta {
                mode: 0o755,
                ..Meta::default()
            },
            nlink: 1,
        };
        Self {
            inodes: vec![Some(root)],
            content_dir: content_dir.into(),
            live_bytes: 0,
            live_inodes: 1,
        }
    }

    /// Where regular file `inode`'s content is.
    pub fn content_path(&self, inode: InodeId) -> PathBuf {
        self.content_dir.join(inode.to_string())
    }

    /// The content directory.
    pub fn content_dir(&self) -> &Path {
        &self.content_dir
    }

    /// Bytes of regular files still in the tree.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Inodes still in the tree.
    pub fn live_inodes(&self) -> u64 {
        self.live_inodes
    }

    /// Inode `id`, if it exists.
    pub fn inode(&self, id: InodeId) -> Option<&Inode> {
        self.inodes.get(id).and_then(Option::as_ref)
    }

    fn inode_mut(&mut self, id: InodeId) -> Option<&mut Inode> {
        self.inodes.get_mut(id).and_then(Option::as_mut)
    }

    fn children(&self, dir: InodeId) -> Option<&BTreeMap<Vec<u8>, Link>> {
        match &self.inode(dir)?.kind {
            Kind::Dir(children) => Some(children),
            _ => None,
        }
    }

    fn children_mut(&mut self, dir: InodeId) -> Option<&mut BTreeMap<Vec<u8>, Link>> {
        match &mut self.inode_mut(dir)?.kind {
            Kind::Dir(children) => Some(children),
            _ => None,
        }
    }

    /// Allocates an unlinked inode (the caller links it, or frees it with
    /// [`Tree::discard`]). A regular file's content goes to
    /// [`Tree::content_path`] of the returned id.
    pub fn allocate(&mut self, kind: Kind, meta: Meta) -> InodeId {
        if let Kind::File { size } = kind {
            self.live_bytes += size;
        }
        self.live_inodes += 1;
        self.inodes.push(Some(Inode {
            kind,
            meta,
            nlink: 0,
        }));
        self.inodes.len() - 1
    }

    /// Frees an inode that was allocated but never linked.
    pub fn discard(&mut self, inode: InodeId) -> Result<(), TreeError> {
        if self.inode(inode).is_some_and(|node| node.nlink == 0) {
            self.free(inode)?;
        }
        Ok(())
    }

    /// Frees `inode` and, for a directory, drops its children's names,
    /// iteratively (a hostile layer may nest directories deeply).
    fn free(&mut self, inode: InodeId) -> Result<(), TreeError> {
        let mut pending = vec![inode];
        while let Some(inode) = pending.pop() {
            let Some(node) = self.inodes.get_mut(inode).and_then(Option::take) else {
                continue;
            };
            self.live_inodes -= 1;
            match node.kind {
                Kind::File { size } => {
                    self.live_bytes -= size;
                    let path = self.content_path(inode);
                    match fs_err::remove_file(&path) {
                        Ok(()) => {}
                        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => return Err(TreeError::Remove { path, source }),
                    }
                }
                Kind::Dir(children) => {
                    for link in children.into_values() {
                        if let Some(child) = self.inode_mut(link.inode) {
                            child.nlink = child.nlink.saturating_sub(1);
                            if child.nlink == 0 {
                                pending.push(link.inode);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Drops one name of `inode`; frees it (recursively) with its last name.
    fn unlink_inode(&mut self, inode: InodeId) -> Result<(), TreeError> {
        let Some(node) = self.inode_mut(inode) else {
            return Ok(());
        };
        node.nlink = node.nlink.saturating_sub(1);
        if node.nlink == 0 {
            self.free(inode)?;
        }
        Ok(())
    }

    /// Walks `components` from `start` (a stack of directories, root
    /// first), following symlinks inside the tree and creating missing
    /// directories (0755, 0:0) when `create` is set. Returns the stack
    /// ending in the directory reached, or `None` when a component is
    /// missing and `create` is not set.
    fn walk(
        &mut self,
        mut stack: Vec<InodeId>,
        components: &[Vec<u8>],
        create: Option<usize>,
        hops: &mut usize,
        path: &[u8],
    ) -> Result<Option<Vec<InodeId>>, TreeError> {
        for component in components {
            let current = *stack.last().unwrap_or(&ROOT);
            if component == b".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            if component == b"." || component.is_empty() {
                continue;
            }
            let child = self
                .children(current)
                .and_then(|children| children.get(component))
                .copied();
            let Some(child) = child else {
                let Some(layer) = create else {
                    return Ok(None);
                };
                let dir = self.allocate(
                    Kind::Dir(BTreeMap::new()),
                    Meta {
                        mode: 0o755,
                        ..Meta::default()
                    },
                );
                self.insert(current, component.clone(), dir, layer)?;
                stack.push(dir);
                continue;
            };
            match self.inode(child.inode).map(|node| &node.kind) {
                Some(Kind::Dir(_)) => stack.push(child.inode),
                Some(Kind::Symlink(target)) => {
                    *hops += 1;
                    if *hops > MAX_SYMLINK_HOPS {
                        return Err(TreeError::SymlinkLoop { path: show(path) });
                    }
                    let target = target.clone();
                    let base = if target.starts_with(b"/") {
                        vec![ROOT]
                    } else {
                        stack.clone()
                    };
                    let parts: Vec<Vec<u8>> = target
                        .split(|byte| *byte == b'/')
                        .map(<[u8]>::to_vec)
                        .collect();
                    match self.walk(base, &parts, create, hops, path)? {
                        Some(resolved) => stack = resolved,
                        None => return Ok(None),
                    }
                }
                _ => return Err(TreeError::NotADirectory { path: show(path) }),
            }
        }
        Ok(Some(stack))
    }

    /// The directory that holds `path`'s last component, and that name
    /// (`None` for the root itself).
    fn parent_of(
        &mut self,
        path: &[u8],
        create: Option<usize>,
    ) -> Result<Option<(InodeId, Vec<u8>)>, TreeError> {
        let mut components = normalize(path);
        let Some(name) = components.pop() else {
            return Ok(None);
        };
        let mut hops = 0;
        let stack = self.walk(vec![ROOT], &components, create, &mut hops, path)?;
        Ok(stack
            .and_then(|stack| stack.last().copied())
            .map(|dir| (dir, name)))
    }

    /// Puts `inode` under `name` in `dir`, replacing what had that name.
    fn insert(
        &mut self,
        dir: InodeId,
        name: Vec<u8>,
        inode: InodeId,
        layer: usize,
    ) -> Result<(), TreeError> {
        if let Some(node) = self.inode_mut(inode) {
            node.nlink += 1;
        }
        let old = self
            .children_mut(dir)
            .and_then(|children| children.insert(name, Link { inode, layer }));
        if let Some(old) = old
            && old.inode != inode
        {
            self.unlink_inode(old.inode)?;
        } else if old.is_some() {
            // The same inode under the same name: one name, one link.
            self.unlink_inode(inode)?;
        }
        Ok(())
    }

    /// Links the allocated `inode` at `path` (layer `layer`). A directory
    /// over an existing directory keeps its children and takes the new
    /// metadata (tar semantics); anything else replaces what was there.
    pub fn add(&mut self, path: &[u8], inode: InodeId, layer: usize) -> Result<(), TreeError> {
        let is_dir = matches!(self.inode(inode).map(|n| &n.kind), Some(Kind::Dir(_)));
        let Some((dir, name)) = self.parent_of(path, Some(layer))? else {
            // The root itself: only a directory entry means something.
            if is_dir {
                let meta = self.inode(inode).map(|node| node.meta.clone());
                if let (Some(meta), Some(root)) = (meta, self.inode_mut(ROOT)) {
                    root.meta = meta;
                }
            }
            return self.discard(inode);
        };
        if is_dir {
            let existing = self
                .children(dir)
                .and_then(|children| children.get(&name))
                .copied();
            if let Some(existing) = existing
                && matches!(
                    self.inode(existing.inode).map(|n| &n.kind),
                    Some(Kind::Dir(_))
                )
            {
                let meta = self.inode(inode).map(|node| node.meta.clone());
                if let (Some(meta), Some(node)) = (meta, self.inode_mut(existing.inode)) {
                    node.meta = meta;
                }
                return self.discard(inode);
            }
        }
        self.insert(dir, name, inode, layer)
    }

    /// Adds a second name `path` for the inode at `target` (a tar hardlink).
    pub fn hardlink(&mut self, path: &[u8], target: &[u8], layer: usize) -> Result<(), TreeError> {
        let missing = || TreeError::MissingLinkTarget {
            path: show(path),
            target: show(target),
        };
        let (target_dir, target_name) = self.parent_of(target, None)?.ok_or_else(missing)?;
        let link = self
            .children(target_dir)
            .and_then(|children| children.get(&target_name))
            .copied()
            .ok_or_else(missing)?;
        if matches!(self.inode(link.inode).map(|n| &n.kind), Some(Kind::Dir(_))) {
            return Err(TreeError::LinkToDirectory {
                path: show(path),
                target: show(target),
            });
        }
        match self.parent_of(path, Some(layer))? {
            Some((dir, name)) => self.insert(dir, name, link.inode, layer),
            None => Ok(()),
        }
    }

    /// Removes `name` in the directory at `dir_path` if a lower layer wrote
    /// it (an OCI whiteout `.wh.<name>`).
    pub fn whiteout(
        &mut self,
        dir_path: &[u8],
        name: &[u8],
        layer: usize,
    ) -> Result<(), TreeError> {
        if name.is_empty() || name == b"." || name == b".." {
            return Ok(());
        }
        let Some(dir) = self.lookup_dir(dir_path)? else {
            return Ok(());
        };
        let link = self
            .children(dir)
            .and_then(|children| children.get(name))
            .copied();
        if let Some(link) = link.filter(|link| link.layer < layer) {
            if let Some(children) = self.children_mut(dir) {
                children.remove(name);
            }
            self.unlink_inode(link.inode)?;
        }
        Ok(())
    }

    /// Removes every name in the directory at `dir_path` that a lower layer
    /// wrote (an opaque marker `.wh..wh..opq`).
    pub fn opaque(&mut self, dir_path: &[u8], layer: usize) -> Result<(), TreeError> {
        let Some(dir) = self.lookup_dir(dir_path)? else {
            return Ok(());
        };
        let lower: Vec<(Vec<u8>, InodeId)> = self
            .children(dir)
            .into_iter()
            .flatten()
            .filter(|(_, link)| link.layer < layer)
            .map(|(name, link)| (name.clone(), link.inode))
            .collect();
        for (name, inode) in lower {
            if let Some(children) = self.children_mut(dir) {
                children.remove(&name);
            }
            self.unlink_inode(inode)?;
        }
        Ok(())
    }

    /// The directory at `path` (following symlinks inside the tree), if any.
    pub fn lookup_dir(&mut self, path: &[u8]) -> Result<Option<InodeId>, TreeError> {
        let components = normalize(path);
        let mut hops = 0;
        match self.walk(vec![ROOT], &components, None, &mut hops, path) {
            Ok(stack) => Ok(stack.and_then(|stack| stack.last().copied())),
            Err(TreeError::NotADirectory { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The inode named by `path` without following its last component.
    pub fn lookup(&mut self, path: &[u8]) -> Result<Option<InodeId>, TreeError> {
        let Some((dir, name)) = self.parent_of(path, None)? else {
            return Ok(Some(ROOT));
        };
        Ok(self
            .children(dir)
            .and_then(|children| children.get(&name))
            .map(|link| link.inode))
    }

    /// Every name under `dir`, depth first (parents before children), as
    /// `(components, inode)`; `skip` names a directory whose children are
    /// left out (it is listed itself).
    pub fn walk_names(&self, dir: InodeId, skip: Option<InodeId>) -> Vec<(Vec<Vec<u8>>, InodeId)> {
        let mut out = Vec::new();
        let mut stack = vec![(Vec::new(), dir)];
        while let Some((prefix, current)) = stack.pop() {
            if Some(current) == skip && current != dir {
                continue;
            }
            let Some(children) = self.children(current) else {
                continue;
            };
            for (name, link) in children.iter().rev() {
                let mut path: Vec<Vec<u8>> = prefix.clone();
                path.push(name.clone());
                out.push((path.clone(), link.inode));
                if matches!(self.inode(link.inode).map(|n| &n.kind), Some(Kind::Dir(_))) {
                    stack.push((path, link.inode));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
