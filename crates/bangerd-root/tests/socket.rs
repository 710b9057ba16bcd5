//! The socket file: stale sockets are replaced, anything else at the path is
//! refused and left alone, the directory must be root's, and removal only
//! ever removes the socket this process made.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use bangerd_root::socket::{SocketError, bind};

const OWNER: u32 = 4711;

#[tokio::test]
async fn stale_sockets_are_replaced_and_other_files_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let socket = dir.path().join("run/root.sock");

    let (first, file) = bind(&socket, OWNER, OWNER).expect("bind");
    let meta = fs_err::metadata(&socket).expect("socket");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (OWNER, 0o600));
    let run_dir = fs_err::metadata(socket.parent().expect("dir")).expect("dir");
    assert_eq!(run_dir.mode() & 0o777, 0o755);
    drop(first);
    // The file of a dead helper is still there; the next one replaces it.
    let (_second, newer) = bind(&socket, OWNER, OWNER).expect("rebind over a stale socket");
    file.remove().expect("remove");
    assert!(
        socket.exists(),
        "the older helper left the newer socket alone"
    );
    newer.remove().expect("remove");
    assert!(!socket.exists());

    fs_err::write(&socket, "not a socket").expect("file");
    assert!(matches!(
        bind(&socket, OWNER, OWNER),
        Err(SocketError::NotASocket { .. })
    ));
    assert_eq!(
        fs_err::read_to_string(&socket).expect("kept"),
        "not a socket"
    );
}

#[tokio::test]
async fn a_directory_others_can_write_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let run = dir.path().join("run");
    fs_err::create_dir(&run).expect("dir");
    fs_err::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    assert!(matches!(
        bind(&run.join("root.sock"), OWNER, OWNER),
        Err(SocketError::UntrustedDirectory { .. })
    ));
    fs_err::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    rustix::fs::chown(&run, Some(rustix::process::Uid::from_raw(OWNER)), None).expect("chown");
    assert!(matches!(
        bind(&run.join("root.sock"), OWNER, OWNER),
        Err(SocketError::UntrustedDirectory { .. })
    ));
}
