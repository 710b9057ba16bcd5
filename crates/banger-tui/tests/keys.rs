//! Every key in every screen and state: no panic, a selection whenever a
//! list has rows, destructive actions only through a confirmation, and the
//! screen drawn at 80×24 and 20×5 (and a few odd sizes) fits the frame.
//! Then a long deterministic walk of keys and daemon updates mixed.

mod common;

use banger_api::events::{DaemonEvent, EventKind};
use banger_api::operation::Progress;
use banger_api::sessions::SessionState;
use banger_api::vms::VmState;
use banger_tui::app::{App, Dialog, Tab, View};
use banger_tui::{Command, DaemonUpdate, External, OpId, Request, Theme, VmAction};
use common::*;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// Every key the matrix presses.
fn all_keys() -> Vec<KeyEvent> {
    let mut keys = Vec::new();
    let plain = |code| KeyEvent::new(code, KeyModifiers::NONE);
    for c in (' '..='~').chain(['é', 'ß', '€']) {
        keys.push(plain(KeyCode::Char(c)));
        if c.is_ascii_lowercase() {
            keys.push(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL));
        }
        if matches!(c, 'q' | 'x' | 'd' | 'c' | 'C') {
            keys.push(KeyEvent::new(KeyCode::Char(c), KeyModifiers::ALT));
            keys.push(KeyEvent::new(
                KeyCode::Char(c),
                KeyModifiers::CONTROL | KeyModifiers::SHIFT,
            ));
        }
    }
    for code in [
        KeyCode::Enter,
        KeyCode::Esc,
        KeyCode::Tab,
        KeyCode::BackTab,
        KeyCode::Backspace,
        KeyCode::Delete,
        KeyCode::Insert,
        KeyCode::Up,
        KeyCode::Down,
        KeyCode::Left,
        KeyCode::Right,
        KeyCode::PageUp,
        KeyCode::PageDown,
        KeyCode::Home,
        KeyCode::End,
        KeyCode::Null,
    ] {
        keys.push(plain(code));
        keys.push(KeyEvent::new(code, KeyModifiers::SHIFT));
    }
    for n in 1..=12 {
        keys.push(plain(KeyCode::F(n)));
    }
    // Releases (terminals with key-release reporting) do nothing.
    let mut release = plain(KeyCode::Char('q'));
    release.kind = KeyEventKind::Release;
    keys.push(release);
    keys
}

fn press(app: &mut App, code: KeyCode) -> Vec<Command> {
    app.handle_key(KeyEvent::new(code, KeyModifiers::NONE))
}

