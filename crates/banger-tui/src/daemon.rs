//! The daemon-facing layer: every [`Request`] runs in its own tokio task
//! and sends its outcome back as a [`DaemonUpdate`], so the UI never waits
//! for the daemon. One task follows the event stream and reconnects when
//! it ends; one (at most) follows a console.

use std::time::Duration;

use banger_api::VmName;
use banger_client::{ClientError, DaemonClient};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::command::{DaemonUpdate, Failure, OpId, Request, VmAction};
use crate::text::error_chain;

/// Wait before reconnecting a lost event stream.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// How often a followed console is read for more output.
const CONSOLE_POLL: Duration = Duration::from_millis(500);
/// Wait after a failed console read.
const CONSOLE_RETRY: Duration = Duration::from_secs(2);

/// Runs requests against one daemon.
#[derive(Debug)]
pub struct DaemonLayer {
    client: DaemonClient,
    updates: UnboundedSender<DaemonUpdate>,
    events: JoinHandle<()>,
    console: Option<JoinHandle<()>>,
}

fn failure(error: &ClientError) -> Failure {
    error_chain(error)
}

impl DaemonLayer {
    /// Starts following the event stream; outcomes go to `updates`.
    pub fn start(client: DaemonClient, updates: UnboundedSender<DaemonUpdate>) -> Self {
        let events = tokio::spawn(follow_events(client.clone(), updates.clone()));
        Self {
            client,
            updates,
            events,
            console: None,
        }
    }

    /// Runs `request` in the background.
    pub fn execute(&mut self, request: Request) {
        let client = self.client.clone();
        let updates = self.updates.clone();
        match request {
            Request::Vms => spawn(async move {
                let _ = updates.send(DaemonUpdate::Vms(
                    client.vms().await.map_err(|e| failure(&e)),
                ));
            }),
            Request::Vm(name) => spawn(async move {
                let result = client.vm(&name).await.map_err(|e| failure(&e));
                let _ = updates.send(DaemonUpdate::Vm(name, result));
            }),
            Request::Images => spawn(async move {
                let result = client.images().await.map_err(|e| failure(&e));
                let _ = updates.send(DaemonUpdate::Images(result));
            }),
            Request::Kernels => spawn(async move {
                let result = client.kernels().await.map_err(|e| failure(&e));
                let _ = updates.send(DaemonUpdate::Kernels(result));
            }),
            Request::Detail { vm, running } => self.detail(vm, running),
            Request::Create { id, request } => spawn(async move {
                let progress = updates.clone();
                let result = client
                    .create_vm(&request, &mut |step| {
                        let _ = progress.send(DaemonUpdate::Progress {
                            id,
                            progress: step.clone(),
                        });
                    })
                    .await
                    .map_err(|e| failure(&e));
                let _ = updates.send(DaemonUpdate::Created { id, result });
            }),
            Request::Fork {
                id,
                source,
                request,
            } => spawn(async move {
                let progress = updates.clone();
                let result = client
                    .fork_vm(&source, &request, &mut |step| {
                        let _ = progress.send(DaemonUpdate::Progress {
                            id,
                            progress: step.clone(),
                        });
                    })
                    .await
                    .map_err(|e| failure(&e));
                let _ = updates.send(DaemonUpdate::Forked { id, result });
            }),
            Request::Act { id, vm, action } => spawn(act(client, updates, id, vm, action)),
            Request::FollowConsole(vm) => {
                if let Some(old) = self.console.take() {
                    old.abort();
                }
                self.console = Some(tokio::spawn(follow_console(client, updates, vm)));
            }
            Request::StopConsole => {
                if let Some(old) = self.console.take() {
                    old.abort();
                }
            }
        }
    }

    /// Sessions, and for a running VM its ports and a stats sample, each in
    /// its own task (a slow agent answer holds up nothing else).
    fn detail(&self, vm: VmName, running: bool) {
        let (client, updates, name) = (self.client.clone(), self.updates.clone(), vm.clone());
        spawn(async move {
            let result = client.sessions(&name).await.map_err(|e| failure(&e));
            let _ = updates.send(DaemonUpdate::Sessions(name, result));
        });
        if !running {
            return;
        }
        let (client, updates, name) = (self.client.clone(), self.updates.clone(), vm.clone());
        spawn(async move {
            let result = client.vm_ports(&name).await.map_err(|e| failure(&e));
            let _ = updates.send(DaemonUpdate::Ports(name, result));
        });
        let (client, updates) = (self.client.clone(), self.updates.clone());
        spawn(async move {
            let result = client.vm_stats(&vm).await.map_err(|e| failure(&e));
            let _ = updates.send(DaemonUpdate::Stats(vm, result));
        });
    }
}

impl Drop for DaemonLayer {
    fn drop(&mut self) {
        self.events.abort();
        if let Some(console) = self.console.take() {
            console.abort();
        }
    }
}

/// Spawns a task whose handle nobody needs: its outcome arrives as an update.
fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    drop(tokio::spawn(task));
}

