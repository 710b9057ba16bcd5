//! Tree unit tests: path resolution stays inside, whiteouts, hardlinks.

use super::*;

fn file(tree: &mut Tree, path: &str, layer: usize) -> InodeId {
    let inode = tree.allocate(Kind::File { size: 0 }, Meta::default());
    tree.add(path.as_bytes(), inode, layer).unwrap();
    inode
}

fn symlink(tree: &mut Tree, path: &str, target: &str) {
    let inode = tree.allocate(Kind::Symlink(target.as_bytes().to_vec()), Meta::default());
    tree.add(path.as_bytes(), inode, 1).unwrap();
}

#[test]
fn dotdot_and_absolute_paths_stop_at_the_root() {
    assert_eq!(
        normalize(b"/../../etc/./x"),
        [b"etc".to_vec(), b"x".to_vec()]
    );
    let dir = tempfile::tempdir().unwrap();
    let mut tree = Tree::new(dir.path());
    let a = file(&mut tree, "../../../a", 1);
    assert_eq!(tree.lookup(b"/a").unwrap(), Some(a));
}

#[test]
fn parent_symlinks_resolve_inside_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = Tree::new(dir.path());
    symlink(&mut tree, "out", "/../../../../host/etc");
    symlink(&mut tree, "rel", "../../..");
    let through = file(&mut tree, "out/passwd", 1);
    assert_eq!(tree.lookup(b"/host/etc/passwd").unwrap(), Some(through));
    let up = file(&mut tree, "rel/x", 1);
    assert_eq!(tree.lookup(b"/x").unwrap(), Some(up));
    // The final component is not followed: the link itself is replaced.
    let replaced = file(&mut tree, "out", 1);
    assert_eq!(tree.lookup(b"out").unwrap(), Some(replaced));
    symlink(&mut tree, "loop", "loop");
    let inode = tree.allocate(Kind::File { size: 0 }, Meta::default());
    assert!(matches!(
        tree.add(b"loop/x", inode, 1),
        Err(TreeError::SymlinkLoop { .. })
    ));
}

#[test]
fn whiteouts_hide_only_lower_layers() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = Tree::new(dir.path());
    file(&mut tree, "d/lower", 1);
    file(&mut tree, "d/same", 2);
    tree.opaque(b"d", 2).unwrap();
    assert_eq!(tree.lookup(b"d/lower").unwrap(), None);
    assert!(tree.lookup(b"d/same").unwrap().is_some());
    tree.whiteout(b"d", b"same", 3).unwrap();
    assert_eq!(tree.lookup(b"d/same").unwrap(), None);
    assert_eq!(tree.live_inodes(), 2);
}

#[test]
fn hardlinks_share_inodes_and_refuse_missing_targets() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = Tree::new(dir.path());
    let a = file(&mut tree, "a", 1);
    tree.hardlink(b"b", b"../../a", 1).unwrap();
    assert_eq!(tree.lookup(b"b").unwrap(), Some(a));
    assert_eq!(tree.inode(a).unwrap().nlink, 2);
    assert!(matches!(
        tree.hardlink(b"c", b"missing", 1),
        Err(TreeError::MissingLinkTarget { .. })
    ));
    tree.whiteout(b"", b"a", 2).unwrap();
    assert_eq!(tree.inode(a).unwrap().nlink, 1);
}
