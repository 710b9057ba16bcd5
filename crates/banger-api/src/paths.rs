//! The URL paths of the daemon API, in one place so the router and the client
//! cannot drift apart.

/// `GET`: daemon status.
pub const DAEMON_STATUS: &str = "/v1/daemon/status";
/// `POST`: graceful daemon stop.
pub const DAEMON_STOP: &str = "/v1/daemon/stop";
/// `POST`: database integrity check.
pub const DAEMON_CHECK: &str = "/v1/daemon/check";
/// `GET`: the OpenAPI document of this API.
pub const OPENAPI: &str = "/v1/openapi.json";
/// `GET`: the live event stream (NDJSON of `events::DaemonEvent`).
pub const EVENTS: &str = "/v1/events";
/// `GET`: installed kernels.
pub const KERNELS: &str = "/v1/kernels";
/// `GET`: the kernel catalog.
pub const KERNEL_CATALOG: &str = "/v1/kernels/catalog";
/// `POST` (NDJSON progress): install a catalog kernel.
pub const KERNEL_PULL: &str = "/v1/kernels/pull";
/// `POST` (NDJSON progress): import a kernel file.
pub const KERNEL_IMPORT: &str = "/v1/kernels/import";

/// `POST`: remove the kernels no image uses.
pub const KERNEL_PRUNE: &str = "/v1/kernels/prune";

/// `GET`/`DELETE`: one kernel. Names are validated, so they need no escaping.
pub fn kernel(name: &str) -> String {
    format!("{KERNELS}/{name}")
}
/// `GET`: registered images.
pub const IMAGES: &str = "/v1/images";
/// `POST`: register an unmanaged image.
pub const IMAGE_REGISTER: &str = "/v1/images/register";
/// `POST` (NDJSON progress): build a Debian image.
pub const IMAGE_BUILD: &str = "/v1/images/build";
/// `POST` (NDJSON progress): pull an OCI image into the managed store.
pub const IMAGE_PULL: &str = "/v1/images/pull";
/// `POST`: remove the managed images no VM uses.
pub const IMAGE_PRUNE: &str = "/v1/images/prune";
/// `GET`: host disk usage per VM, image, kernel and cache.
pub const USAGE: &str = "/v1/usage";

/// `GET`/`DELETE`: one image.
pub fn image(name: &str) -> String {
    format!("{IMAGES}/{name}")
}

/// `POST` (NDJSON progress): copy an unmanaged image into the managed store.
pub fn image_promote(name: &str) -> String {
    format!("{IMAGES}/{name}/promote")
}
/// `GET`: VMs; `POST` (NDJSON progress): create one.
pub const VMS: &str = "/v1/vms";

/// `POST`: re-register an orphaned VM directory. Orphans live outside
/// `/v1/vms/` so that no fixed segment there can shadow a VM's name.
pub const VM_ADOPT: &str = "/v1/orphans/adopt";
/// `GET`: directories under `<state dir>/vms/` that no VM owns.
pub const VM_ORPHANS: &str = "/v1/orphans";

/// `GET`/`PATCH`/`DELETE`: one VM.
pub fn vm(name: &str) -> String {
    format!("{VMS}/{name}")
}

/// `POST`: an action on a VM (`start`, `stop`, `restart`, `kill`).
pub fn vm_action(name: &str, action: &str) -> String {
    format!("{VMS}/{name}/{action}")
}

/// `GET`: a VM's serial console from `?offset=N`.
pub fn vm_console(name: &str) -> String {
    format!("{VMS}/{name}/console")
}

/// `GET`: a VM's listening ports, from its agent.
pub fn vm_ports(name: &str) -> String {
    format!("{VMS}/{name}/ports")
}

/// `GET`: a VM's host and guest stats.
pub fn vm_stats(name: &str) -> String {
    format!("{VMS}/{name}/stats")
}

/// `GET`: whether a VM's agent answers.
pub fn vm_agent(name: &str) -> String {
    format!("{VMS}/{name}/agent")
}

/// `GET`: a VM's sessions; `POST`: start one.
pub fn vm_sessions(name: &str) -> String {
    format!("{VMS}/{name}/sessions")
}

/// `GET`/`DELETE`: one session.
pub fn vm_session(name: &str, session: &str) -> String {
    format!("{VMS}/{name}/sessions/{session}")
}

/// `POST`: a session action (`stop`, `kill`); `GET`: `logs`, `attach`.
pub fn vm_session_action(name: &str, session: &str, action: &str) -> String {
    format!("{VMS}/{name}/sessions/{session}/{action}")
}

/// `GET`: a VM's snapshots; `POST`: take one.
pub fn vm_snapshots(name: &str) -> String {
    format!("{VMS}/{name}/snapshots")
}

/// `DELETE`: one snapshot.
pub fn vm_snapshot(name: &str, snapshot: &str) -> String {
    format!("{VMS}/{name}/snapshots/{snapshot}")
}

/// `POST`: put a VM back to one of its snapshots.
pub fn vm_snapshot_restore(name: &str, snapshot: &str) -> String {
    format!("{VMS}/{name}/snapshots/{snapshot}/restore")
}

/// `POST`: new VMs from a VM's running state.
pub fn vm_fork(name: &str) -> String {
    format!("{VMS}/{name}/fork")
}
