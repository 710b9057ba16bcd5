//! Client calls of the `/v1/vms/{name}/sessions` resource, including the
//! streaming log read and the attach upgrade.

use banger_api::sessions::{LogStream, SessionCreateRequest, SessionInfo};
use banger_api::{SessionName, VmName, paths};
use hyper::Method;

use crate::client::{ByteStream, UpgradedConnection};
use crate::{ClientError, DaemonClient};

impl DaemonClient {
    /// A VM's sessions.
    pub async fn sessions(&self, vm: &VmName) -> Result<Vec<SessionInfo>, ClientError> {
        self.call(Method::GET, &paths::vm_sessions(vm.as_str()), None::<&()>)
            .await
    }

    /// Starts a session.
    pub async fn create_session(
        &self,
        vm: &VmName,
        request: &SessionCreateRequest,
    ) -> Result<SessionInfo, ClientError> {
        self.call(
            Method::POST,
            &paths::vm_sessions(vm.as_str()),
            Some(request),
        )
        .await
    }

    /// One session.
    pub async fn session(
        &self,
        vm: &VmName,
        session: &SessionName,
    ) -> Result<SessionInfo, ClientError> {
        self.call(
            Method::GET,
            &paths::vm_session(vm.as_str(), session.as_str()),
            None::<&()>,
        )
        .await
    }

    /// Sends `stop` (SIGTERM) or `kill` (SIGKILL) to a session.
    pub async fn signal_session(
        &self,
        vm: &VmName,
        session: &SessionName,
        action: SessionAction,
    ) -> Result<SessionInfo, ClientError> {
        let action = match action {
            SessionAction::Stop => "stop",
            SessionAction::Kill => "kill",
        };
        self.call(
            Method::POST,
            &paths::vm_session_action(vm.as_str(), session.as_str(), action),
            None::<&()>,
        )
        .await
    }

    /// Forgets an ended session and its logs.
    pub async fn remove_session(
        &self,
        vm: &VmName,
        session: &SessionName,
    ) -> Result<SessionInfo, ClientError> {
        self.call(
            Method::DELETE,
            &paths::vm_session(vm.as_str(), session.as_str()),
            None::<&()>,
        )
        .await
    }

    /// A session's log bytes from the start; with `follow`, the stream
    /// stays open until the session ends.
    pub async fn session_logs(
        &self,
        vm: &VmName,
        session: &SessionName,
        stream: LogStream,
        follow: bool,
    ) -> Result<ByteStream, ClientError> {
        let stream = match stream {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        };
        let path = format!(
            "{}?stream={stream}&follow={follow}",
            paths::vm_session_action(vm.as_str(), session.as_str(), "logs")
        );
        self.byte_stream(Method::GET, &path).await
    }

    /// Attaches to a pipe-mode session; the connection then carries attach
    /// frames (`banger_agent_proto::AttachFrame`) both ways.
    pub async fn attach_session(
        &self,
        vm: &VmName,
        session: &SessionName,
    ) -> Result<UpgradedConnection, ClientError> {
        self.upgrade(
            &paths::vm_session_action(vm.as_str(), session.as_str(), "attach"),
            banger_api::sessions::ATTACH_PROTOCOL,
        )
        .await
    }
}

/// A signal for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAction {
    /// SIGTERM to its process group.
    Stop,
    /// SIGKILL to its process group.
    Kill,
}