/// Every state worth pressing keys in, named.
fn states() -> Vec<(String, App)> {
    let mut states = Vec::new();
    // NO_COLOR changes only styles: its states are the base ones.
    for base in [
        empty_app(Theme::new(false)),
        one_vm_app(Theme::new(false)),
        many_vms_app(Theme::new(false)),
    ] {
        let mut app = base.clone();
        press(&mut app, KeyCode::Char('x'));
        states.push(("no colour".into(), base));
        states.push(("no colour, a confirm".into(), app));
    }
    {
        let theme = Theme::new(true);
        let fresh = App::new(theme);
        states.push(("not loaded".into(), fresh));
        let empty = empty_app(theme);
        let one = one_vm_app(theme);
        let many = many_vms_app(theme);
        for (label, base) in [("empty", empty), ("one VM", one), ("many VMs", many)] {
            states.push((label.into(), base.clone()));
            for tab in [KeyCode::Char('2'), KeyCode::Char('3')] {
                let mut app = base.clone();
                press(&mut app, tab);
                states.push((format!("{label}, tab {tab:?}"), app));
            }
            for (what, keys) in [
                ("help", vec![KeyCode::Char('?')]),
                ("create form", vec![KeyCode::Char('c')]),
                (
                    "create form, NAT focused",
                    vec![KeyCode::Char('c'), KeyCode::BackTab],
                ),
                (
                    "create form with an error",
                    vec![
                        KeyCode::Char('c'),
                        KeyCode::Char('B'),
                        KeyCode::Char('!'),
                        KeyCode::Enter,
                    ],
                ),
                ("create progress", vec![KeyCode::Char('c'), KeyCode::Enter]),
                ("fork form", vec![KeyCode::Char('f')]),
                (
                    "fork form, count focused",
                    vec![KeyCode::Char('f'), KeyCode::Tab, KeyCode::Right],
                ),
                (
                    "fork form with an error",
                    vec![KeyCode::Char('f'), KeyCode::Char('!'), KeyCode::Enter],
                ),
                ("fork progress", vec![KeyCode::Char('f'), KeyCode::Enter]),
                (
                    "fork of a paused VM",
                    vec![KeyCode::End, KeyCode::Char('f')],
                ),
                ("detail", vec![KeyCode::Enter]),
                ("console", vec![KeyCode::Char('l')]),
                ("sessions", vec![KeyCode::Char('a')]),
                ("delete confirm", vec![KeyCode::Char('d')]),
                ("stop confirm", vec![KeyCode::Char('x')]),
                ("restart confirm", vec![KeyCode::Char('r')]),
                (
                    "stop confirm, yes focused",
                    vec![KeyCode::Char('x'), KeyCode::Left],
                ),
                ("paused selected", vec![KeyCode::End]),
                ("pending pause", vec![KeyCode::Char('p')]),
            ] {
                let mut app = base.clone();
                for key in keys {
                    press(&mut app, key);
                }
                states.push((format!("{label}, {what}"), app));
            }
        }
        // Views with content, a lost stream, a progress step.
        let mut app = one_vm_app(theme);
        press(&mut app, KeyCode::Char('l'));
        let _ = app.apply(DaemonUpdate::Console {
            vm: name("dev"),
            text: "line\n".repeat(300) + "partial \u{1b}[31m",
        });
        states.push(("console with output".into(), app.clone()));
        press(&mut app, KeyCode::PageUp);
        states.push(("console scrolled back".into(), app));
        let mut app = many_vms_app(theme);
        let _ = app.apply(DaemonUpdate::EventsLost("connection refused".into()));
        press(&mut app, KeyCode::Char('c'));
        let commands = press(&mut app, KeyCode::Enter);
        if let [Command::Request(Request::Create { id, .. })] = commands.as_slice() {
            let _ = app.apply(DaemonUpdate::Progress {
                id: *id,
                progress: Progress {
                    stage: "boot".into(),
                    message: "waiting for SSH".into(),
                    fraction: Some(0.9),
                },
            });
        }
        states.push(("lost stream, create progress".into(), app));
        let mut app = one_vm_app(theme);
        press(&mut app, KeyCode::Char('f'));
        press(&mut app, KeyCode::Tab);
        press(&mut app, KeyCode::Char('6'));
        let commands = press(&mut app, KeyCode::Enter);
        if let [Command::Request(Request::Fork { id, .. })] = commands.as_slice() {
            let _ = app.apply(DaemonUpdate::Progress {
                id: *id,
                progress: Progress {
                    stage: "fork".into(),
                    message: "waiting for SSH on dev-copy-3".into(),
                    fraction: Some(0.5),
                },
            });
        }
        states.push(("fork of six, progress".into(), app));
    }
    states
}

/// Sizes every state is drawn at: the smallest supported terminal, a tiny
/// one, a large one.
const SIZES: [(u16, u16); 3] = [(80, 24), (20, 5), (160, 50)];
/// Odd sizes the walk also tries now and then.
const ODD_SIZES: [(u16, u16); 3] = [(1, 1), (3, 40), (200, 3)];

/// What must hold after every key and update.
fn check(app: &App, context: &str) {
    check_at(app, context, &SIZES);
}

fn check_at(app: &App, context: &str, sizes: &[(u16, u16)]) {
    for (rows, selection, list) in [
        (app.vms.len(), app.vm_selection.index(), "VMs"),
        (app.images.len(), app.image_selection.index(), "images"),
        (app.kernels.len(), app.kernel_selection.index(), "kernels"),
    ] {
        match selection {
            Some(index) => assert!(
                index < rows,
                "{context}: {list} selection {index} of {rows}"
            ),
            None => assert_eq!(rows, 0, "{context}: {list} has rows but no selection"),
        }
    }
    if let View::Sessions { vm, selected } = &app.view {
        let rows = app.sessions_of(vm).len();
        assert_eq!(
            selected.index().is_some(),
            rows > 0,
            "{context}: sessions selection"
        );
    }
    for &(width, height) in sizes {
        let mut terminal = render(app, width, height);
        let area = terminal.backend().buffer().area;
        assert_eq!((area.width, area.height), (width, height), "{context}");
        let cursor = terminal.get_cursor_position().expect("cursor");
        if matches!(app.dialog, Some(Dialog::Create(_) | Dialog::Fork(_))) {
            assert!(
                cursor.x < width && cursor.y < height,
                "{context}: cursor {cursor:?} outside {width}x{height}"
            );
        }
    }
}

