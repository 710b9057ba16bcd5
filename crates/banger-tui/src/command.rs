//! What the app asks of the world ([`Command`]) and what the world tells
//! it back ([`DaemonUpdate`]). Both are plain data, so the app's behaviour
//! is testable by feeding updates and reading commands.

use banger_api::events::DaemonEvent;
use banger_api::images::ImageInfo;
use banger_api::kernels::KernelInfo;
use banger_api::operation::Progress;
use banger_api::sessions::SessionInfo;
use banger_api::snapshots::VmForkRequest;
use banger_api::vms::{VmCreateRequest, VmInfo, VmPorts, VmStats};
use banger_api::{SessionName, VmName};

/// Identifies one action the app started, so its progress and result find
/// their way back to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// Something the app wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A daemon call, run in the background.
    Request(Request),
    /// Leave the screen, run a program on the terminal, come back.
    Exec(External),
    /// Leave the TUI.
    Quit,
}

/// A daemon call.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Re-read every VM.
    Vms,
    /// Re-read one VM (after an event named it).
    Vm(VmName),
    /// Re-read the images.
    Images,
    /// Re-read the installed kernels.
    Kernels,
    /// Sessions of a VM, and with `running` its ports and a stats sample.
    Detail {
        /// The VM.
        vm: VmName,
        /// Whether the VM runs (ports and stats need its agent).
        running: bool,
    },
    /// Create a VM, reporting progress.
    Create {
        /// The action's id.
        id: OpId,
        /// What to create.
        request: VmCreateRequest,
    },
    /// Fork a VM, reporting progress.
    Fork {
        /// The action's id.
        id: OpId,
        /// The VM to copy.
        source: VmName,
        /// The new VMs' name and count.
        request: VmForkRequest,
    },
    /// A lifecycle action on one VM.
    Act {
        /// The action's id.
        id: OpId,
        /// The VM.
        vm: VmName,
        /// What to do.
        action: VmAction,
    },
    /// Follow a VM's serial console from its start (replacing any other
    /// console being followed).
    FollowConsole(VmName),
    /// Stop following the console.
    StopConsole,
}

/// A lifecycle action on a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmAction {
    /// `vm start`.
    Start,
    /// `vm stop`.
    Stop,
    /// `vm restart`.
    Restart,
    /// `vm pause`.
    Pause,
    /// `vm resume`.
    Resume,
    /// `vm delete`; `force` stops a running VM first.
    Delete {
        /// Stop it first when it runs.
        force: bool,
    },
}

impl VmAction {
    /// The verb in the present participle, for the status line ("stopping dev").
    pub fn doing(self) -> &'static str {
        match self {
            Self::Start => "starting",
            Self::Stop => "stopping",
            Self::Restart => "restarting",
            Self::Pause => "pausing",
            Self::Resume => "resuming",
            Self::Delete { .. } => "deleting",
        }
    }

    /// The verb in the past tense ("stopped dev").
    pub fn done(self) -> &'static str {
        match self {
            Self::Start => "started",
            Self::Stop => "stopped",
            Self::Restart => "restarted",
            Self::Pause => "paused",
            Self::Resume => "resumed",
            Self::Delete { .. } => "deleted",
        }
    }

    /// The plain verb ("stop").
    pub fn verb(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Delete { .. } => "delete",
        }
    }
}

/// A program run on the terminal, outside the TUI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum External {
    /// `banger vm ssh VM`: a shell in the guest.
    Ssh(VmName),
    /// `banger vm session attach VM SESSION`.
    Attach {
        /// The VM.
        vm: VmName,
        /// The session.
        session: SessionName,
    },
}

impl External {
    /// The `banger` arguments that do it.
    pub fn banger_args(&self) -> Vec<String> {
        match self {
            Self::Ssh(vm) => vec!["vm".into(), "ssh".into(), vm.to_string()],
            Self::Attach { vm, session } => vec![
                "vm".into(),
                "session".into(),
                "attach".into(),
                vm.to_string(),
                session.to_string(),
            ],
        }
    }

    /// What it is, for the status line.
    pub fn describe(&self) -> String {
        match self {
            Self::Ssh(vm) => format!("ssh {vm}"),
            Self::Attach { vm, session } => format!("attach {vm}/{session}"),
        }
    }
}

/// A failed daemon call, as the text to show: the daemon's message with
/// its causes, on one line.
pub type Failure = String;

/// What came back from the daemon (or from a program the TUI ran).
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonUpdate {
    /// The event stream is (again) connected: what the app shows may be
    /// stale and is re-read.
    EventsConnected,
    /// The event stream ended or could not connect; it is retried.
    EventsLost(Failure),
    /// One event from the stream.
    Event(DaemonEvent),
    /// Every VM.
    Vms(Result<Vec<VmInfo>, Failure>),
    /// One VM.
    Vm(VmName, Result<VmInfo, Failure>),
    /// The images.
    Images(Result<Vec<ImageInfo>, Failure>),
    /// The installed kernels.
    Kernels(Result<Vec<KernelInfo>, Failure>),
    /// A VM's sessions.
    Sessions(VmName, Result<Vec<SessionInfo>, Failure>),
    /// A VM's listening ports.
    Ports(VmName, Result<VmPorts, Failure>),
    /// A stats sample asked for (samples also arrive as events).
    Stats(VmName, Result<VmStats, Failure>),
    /// A step of a long action.
    Progress {
        /// The action.
        id: OpId,
        /// The step.
        progress: Progress,
    },
    /// A create finished.
    Created {
        /// The action.
        id: OpId,
        /// The new VM, or why not.
        result: Result<VmInfo, Failure>,
    },
    /// A fork finished.
    Forked {
        /// The action.
        id: OpId,
        /// The new VMs, or why not.
        result: Result<Vec<VmInfo>, Failure>,
    },
    /// A lifecycle action finished; a delete has no VM to show (`None`).
    Acted {
        /// The action.
        id: OpId,
        /// The VM as it is now, or why the action failed.
        result: Result<Option<VmInfo>, Failure>,
    },
    /// More of the console being followed.
    Console {
        /// The VM.
        vm: VmName,
        /// Its output since the last update (raw guest bytes, lossily decoded).
        text: String,
    },
    /// Reading the console failed (it is retried).
    ConsoleFailed {
        /// The VM.
        vm: VmName,
        /// Why.
        error: Failure,
    },
    /// A program run outside the TUI ended.
    ExternalDone {
        /// What ran.
        what: External,
        /// Its exit status, or why it could not run.
        result: Result<i32, Failure>,
    },
}
