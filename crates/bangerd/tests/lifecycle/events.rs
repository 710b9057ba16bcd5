//! The event bus sees every VM record change the store makes: created,
//! each state change in order, deleted; and a VM create as an operation:
//! its progress, throttled, then how it ended.

use std::time::Instant;

use banger_api::events::{EventKind, OperationKind};
use banger_api::vms::VmState;
use banger_api::{ApiError, ErrorCode};
use bangerd::progress::{ANNOUNCE_INTERVAL, ProgressSink};
use bangerd::vms;

use crate::ready;
use crate::world::{Fakes, World, create, vm_name};

pub fn events_follow_a_vm_from_create_to_delete() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let mut events = state.events().subscribe();
    let name = vm_name("lc-events");
    world.block_on(async {
        create(&state, "lc-events", false, false)
            .await
            .expect("create");
        vms::stop(&state, &name).await.expect("stop");
        vms::delete(&state, &name, false).await.expect("delete");
    });
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        match &event.event {
            EventKind::VmCreated { vm } if *vm == name => seen.push("created".to_owned()),
            EventKind::VmState { vm, from, to, .. } if *vm == name => {
                seen.push(format!("{}->{}", from.as_str(), to.as_str()))
            }
            EventKind::VmDeleted { vm } if *vm == name => seen.push("deleted".to_owned()),
            _ => {}
        }
    }
    assert_eq!(
        seen.first().map(String::as_str),
        Some("created"),
        "{seen:?}"
    );
    assert_eq!(seen.last().map(String::as_str), Some("deleted"), "{seen:?}");
    for (from, to) in [
        (VmState::Created, VmState::Starting),
        (VmState::Starting, VmState::Running),
        (VmState::Stopping, VmState::Stopped),
    ] {
        let step = format!("{}->{}", from.as_str(), to.as_str());
        assert!(seen.contains(&step), "{step} missing from {seen:?}");
    }
}

/// One announced operation's events, as a watcher sees them.
#[derive(Debug, Default)]
struct Seen {
    /// `(stage, name)` of each progress event.
    progress: Vec<(String, Option<String>)>,
    /// The finished event's name, ok and error.
    finished: Option<(Option<String>, bool, Option<ApiError>)>,
    /// Events after the finished one.
    after_finish: usize,
}

/// The VM-create operations on the bus so far, in the order they started.
fn vm_creates(
    events: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<banger_api::events::DaemonEvent>>,
) -> Vec<Seen> {
    let mut ids = Vec::new();
    let mut seen: Vec<Seen> = Vec::new();
    while let Ok(event) = events.try_recv() {
        let (id, entry) = match &event.event {
            EventKind::Progress {
                operation_id,
                operation: OperationKind::VmCreate,
                name,
                progress,
            } => (*operation_id, Ok((progress.stage.clone(), name.clone()))),
            EventKind::OperationFinished {
                operation_id,
                operation: OperationKind::VmCreate,
                name,
                ok,
                error,
            } => (*operation_id, Err((name.clone(), *ok, error.clone()))),
            _ => continue,
        };
        let index = ids
            .iter()
            .position(|known| *known == id)
            .unwrap_or_else(|| {
                ids.push(id);
                seen.push(Seen::default());
                ids.len() - 1
            });
        let operation = &mut seen[index];
        if operation.finished.is_some() {
            operation.after_finish += 1;
        }
        match entry {
            Ok(progress) => operation.progress.push(progress),
            Err(finished) => operation.finished = Some(finished),
        }
    }
    seen
}

pub fn create_is_announced_with_progress_and_how_it_ended() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let mut events = state.events().subscribe();
    let started = Instant::now();
    let unnamed: banger_api::vms::VmCreateRequest = serde_json::from_value(serde_json::json!({
        "image": "no-such-image",
        "vcpus": 1,
        "memory_mib": 256,
        "disk_bytes": 64u64 << 20,
        "no_start": true,
    }))
    .expect("request");
    let name = vm_name("lc-announced");
    world.block_on(async {
        create(&state, "lc-announced", false, false)
            .await
            .expect("create");
        let refused = vms::create(&state, &unnamed, &ProgressSink::discard()).await;
        assert!(refused.is_err(), "created from a missing image");
        vms::delete(&state, &name, true).await.expect("delete");
    });
    let elapsed = started.elapsed();
    let creates = vm_creates(&mut events);
    assert_eq!(creates.len(), 2, "{creates:?}");

    let ok = &creates[0];
    assert!(!ok.progress.is_empty(), "no progress published: {ok:?}");
    assert!(
        ok.progress
            .iter()
            .all(|(_, named)| named.as_deref() == Some("lc-announced")),
        "{ok:?}"
    );
    assert_eq!(
        ok.finished,
        Some((Some("lc-announced".to_owned()), true, None)),
        "{ok:?}"
    );
    assert_eq!(ok.after_finish, 0, "progress after the end: {ok:?}");
    // Throttled: at most one per interval (the first comes at once).
    let allowed = (elapsed.as_millis() / ANNOUNCE_INTERVAL.as_millis()) as usize + 1;
    assert!(
        ok.progress.len() <= allowed,
        "{} progress events in {elapsed:?}",
        ok.progress.len()
    );

    let failed = &creates[1];
    let (named, ok, error) = failed.finished.clone().expect("a finished event");
    assert_eq!(named, None, "the VM never got a name");
    assert!(!ok);
    let error = error.expect("the error");
    assert_eq!(error.code, ErrorCode::NotFound, "{error:?}");
    assert!(error.message.contains("no-such-image"), "{error:?}");
}
