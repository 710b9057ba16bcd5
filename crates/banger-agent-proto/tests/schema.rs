//! Schema guard: the canonical examples are snapshotted, and their
//! fingerprint must be the one recorded for the current protocol version.
//! Changing a message type therefore fails here until `PROTOCOL_VERSION` is
//! bumped and a new `SCHEMA_HISTORY` entry is added (docs/agent.md).

use banger_agent_proto::{PROTOCOL_VERSION, SCHEMA_HISTORY, schema};

#[test]
fn schema_snapshot() {
    insta::assert_snapshot!("schema", schema::examples());
}

#[test]
fn schema_change_requires_a_version_bump() {
    let fingerprint = schema::fingerprint(&schema::examples());
    let versions: Vec<u32> = SCHEMA_HISTORY.iter().map(|(version, _)| *version).collect();
    assert!(
        versions.windows(2).all(|pair| pair[0] < pair[1]),
        "SCHEMA_HISTORY versions must strictly increase: {versions:?}"
    );
    let &(version, recorded) = SCHEMA_HISTORY.last().expect("SCHEMA_HISTORY is not empty");
    assert_eq!(
        version, PROTOCOL_VERSION,
        "the last SCHEMA_HISTORY entry must be for PROTOCOL_VERSION"
    );
    assert_eq!(
        recorded,
        fingerprint,
        "the protocol schema changed: bump PROTOCOL_VERSION to {} and append \
         ({}, {fingerprint:#018x}) to SCHEMA_HISTORY (see docs/agent.md). \
         Only if this is version {version}'s first, unreleased schema may you \
         replace the last entry instead.",
        PROTOCOL_VERSION + 1,
        PROTOCOL_VERSION + 1,
    );
    // Older fingerprints must differ: a reused fingerprint would mean two
    // versions claim the same schema.
    let earlier = &SCHEMA_HISTORY[..SCHEMA_HISTORY.len() - 1];
    assert!(earlier.iter().all(|(_, hash)| *hash != fingerprint));
}