/// What a key may ask for, given the state before it.
fn check_commands(before: &App, key: &KeyEvent, commands: &[Command], context: &str) {
    let confirming = matches!(before.dialog, Some(Dialog::Confirm(_)));
    for command in commands {
        match command {
            Command::Request(Request::Act { vm, action, .. }) => {
                assert!(before.vm(vm).is_some(), "{context}: act on unknown VM {vm}");
                if matches!(
                    action,
                    VmAction::Stop | VmAction::Restart | VmAction::Delete { .. }
                ) {
                    assert!(
                        confirming,
                        "{context}: {action:?} without a confirmation ({key:?})"
                    );
                }
            }
            Command::Request(Request::Create { .. }) => assert!(
                matches!(before.dialog, Some(Dialog::Create(_))),
                "{context}: create without the form"
            ),
            Command::Request(Request::Fork {
                source, request, ..
            }) => {
                let Some(Dialog::Fork(form)) = &before.dialog else {
                    panic!("{context}: fork without the form");
                };
                assert_eq!(&form.source, source, "{context}");
                assert!(
                    before
                        .vm(source)
                        .is_some_and(|vm| matches!(vm.state, VmState::Running | VmState::Paused)),
                    "{context}: fork of a VM that is neither running nor paused"
                );
                let count = request.count.unwrap_or(1);
                assert!((1..=16).contains(&count), "{context}: count {count}");
            }
            Command::Exec(External::Ssh(vm)) => assert_eq!(
                before.vm(vm).map(|vm| vm.state),
                Some(VmState::Running),
                "{context}: ssh into a VM that is not running"
            ),
            Command::Exec(External::Attach { vm, session }) => {
                let found = before
                    .sessions_of(vm)
                    .iter()
                    .find(|candidate| &candidate.name == session)
                    .expect("attached session is listed");
                assert_eq!(found.state, SessionState::Running, "{context}");
            }
            Command::Quit => {
                let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL)
                    && matches!(key.code, KeyCode::Char('c' | 'C'));
                let q = key.code == KeyCode::Char('q')
                    && before.dialog.is_none()
                    && key.modifiers.is_empty();
                assert!(ctrl_c || q, "{context}: quit on {key:?}");
            }
            Command::Request(_) => {}
        }
    }
}

#[test]
fn every_key_in_every_state() {
    let keys = all_keys();
    let states = states();
    assert!(states.len() > 50, "{} states", states.len());
    for (label, state) in &states {
        check(state, label);
        for key in &keys {
            let mut app = state.clone();
            let commands = app.handle_key(*key);
            let context = format!("{label} + {key:?}");
            check_commands(state, key, &commands, &context);
            // A key that changed nothing leaves a state already checked.
            if app != *state {
                check(&app, &context);
            }
        }
    }
}

#[test]
fn ctrl_c_quits_everywhere_and_q_outside_text_fields() {
    for (label, state) in states() {
        let mut app = state.clone();
        assert_eq!(
            app.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            [Command::Quit],
            "{label}"
        );
        let mut app = state.clone();
        let quits = press(&mut app, KeyCode::Char('q')) == [Command::Quit];
        assert_eq!(quits, state.dialog.is_none(), "{label}");
    }
}

/// A small deterministic generator (no dependency, same walk every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % below.max(1)
    }
}

