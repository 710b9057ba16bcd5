//! Updates from the daemon: lists read, events, action results.

use banger_api::events::{EventKind, OperationKind};

use super::{App, ConsoleView, Dialog, Link, View};
use crate::command::{Command, DaemonUpdate, Request, VmAction};

impl App {
    /// Takes in one update; returns follow-up commands (such as re-reading a
    /// VM an event named).
    pub fn apply(&mut self, update: DaemonUpdate) -> Vec<Command> {
        let mut commands = Vec::new();
        match update {
            DaemonUpdate::EventsConnected => {
                let reconnected = matches!(self.link, Link::Lost(_));
                self.link = Link::Live;
                if reconnected {
                    // Events were missed while the stream was down.
                    commands = self.refresh_all();
                }
            }
            DaemonUpdate::EventsLost(error) => self.link = Link::Lost(error),
            DaemonUpdate::Event(event) => match event.event {
                EventKind::VmCreated { vm } => commands.push(Command::Request(Request::Vm(vm))),
                EventKind::VmState { vm, to, reason, .. } => {
                    if let Some(mut row) = self.vm(&vm).cloned() {
                        row.state = to;
                        if reason.is_some() {
                            row.last_error = reason;
                        }
                        self.upsert_vm(row);
                    }
                    // The record has more that changed (pid, backend, TAP).
                    commands.push(Command::Request(Request::Vm(vm.clone())));
                    if self.focused_vm().is_some_and(|focused| focused.name == vm) {
                        // Ports and sessions change with the state.
                        self.detail_for = None;
                    }
                }
                EventKind::VmHealth { vm, warning } => {
                    if let Some(mut row) = self.vm(&vm).cloned() {
                        row.last_error = warning;
                        self.upsert_vm(row);
                    }
                }
                EventKind::VmDeleted { vm } => self.remove_vm(&vm),
                EventKind::Stats { vm, stats } => {
                    if self.vm(&vm).is_some() {
                        self.stats.insert(vm, stats);
                    }
                }
                // The focused VM's sessions are re-read (the detail pane).
                EventKind::SessionStarted { vm, .. }
                | EventKind::SessionEnded { vm, .. }
                | EventKind::SessionRemoved { vm, .. } => {
                    if self.focused_vm().is_some_and(|focused| focused.name == vm) {
                        self.detail_for = None;
                    }
                }
                // An image built or pulled elsewhere (CLI, web UI) appears.
                EventKind::OperationFinished {
                    operation: OperationKind::ImageBuild | OperationKind::ImagePull,
                    ok: true,
                    ..
                } => commands.push(Command::Request(Request::Images)),
                // The TUI's own create shows its stream's progress; a VM
                // another client creates appears through its record events.
                EventKind::Progress { .. } | EventKind::OperationFinished { .. } => {}
                // The stream ends after this; the reconnect re-reads.
                EventKind::Lagged { .. } => {}
            },
            DaemonUpdate::Vms(result) => {
                self.loading.vms = false;
                match result {
                    Ok(vms) => self.set_vms(vms),
                    Err(error) => self.error(format!("listing VMs: {error}")),
                }
            }
            // A failed re-read is most often a VM deleted meanwhile; its
            // deletion event follows.
            DaemonUpdate::Vm(_, result) => {
                if let Ok(vm) = result {
                    self.upsert_vm(vm);
                }
            }
            DaemonUpdate::Images(result) => {
                self.loading.images = false;
                match result {
                    Ok(mut images) => {
                        images.sort_by(|a, b| a.name.cmp(&b.name));
                        self.images = images;
                        self.image_selection.fix(self.images.len());
                    }
                    Err(error) => self.error(format!("listing images: {error}")),
                }
            }
            DaemonUpdate::Kernels(result) => {
                self.loading.kernels = false;
                match result {
                    Ok(mut kernels) => {
                        kernels.sort_by(|a, b| a.name.cmp(&b.name));
                        self.kernels = kernels;
                        self.kernel_selection.fix(self.kernels.len());
                    }
                    Err(error) => self.error(format!("listing kernels: {error}")),
                }
            }
            DaemonUpdate::Sessions(vm, result) => {
                if self.vm(&vm).is_some() {
                    let detail = self.details.entry(vm).or_default();
                    detail.sessions = Some(result);
                    detail.loading = false;
                }
            }
            DaemonUpdate::Ports(vm, result) => {
                if self.vm(&vm).is_some() {
                    self.details.entry(vm).or_default().ports = Some(result);
                }
            }
            DaemonUpdate::Stats(vm, result) => {
                if let (Ok(stats), Some(_)) = (result, self.vm(&vm)) {
                    self.stats.insert(vm, stats);
                }
            }
            DaemonUpdate::Progress { id, progress } => {
                if let Some(pending) = self.pending.iter_mut().find(|pending| pending.id == id) {
                    pending.progress = Some(progress);
                }
            }
            DaemonUpdate::Created { id, result } => {
                let pending = self.finish(id);
                if self.dialog == Some(Dialog::Progress(id)) {
                    self.dialog = None;
                }
                match result {
                    Ok(vm) => {
                        self.info(format!("created {} ({} at {})", vm.name, vm.state, vm.ip));
                        let name = vm.name.clone();
                        self.upsert_vm(vm);
                        self.select_vm(&name);
                    }
                    Err(error) => {
                        let what = pending
                            .and_then(|pending| pending.vm)
                            .map_or_else(|| "create".to_owned(), |vm| format!("create {vm}"));
                        self.error(format!("{what}: {error}"));
                    }
                }
            }
            DaemonUpdate::Forked { id, result } => {
                let pending = self.finish(id);
                if self.dialog == Some(Dialog::Progress(id)) {
                    self.dialog = None;
                }
                let source = pending
                    .and_then(|pending| pending.vm)
                    .map(|vm| vm.to_string())
                    .unwrap_or_default();
                match result {
                    Ok(vms) => {
                        let made: Vec<String> = vms
                            .iter()
                            .map(|vm| format!("{} ({} at {})", vm.name, vm.state, vm.ip))
                            .collect();
                        self.info(format!("forked {source} into {}", made.join(", ")));
                        let first = vms.first().map(|vm| vm.name.clone());
                        for vm in vms {
                            self.upsert_vm(vm);
                        }
                        if let Some(first) = first {
                            self.select_vm(&first);
                        }
                    }
                    Err(error) => self.error(format!("fork {source}: {error}")),
                }
            }
            DaemonUpdate::Acted { id, result } => {
                let pending = self.finish(id);
                let (vm, action) = match &pending {
                    Some(pending) => (pending.vm.clone(), pending.action),
                    None => (None, None),
                };
                let action = action.unwrap_or(VmAction::Start);
                let name = vm.map(|vm| vm.to_string()).unwrap_or_default();
                match result {
                    Ok(Some(vm)) => {
                        let note = vm
                            .last_error
                            .as_ref()
                            .filter(|_| action == VmAction::Stop)
                            .map(|why| format!(" ({why})"))
                            .unwrap_or_default();
                        self.info(format!("{} {}{note}", action.done(), vm.name));
                        self.upsert_vm(vm);
                    }
                    Ok(None) => {
                        self.info(format!("{} {name}", action.done()));
                        if let Some(vm) = pending.and_then(|pending| pending.vm) {
                            self.remove_vm(&vm);
                        }
                    }
                    Err(error) => self.error(format!("{} {name}: {error}", action.verb())),
                }
            }
            DaemonUpdate::Console { vm, text } => {
                if let View::Console(console) = &mut self.view
                    && console.vm.as_ref() == Some(&vm)
                {
                    console.push(&text);
                }
            }
            DaemonUpdate::ConsoleFailed { vm, error } => {
                if let View::Console(ConsoleView {
                    vm: Some(shown),
                    error: shown_error,
                    ..
                }) = &mut self.view
                    && *shown == vm
                {
                    *shown_error = Some(error);
                }
            }
            DaemonUpdate::ExternalDone { what, result } => match result {
                Ok(0) => self.info(format!("{} ended", what.describe())),
                Ok(code) => self.error(format!("{} exited with status {code}", what.describe())),
                Err(error) => self.error(format!("{}: {error}", what.describe())),
            },
        }
        self.normalize();
        self.follow_selection(&mut commands);
        commands
    }

    /// Removes a finished action.
    fn finish(&mut self, id: crate::command::OpId) -> Option<super::Pending> {
        let index = self.pending.iter().position(|pending| pending.id == id)?;
        Some(self.pending.remove(index))
    }
}