/// One lifecycle action; long ones report progress.
async fn act(
    client: DaemonClient,
    updates: UnboundedSender<DaemonUpdate>,
    id: OpId,
    vm: VmName,
    action: VmAction,
) {
    let progress = updates.clone();
    let mut on_progress = move |step: &banger_api::operation::Progress| {
        let _ = progress.send(DaemonUpdate::Progress {
            id,
            progress: step.clone(),
        });
    };
    let result = match action {
        VmAction::Start => client.start_vm(&vm, &mut on_progress).await.map(Some),
        VmAction::Restart => client.restart_vm(&vm, &mut on_progress).await.map(Some),
        VmAction::Resume => client.resume_vm(&vm, &mut on_progress).await.map(Some),
        VmAction::Stop => client.stop_vm(&vm).await.map(Some),
        VmAction::Pause => client.pause_vm(&vm).await.map(Some),
        VmAction::Delete { force } => client.delete_vm(&vm, force).await.map(|_| None),
    };
    let _ = updates.send(DaemonUpdate::Acted {
        id,
        result: result.map_err(|e| failure(&e)),
    });
}

/// Follows the event stream until the app goes away, reconnecting after
/// each end (the daemon restarted, or this client fell behind).
async fn follow_events(client: DaemonClient, updates: UnboundedSender<DaemonUpdate>) {
    while !updates.is_closed() {
        match client.events().await {
            Ok(mut stream) => {
                if updates.send(DaemonUpdate::EventsConnected).is_err() {
                    return;
                }
                let lost = loop {
                    match stream.next_event().await {
                        Ok(Some(event)) => {
                            if updates.send(DaemonUpdate::Event(event)).is_err() {
                                return;
                            }
                        }
                        Ok(None) => break "the daemon ended the event stream".to_owned(),
                        Err(error) => break failure(&error),
                    }
                };
                let _ = updates.send(DaemonUpdate::EventsLost(lost));
            }
            Err(error) => {
                let _ = updates.send(DaemonUpdate::EventsLost(failure(&error)));
            }
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// Reads a VM's console from the start, then polls for more until aborted.
async fn follow_console(client: DaemonClient, updates: UnboundedSender<DaemonUpdate>, vm: VmName) {
    let mut offset = 0;
    let mut carry = Vec::new();
    loop {
        match client.vm_console(&vm, offset).await {
            Ok((bytes, next)) => {
                let more = next > offset && !bytes.is_empty();
                offset = next;
                if !bytes.is_empty() {
                    carry.extend_from_slice(&bytes);
                    let text = decode_complete(&mut carry);
                    if updates
                        .send(DaemonUpdate::Console {
                            vm: vm.clone(),
                            text,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
                if !more {
                    tokio::time::sleep(CONSOLE_POLL).await;
                }
            }
            Err(error) => {
                let failed = DaemonUpdate::ConsoleFailed {
                    vm: vm.clone(),
                    error: failure(&error),
                };
                if updates.send(failed).is_err() {
                    return;
                }
                tokio::time::sleep(CONSOLE_RETRY).await;
            }
        }
    }
}

/// Decodes `bytes` as UTF-8 (invalid sequences replaced), keeping back an
/// incomplete character at the end for the next read: console reads split
/// the stream anywhere.
fn decode_complete(bytes: &mut Vec<u8>) -> String {
    let keep = match std::str::from_utf8(bytes) {
        Ok(_) => 0,
        // An incomplete sequence at the very end (error_len None) waits.
        Err(error) if error.error_len().is_none() => bytes.len() - error.valid_up_to(),
        Err(_) => {
            // Invalid somewhere: keep back only a trailing incomplete
            // character, if the tail (at most 3 bytes) is one.
            (1..=3.min(bytes.len()))
                .find(|tail| {
                    let start = bytes.len() - tail;
                    matches!(std::str::from_utf8(&bytes[start..]), Err(error) if error.error_len().is_none() && error.valid_up_to() == 0)
                })
                .unwrap_or(0)
        }
    };
    let rest = bytes.split_off(bytes.len() - keep);
    let text = String::from_utf8_lossy(bytes).into_owned();
    *bytes = rest;
    text
}

#[cfg(test)]
mod tests {
    use super::decode_complete;

    #[test]
    fn split_characters_wait_for_their_rest() {
        let text = "aé€".as_bytes();
        let mut carry = text[..2].to_vec();
        assert_eq!(decode_complete(&mut carry), "a");
        assert_eq!(carry, text[1..2]);
        carry.extend_from_slice(&text[2..4]);
        assert_eq!(decode_complete(&mut carry), "é");
        carry.extend_from_slice(&text[4..]);
        assert_eq!(decode_complete(&mut carry), "€");
        assert!(carry.is_empty());
        let mut carry = vec![b'x', 0xff, b'y', 0xe2, 0x82];
        assert_eq!(decode_complete(&mut carry), "x\u{fffd}y");
        assert_eq!(carry, [0xe2, 0x82]);
    }
}
