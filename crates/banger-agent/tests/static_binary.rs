//! The agent must be a static binary: it is copied into images of any
//! distribution (glibc or musl), where a dynamic loader may not match.

use std::path::PathBuf;
use std::process::Command;

fn agent_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BANGER_AGENT_BIN") {
        return PathBuf::from(path);
    }
    // Build it the way releases do, in its own target dir so this does not
    // wait on the lock of the cargo invocation running the tests.
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let output = Command::new(root.join("scripts/build-agent.sh"))
        .arg("debug")
        .env("CARGO_TARGET_DIR", root.join("target/agent-static"))
        .output()
        .expect("scripts/build-agent.sh runs");
    assert!(
        output.status.success(),
        "static build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

#[test]
fn agent_is_statically_linked_and_runs() {
    let binary = agent_binary();
    let bytes = fs_err::read(&binary).expect("agent binary exists");
    assert_eq!(&bytes[..4], b"\x7fELF");
    // Walk the program headers: a PT_INTERP entry means a dynamic loader is needed.
    let header_offset = usize::try_from(u64::from_le_bytes(
        bytes[0x20..0x28].try_into().expect("8 bytes"),
    ))
    .expect("offset");
    let entry_size = usize::from(u16::from_le_bytes([bytes[0x36], bytes[0x37]]));
    let entries = usize::from(u16::from_le_bytes([bytes[0x38], bytes[0x39]]));
    for index in 0..entries {
        let start = header_offset + index * entry_size;
        let kind = u32::from_le_bytes(bytes[start..start + 4].try_into().expect("4 bytes"));
        assert_ne!(
            kind,
            3,
            "{} has a PT_INTERP header: it is dynamically linked",
            binary.display()
        );
    }
    let output = Command::new(&binary)
        .arg("--version")
        .output()
        .expect("agent runs");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains(&format!(
        "protocol {}",
        banger_agent_proto::PROTOCOL_VERSION
    )));
}