/// A random daemon update that makes sense for `app`.
fn random_update(app: &App, rng: &mut Lcg, seq: &mut u64) -> DaemonUpdate {
    let names = ["dev", "api-server", "new-one", "zeta", "builder"];
    let vm_name = names[rng.next(names.len())];
    let state = VmState::ALL[rng.next(VmState::ALL.len())];
    *seq += 1;
    let event = |kind| {
        DaemonUpdate::Event(DaemonEvent {
            seq: *seq,
            time_unix_ms: 0,
            event: kind,
        })
    };
    let pending: Vec<OpId> = app.pending.iter().map(|pending| pending.id).collect();
    match rng.next(14) {
        0 => DaemonUpdate::Vm(name(vm_name), Ok(vm(vm_name, state, 20))),
        1 => event(EventKind::VmDeleted { vm: name(vm_name) }),
        2 => event(EventKind::VmState {
            vm: name(vm_name),
            from: VmState::Running,
            to: state,
            reason: None,
        }),
        3 => event(EventKind::Stats {
            vm: name(vm_name),
            stats: stats(vm_name, 1.0, 100),
        }),
        4 => DaemonUpdate::Vms(Ok(names
            .iter()
            .take(rng.next(names.len() + 1))
            .enumerate()
            .map(|(index, vm_name)| vm(vm_name, state, 30 + index as u8))
            .collect())),
        5 => DaemonUpdate::Sessions(
            name(vm_name),
            Ok(vec![session(vm_name, "agent", SessionState::Running, true)]),
        ),
        6 => DaemonUpdate::Console {
            vm: name(vm_name),
            text: "boot\n".into(),
        },
        7 if !pending.is_empty() => DaemonUpdate::Acted {
            id: pending[rng.next(pending.len())],
            result: Err("refused".into()),
        },
        8 if !pending.is_empty() => DaemonUpdate::Created {
            id: pending[rng.next(pending.len())],
            result: Ok(vm("new-one", VmState::Running, 40)),
        },
        11 if !pending.is_empty() => DaemonUpdate::Forked {
            id: pending[rng.next(pending.len())],
            result: if rng.next(2) == 0 {
                Ok(vec![
                    vm("zeta", VmState::Running, 41),
                    vm("builder", VmState::Running, 42),
                ])
            } else {
                Err("no space for the memory".into())
            },
        },
        12 => event(EventKind::VmHealth {
            vm: name(vm_name),
            warning: (rng.next(2) == 0).then(|| "unhealthy: the VMM is stopped".to_owned()),
        }),
        9 => DaemonUpdate::EventsLost("gone".into()),
        10 => DaemonUpdate::EventsConnected,
        _ => DaemonUpdate::Images(Ok(vec![image("debian-bookworm", true, &[vm_name])])),
    }
}

#[test]
fn long_walk_of_keys_and_updates() {
    let keys = all_keys();
    let mut rng = Lcg(0x5eed);
    let mut seq = 0;
    let mut app = many_vms_app(Theme::new(true));
    for step in 0..3_000_u32 {
        let before = app.clone();
        if rng.next(3) == 0 {
            let update = random_update(&app, &mut rng, &mut seq);
            let context = format!("step {step}: {update:?}");
            let _ = app.apply(update);
            check(&app, &context);
        } else {
            let key = keys[rng.next(keys.len())];
            let context = format!("step {step}: {key:?}");
            let commands = app.handle_key(key);
            check_commands(&before, &key, &commands, &context);
            if commands.contains(&Command::Quit) {
                // Carry on as if the user had not quit.
                continue;
            }
            check(&app, &context);
        }
        if step.is_multiple_of(10) {
            check_at(&app, &format!("step {step}"), &ODD_SIZES);
        }
        if app.tab != Tab::Vms && rng.next(20) == 0 {
            press(&mut app, KeyCode::Char('1'));
        }
    }
}

#[test]
fn health_events_set_and_clear_the_last_error() {
    let mut app = one_vm_app(Theme::new(false));
    let health = |seq, warning: Option<&str>| {
        DaemonUpdate::Event(DaemonEvent {
            seq,
            time_unix_ms: 0,
            event: EventKind::VmHealth {
                vm: name("dev"),
                warning: warning.map(str::to_owned),
            },
        })
    };
    let warning = "unhealthy: the VMM (pid 42) is stopped";
    assert!(app.apply(health(1, Some(warning))).is_empty());
    let vm = app.vm(&name("dev")).expect("dev is listed");
    assert_eq!(vm.last_error.as_deref(), Some(warning));
    assert_eq!(vm.state, VmState::Running);
    app.apply(health(2, None));
    assert_eq!(app.vm(&name("dev")).expect("dev").last_error, None);
    // A VM the TUI does not list is not made up.
    app.apply(DaemonUpdate::Event(DaemonEvent {
        seq: 3,
        time_unix_ms: 0,
        event: EventKind::VmHealth {
            vm: name("other"),
            warning: Some(warning.to_owned()),
        },
    }));
    assert!(app.vm(&name("other")).is_none());
}
