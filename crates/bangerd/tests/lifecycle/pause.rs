//! Pause and resume against the spec-validating fake Firecracker: the pause
//! sends `PATCH /vm` Paused and `PUT /snapshot/create`, ends the VMM,
//! releases the TAP and keeps the memory owner-only in `<dir>/memory/`; the
//! resume's new VMM gets `PUT /snapshot/load` with the new TAP and vsock
//! socket, every request accepted by the spec; wrong states are refused and
//! change nothing; `vm stop` of a paused VM discards the memory; a paused VM
//! survives a daemon restart and is deleted without `--force`, leaving
//! nothing.

use std::os::unix::fs::PermissionsExt;

use banger_api::ErrorCode;
use banger_api::vms::VmState;
use bangerd::progress::ProgressSink;
use bangerd::vms;

use crate::ready;
use crate::world::{Fakes, World, chain, create, show, vm_name};

pub fn pause_resume_stop_and_delete_a_paused_vm() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let name = vm_name("lc-pause");
    world.block_on(async {
        create(&state, "lc-pause", false, false)
            .await
            .expect("create");
        let running = world.assert_running(&state, "lc-pause");

        let paused = vms::pause(&state, &name).await.expect("pause");
        assert_eq!(paused.state, VmState::Paused);
        assert_eq!(paused.pid, None);
        assert_eq!(paused.tap, None);
        assert!(world.net.taps().is_empty(), "the TAP was released");
        let memory = vms::memory_dir(std::path::Path::new(&paused.dir));
        assert_eq!(
            fs_err::metadata(&memory)
                .expect("memory")
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let mut files: Vec<String> = fs_err::read_dir(&memory)
            .expect("list")
            .map(|entry| {
                let entry = entry.expect("entry");
                let mode = entry.metadata().expect("meta").permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", entry.path().display());
                entry.file_name().to_string_lossy().into_owned()
            })
            .collect();
        files.sort();
        assert_eq!(files, ["firecracker.mem", "firecracker.vmstate"]);
        assert!(paused.saved_memory_bytes.is_some_and(|bytes| bytes > 0));
        let old_pid = running.pid.expect("pid");
        assert!(
            !std::path::Path::new(&format!("/proc/{old_pid}")).exists()
                || fs_err::read_to_string(format!("/proc/{old_pid}/stat"))
                    .is_ok_and(|stat| stat.contains(") Z ")),
            "the VMM ended"
        );
        // Pausing again changes nothing; set (resources) is refused.
        assert_eq!(
            vms::pause(&state, &name).await.expect("again").state,
            VmState::Paused
        );

        // A restarted daemon leaves it paused.
        let state = world.daemon(Fakes::Working);
        vms::recover(&state).await;
        assert_eq!(show(&state, "lc-pause").state, VmState::Paused);

        // vm start resumes it: a new VMM loads the snapshot.
        let resumed = vms::start(&state, &name, &ProgressSink::discard())
            .await
            .expect("resume");
        assert_eq!(resumed.state, VmState::Running);
        assert_ne!(resumed.pid, running.pid);
        assert!(!memory.exists(), "the memory is gone once resumed");
        let run_dir = state.paths().runtime_dir.join("vms").join("lc-pause");
        let records =
            banger_testkit::fake_firecracker::read_records(&run_dir.join("firecracker.sock"));
        assert!(
            records.iter().all(|record| record.accepted()),
            "{records:?}"
        );
        let load = records
            .iter()
            .find(|record| record.path == "/snapshot/load")
            .expect("a load");
        let body = load.body.as_ref().expect("body");
        assert_eq!(
            body["network_overrides"][0]["host_dev_name"].as_str(),
            resumed.tap.as_deref()
        );
        // Loaded paused, each drive pointed at the VM's own files, then
        // resumed (a fork's disks are not the ones the snapshot names).
        assert_eq!(body["resume_vm"], false);
        let after_load: Vec<(&str, &str)> = records
            .iter()
            .skip_while(|record| record.path != "/snapshot/load")
            .skip(1)
            .map(|record| (record.method.as_str(), record.path.as_str()))
            .collect();
        assert_eq!(
            after_load[..3],
            [
                ("PATCH", "/drives/vda"),
                ("PATCH", "/drives/vdb"),
                ("PATCH", "/drives/vdc"),
            ],
            "{after_load:?}"
        );
        assert!(after_load.contains(&("PATCH", "/vm")), "{after_load:?}");

        // Wrong states: a running VM is not resumed again (no-op), a stopped
        // one is neither paused nor resumed.
        vms::resume(&state, &name, &ProgressSink::discard())
            .await
            .expect("resume of a running VM is a no-op");
        vms::pause(&state, &name).await.expect("pause again");
        let stopped = vms::stop(&state, &name).await.expect("stop a paused VM");
        assert_eq!(stopped.state, VmState::Stopped);
        assert!(
            stopped
                .last_error
                .as_deref()
                .is_some_and(|reason| reason.contains("discarded")),
            "{:?}",
            stopped.last_error
        );
        assert!(!memory.exists(), "stop discarded the memory");
        let error = vms::pause(&state, &name).await.expect_err("stopped");
        assert_eq!(error.code(), ErrorCode::Conflict, "{}", chain(&error));
        let error = vms::resume(&state, &name, &ProgressSink::discard())
            .await
            .expect_err("stopped");
        assert_eq!(error.code(), ErrorCode::Conflict, "{}", chain(&error));

        // A paused VM is deleted without --force, memory and all.
        vms::start(&state, &name, &ProgressSink::discard())
            .await
            .expect("start");
        vms::pause(&state, &name).await.expect("pause");
        vms::delete(&state, &name, false)
            .await
            .expect("delete a paused VM");
        world.assert_gone(&state, "lc-pause");
    });
}
