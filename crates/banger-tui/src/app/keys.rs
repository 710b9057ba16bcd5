//! Keys: what each key does on each screen. Every binding is listed in the
//! help dialog (`render::help`) and docs/tui.md.

use banger_api::ImageName;
use banger_api::sessions::{SessionState, StdinMode};
use banger_api::vms::VmState;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{
    App, Confirm, ConsoleView, CreateForm, Dialog, Field, ForkField, ForkForm, PAGE, Pending, Tab,
    View,
};
use crate::command::{Command, External, Request, VmAction};

/// Movement keys shared by every list.
enum Move {
    By(isize),
    First,
    Last,
}

fn movement(key: &KeyEvent) -> Option<Move> {
    Some(match key.code {
        KeyCode::Up | KeyCode::Char('k') => Move::By(-1),
        KeyCode::Down | KeyCode::Char('j') => Move::By(1),
        KeyCode::PageUp => Move::By(-(PAGE as isize)),
        KeyCode::PageDown => Move::By(PAGE as isize),
        KeyCode::Home | KeyCode::Char('g') => Move::First,
        KeyCode::End | KeyCode::Char('G') => Move::Last,
        _ => return None,
    })
}

impl App {
    /// Handles one key press.
    pub fn handle_key(&mut self, key: KeyEvent) -> Vec<Command> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c' | 'C')) {
            return vec![Command::Quit];
        }
        let mut commands = match self.dialog.take() {
            Some(dialog) => self.dialog_key(dialog, key),
            None => self.screen_key(key),
        };
        self.normalize();
        self.follow_selection(&mut commands);
        commands
    }

    fn dialog_key(&mut self, dialog: Dialog, key: KeyEvent) -> Vec<Command> {
        match dialog {
            // Any key closes the help.
            Dialog::Help => Vec::new(),
            Dialog::Confirm(confirm) => self.confirm_key(confirm, key),
            Dialog::Create(form) => self.form_key(form, key),
            Dialog::Fork(form) => self.fork_key(form, key),
            Dialog::Progress(id) => {
                if !matches!(key.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q')) {
                    self.dialog = Some(Dialog::Progress(id));
                } else if let Some(pending) = self.pending(id) {
                    let noun = pending.noun();
                    self.info(format!("the {noun} goes on in the background"));
                }
                Vec::new()
            }
        }
    }

    fn confirm_key(&mut self, mut confirm: Confirm, key: KeyEvent) -> Vec<Command> {
        let yes = match key.code {
            KeyCode::Char('y' | 'Y') => true,
            KeyCode::Char('n' | 'N') | KeyCode::Esc | KeyCode::Char('q') => false,
            KeyCode::Enter => confirm.yes_focused,
            KeyCode::Left
            | KeyCode::Right
            | KeyCode::Tab
            | KeyCode::BackTab
            | KeyCode::Char('h' | 'l') => {
                confirm.yes_focused = !confirm.yes_focused;
                self.dialog = Some(Dialog::Confirm(confirm));
                return Vec::new();
            }
            _ => {
                self.dialog = Some(Dialog::Confirm(confirm));
                return Vec::new();
            }
        };
        if !yes {
            return Vec::new();
        }
        self.act(&confirm.vm, confirm.action)
    }

    fn form_key(&mut self, mut form: CreateForm, key: KeyEvent) -> Vec<Command> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Esc => return Vec::new(),
            KeyCode::Enter => match form.request() {
                Ok(request) => {
                    let id = self.op_id();
                    self.pending.push(Pending {
                        id,
                        vm: request.name.clone(),
                        action: None,
                        fork: None,
                        progress: None,
                    });
                    self.dialog = Some(Dialog::Progress(id));
                    return vec![Command::Request(Request::Create { id, request })];
                }
                Err((field, message)) => {
                    form.focus = Field::ALL
                        .iter()
                        .position(|candidate| *candidate == field)
                        .unwrap_or(0);
                    form.error = Some(message);
                }
            },
            KeyCode::Tab | KeyCode::Down => form.move_focus(1),
            KeyCode::BackTab | KeyCode::Up => form.move_focus(-1),
            KeyCode::Backspace => form.backspace(),
            KeyCode::Char('u') if ctrl => form.clear(),
            KeyCode::Left | KeyCode::Right if form.focused() == Field::Image => {
                let images: Vec<ImageName> =
                    self.images.iter().map(|image| image.name.clone()).collect();
                form.cycle_image(&images, key.code == KeyCode::Right);
            }
            KeyCode::Char(c) if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) => {
                form.type_char(c);
            }
            _ => {}
        }
        self.dialog = Some(Dialog::Create(form));
        Vec::new()
    }

    fn fork_key(&mut self, mut form: ForkForm, key: KeyEvent) -> Vec<Command> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Esc => return Vec::new(),
            KeyCode::Enter => match form.request() {
                Ok((target, request)) => {
                    let source = form.source;
                    if let Some(pending) = self.pending_on(&source) {
                        let label = pending.label();
                        self.error(format!("{source} is busy: {label}"));
                        return Vec::new();
                    }
                    let id = self.op_id();
                    self.pending.push(Pending {
                        id,
                        vm: Some(source.clone()),
                        action: None,
                        fork: Some(target),
                        progress: None,
                    });
                    self.status = None;
                    self.dialog = Some(Dialog::Progress(id));
                    return vec![Command::Request(Request::Fork {
                        id,
                        source,
                        request,
                    })];
                }
                Err((field, message)) => {
                    form.focus = ForkField::ALL
                        .iter()
                        .position(|candidate| *candidate == field)
                        .unwrap_or(0);
                    form.error = Some(message);
                }
            },
            KeyCode::Tab | KeyCode::Down => form.move_focus(1),
            KeyCode::BackTab | KeyCode::Up => form.move_focus(-1),
            KeyCode::Backspace => form.backspace(),
            KeyCode::Char('u') if ctrl => form.clear(),
            KeyCode::Left | KeyCode::Right if form.focused() == ForkField::Count => {
                form.step_count(if key.code == KeyCode::Right { 1 } else { -1 });
            }
            KeyCode::Char(c) if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) => {
                form.type_char(c);
            }
            _ => {}
        }
        self.dialog = Some(Dialog::Fork(form));
        Vec::new()
    }

    fn screen_key(&mut self, key: KeyEvent) -> Vec<Command> {
        // Ctrl and Alt combinations mean nothing here (Ctrl-C is handled
        // before); a stray Alt-q must not quit.
        if key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
        {
            return Vec::new();
        }
        match key.code {
            KeyCode::Char('q') => return vec![Command::Quit],
            KeyCode::Char('?') | KeyCode::F(1) => {
                self.dialog = Some(Dialog::Help);
                return Vec::new();
            }
            KeyCode::F(5) => return self.refresh_all(),
            _ => {}
        }
        if self.tab == Tab::Vms && self.view != View::List {
            return self.view_key(key);
        }
        let tab = match key.code {
            KeyCode::Tab | KeyCode::Right => Some(Tab::ALL[(self.tab.index() + 1) % 3]),
            KeyCode::BackTab | KeyCode::Left => Some(Tab::ALL[(self.tab.index() + 2) % 3]),
            KeyCode::Char('1') => Some(Tab::Vms),
            KeyCode::Char('2') => Some(Tab::Images),
            KeyCode::Char('3') => Some(Tab::Kernels),
            _ => None,
        };
        if let Some(tab) = tab {
            self.tab = tab;
            return Vec::new();
        }
        if let Some(movement) = movement(&key) {
            let len = self.rows();
            let selection = self.selection_mut();
            match movement {
                Move::By(delta) => selection.shift(delta, len),
                Move::First => selection.set(0, len),
                Move::Last => selection.set(usize::MAX, len),
            }
            return Vec::new();
        }
        if self.tab != Tab::Vms {
            return Vec::new();
        }
        if key.code == KeyCode::Char('c') {
            self.dialog = Some(Dialog::Create(CreateForm::default()));
            return Vec::new();
        }
        let Some(vm) = self.selected_vm().map(|vm| vm.name.clone()) else {
            if is_vm_key(&key) {
                self.error("no VM yet: press c to create one");
            }
            return Vec::new();
        };
        if key.code == KeyCode::Enter {
            self.view = View::Detail(vm.clone());
            return vec![self.request_detail(&vm)];
        }
        self.vm_key(&vm, key)
    }

    /// Keys of the full-screen views (detail, console, sessions).
    fn view_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let back = matches!(key.code, KeyCode::Esc | KeyCode::Backspace);
        match &mut self.view {
            View::List => Vec::new(),
            View::Detail(vm) => {
                let vm = vm.clone();
                if back || key.code == KeyCode::Enter {
                    self.view = View::List;
                    return Vec::new();
                }
                self.vm_key(&vm, key)
            }
            View::Console(console) => {
                if back || key.code == KeyCode::Char('l') {
                    self.view = View::List;
                    return vec![Command::Request(Request::StopConsole)];
                }
                let total = console.total();
                if let Some(movement) = movement(&key) {
                    console.scroll_back = match movement {
                        Move::By(delta) => {
                            console.scroll_back.saturating_add_signed(-delta).min(total)
                        }
                        Move::First => total,
                        Move::Last => 0,
                    };
                }
                Vec::new()
            }
            View::Sessions { vm, .. } => {
                let vm = vm.clone();
                let sessions = self.sessions_of(&vm).to_vec();
                let View::Sessions { selected, .. } = &mut self.view else {
                    return Vec::new();
                };
                if back {
                    self.view = View::List;
                    return Vec::new();
                }
                if let Some(movement) = movement(&key) {
                    match movement {
                        Move::By(delta) => selected.shift(delta, sessions.len()),
                        Move::First => selected.set(0, sessions.len()),
                        Move::Last => selected.set(usize::MAX, sessions.len()),
                    }
                    return Vec::new();
                }
                selected.fix(sessions.len());
                let chosen = selected.index().and_then(|index| sessions.get(index));
                if !matches!(key.code, KeyCode::Enter | KeyCode::Char('a')) {
                    return Vec::new();
                }
                let Some(session) = chosen else {
                    return Vec::new();
                };
                if session.stdin_mode != StdinMode::Pipe || session.state != SessionState::Running {
                    let why = if session.state == SessionState::Running {
                        "its stdin is detached (start it with --stdin-mode pipe)".to_owned()
                    } else {
                        format!("it is {}", session.state)
                    };
                    self.error(format!("cannot attach to session {}: {why}", session.name));
                    return Vec::new();
                }
                vec![Command::Exec(External::Attach {
                    vm,
                    session: session.name.clone(),
                })]
            }
        }
    }

    /// Action keys on one VM (from the list or its detail view).
    fn vm_key(&mut self, name: &banger_api::VmName, key: KeyEvent) -> Vec<Command> {
        let Some(vm) = self.vm(name).cloned() else {
            return Vec::new();
        };
        let state = vm.state;
        let refuse = |app: &mut Self, verb: &str, hint: &str| {
            let is = match state {
                VmState::Error => "in error".to_owned(),
                state => state.to_string(),
            };
            app.error(format!("cannot {verb} {name}: it is {is}{hint}"));
            Vec::new()
        };
        match key.code {
            KeyCode::Char('s') => {
                if state.can_resume() {
                    self.act(name, VmAction::Resume)
                } else if state.can_start() {
                    self.act(name, VmAction::Start)
                } else {
                    refuse(self, "start", "")
                }
            }
            KeyCode::Char('x') => {
                if state.can_stop() || state == VmState::Paused {
                    self.confirm(name, VmAction::Stop)
                } else {
                    refuse(self, "stop", "")
                }
            }
            KeyCode::Char('r') => {
                if state == VmState::Running {
                    self.confirm(name, VmAction::Restart)
                } else {
                    refuse(self, "restart", "; start it with s")
                }
            }
            KeyCode::Char('d') | KeyCode::Delete => {
                let force = matches!(
                    state,
                    VmState::Running | VmState::Starting | VmState::Stopping
                );
                self.confirm(name, VmAction::Delete { force })
            }
            KeyCode::Char('p') => {
                if state.can_pause() {
                    self.act(name, VmAction::Pause)
                } else {
                    refuse(self, "pause", "")
                }
            }
            KeyCode::Char('u') => {
                if state.can_resume() {
                    self.act(name, VmAction::Resume)
                } else {
                    refuse(self, "resume", "")
                }
            }
            KeyCode::Char('f') => {
                // A fork copies the memory of a running or paused VM.
                if matches!(state, VmState::Running | VmState::Paused) {
                    self.dialog = Some(Dialog::Fork(ForkForm::new(name.clone())));
                    Vec::new()
                } else {
                    refuse(self, "fork", "; only a running or paused VM can be forked")
                }
            }
            KeyCode::Char('e') => {
                if state == VmState::Running {
                    vec![Command::Exec(External::Ssh(name.clone()))]
                } else {
                    refuse(self, "open a shell in", "; start it with s")
                }
            }
            KeyCode::Char('l') => {
                self.view = View::Console(ConsoleView::new(name.clone()));
                vec![Command::Request(Request::FollowConsole(name.clone()))]
            }
            KeyCode::Char('a') => {
                self.view = View::Sessions {
                    vm: name.clone(),
                    selected: super::Selection::default(),
                };
                vec![self.request_detail(name)]
            }
            _ => Vec::new(),
        }
    }

    fn confirm(&mut self, vm: &banger_api::VmName, action: VmAction) -> Vec<Command> {
        self.dialog = Some(Dialog::Confirm(Confirm {
            vm: vm.clone(),
            action,
            yes_focused: false,
        }));
        Vec::new()
    }

    /// Starts an action, unless one is already running on that VM.
    fn act(&mut self, vm: &banger_api::VmName, action: VmAction) -> Vec<Command> {
        if let Some(pending) = self.pending_on(vm) {
            let label = pending.label();
            self.error(format!("{vm} is busy: {label}"));
            return Vec::new();
        }
        let id = self.op_id();
        self.pending.push(Pending {
            id,
            vm: Some(vm.clone()),
            action: Some(action),
            fork: None,
            progress: None,
        });
        self.status = None;
        vec![Command::Request(Request::Act {
            id,
            vm: vm.clone(),
            action,
        })]
    }
}

/// Keys that act on the selected VM (so an empty list can say why nothing
/// happened).
fn is_vm_key(key: &KeyEvent) -> bool {
    matches!(
        key.code,
        KeyCode::Enter
            | KeyCode::Delete
            | KeyCode::Char('s' | 'x' | 'r' | 'd' | 'p' | 'u' | 'f' | 'e' | 'l' | 'a')
    )
}
