//! The screens as a user sees them, through ratatui's test backend, as
//! snapshots at 80×24 (the smallest supported terminal) and 160×50.

mod common;

use banger_api::operation::Progress;
use banger_api::vms::VmState;
use banger_tui::app::{App, Dialog, Tab};
use banger_tui::{DaemonUpdate, Theme};
use common::*;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;

const COLOR: Theme = Theme::new(true);

fn press(app: &mut App, code: KeyCode) {
    let _ = app.handle_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c));
    }
}

/// Snapshots `app` at both sizes.
fn snapshot(name: &str, app: &App) {
    insta::assert_snapshot!(format!("{name}_80x24"), screen(app, 80, 24));
    insta::assert_snapshot!(format!("{name}_160x50"), screen(app, 160, 50));
}

#[test]
fn vm_list_with_every_state_and_the_detail_pane() {
    let mut app = many_vms_app(COLOR);
    // A stop in flight shows a spinner on its row and in the status line.
    for _ in 0..4 {
        press(&mut app, KeyCode::Char('j'));
    }
    assert_eq!(app.selected_vm().map(|vm| vm.name.as_str()), Some("dev"));
    press(&mut app, KeyCode::Char('x'));
    press(&mut app, KeyCode::Char('y'));
    press(&mut app, KeyCode::Home);
    snapshot("vm_list", &app);
}

#[test]
fn empty_vm_list() {
    snapshot("empty", &empty_app(COLOR));
}

#[test]
fn detail_view() {
    let mut app = one_vm_app(COLOR);
    press(&mut app, KeyCode::Enter);
    // The detail's own re-read answers like the first one did.
    let _ = app.apply(DaemonUpdate::Ports(name("dev"), Ok(ports("dev"))));
    let _ = app.apply(DaemonUpdate::Sessions(
        name("dev"),
        Ok(vec![session(
            "dev",
            "agent",
            banger_api::sessions::SessionState::Running,
            true,
        )]),
    ));
    snapshot("detail", &app);
}

#[test]
fn create_form() {
    let mut app = many_vms_app(COLOR);
    press(&mut app, KeyCode::Char('c'));
    type_text(&mut app, "scratch");
    press(&mut app, KeyCode::Tab);
    press(&mut app, KeyCode::Right);
    press(&mut app, KeyCode::Tab);
    type_text(&mut app, "4");
    press(&mut app, KeyCode::Tab);
    type_text(&mut app, "4G");
    snapshot("create_form", &app);
    // A bad value is refused in the form, naming the field.
    press(&mut app, KeyCode::Tab);
    type_text(&mut app, "lots");
    press(&mut app, KeyCode::Enter);
    snapshot("create_form_error", &app);
}

#[test]
fn create_progress() {
    let mut app = empty_app(COLOR);
    press(&mut app, KeyCode::Char('c'));
    type_text(&mut app, "scratch");
    let commands = app.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    let id = match commands.as_slice() {
        [banger_tui::Command::Request(banger_tui::Request::Create { id, request })] => {
            assert_eq!(request.name, Some(name("scratch")));
            *id
        }
        other => panic!("expected one create request, got {other:?}"),
    };
    let _ = app.apply(DaemonUpdate::Progress {
        id,
        progress: Progress {
            stage: "disk".into(),
            message: "cloning the work disk".into(),
            fraction: Some(0.42),
        },
    });
    snapshot("create_progress", &app);
    let _ = app.apply(DaemonUpdate::Created {
        id,
        result: Ok(vm("scratch", VmState::Running, 9)),
    });
    assert_eq!(app.dialog, None);
    assert_eq!(
        app.selected_vm().map(|vm| vm.name.as_str()),
        Some("scratch")
    );
}

#[test]
fn fork_form_progress_and_result() {
    let mut app = many_vms_app(COLOR);
    press(&mut app, KeyCode::Char('f'));
    assert!(matches!(app.dialog, Some(Dialog::Fork(_))));
    press(&mut app, KeyCode::Tab);
    press(&mut app, KeyCode::Right);
    press(&mut app, KeyCode::Right);
    insta::assert_snapshot!("fork_form_80x24", screen(&app, 80, 24));
    let commands = app.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    let id = match commands.as_slice() {
        [
            banger_tui::Command::Request(banger_tui::Request::Fork {
                id,
                source,
                request,
            }),
        ] => {
            assert_eq!(source, &name("api-server"));
            assert_eq!(request.name, name("api-server-copy"));
            assert_eq!(request.count, Some(3));
            *id
        }
        other => panic!("expected one fork request, got {other:?}"),
    };
    assert!(matches!(app.dialog, Some(Dialog::Progress(_))));
    let _ = app.apply(DaemonUpdate::Progress {
        id,
        progress: Progress {
            stage: "fork".into(),
            message: "waiting for SSH on api-server-copy-2".into(),
            fraction: None,
        },
    });
    let progress = screen(&app, 80, 24);
    assert!(
        progress.contains("forking api-server into api-server-copy-1…api-server-copy-3"),
        "{progress}"
    );
    assert!(progress.contains("the fork goes on"), "{progress}");
    // Another action on the source waits for the fork.
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::Char('p'));
    assert!(app.status.as_ref().is_some_and(|status| status.error));
    let _ = app.apply(DaemonUpdate::Forked {
        id,
        result: Ok((1..=3)
            .map(|index| {
                vm(
                    &format!("api-server-copy-{index}"),
                    VmState::Running,
                    20 + index,
                )
            })
            .collect()),
    });
    assert_eq!(app.dialog, None);
    assert!(app.pending.is_empty());
    assert_eq!(
        app.selected_vm().map(|vm| vm.name.as_str()),
        Some("api-server-copy-1")
    );
    let status = app.status.clone().expect("a status");
    assert!(!status.error);
    assert!(status.text.contains("api-server-copy-3"), "{}", status.text);

    // A refused fork (a stopped VM cannot be) and a failed one: status line.
    press(&mut app, KeyCode::End);
    press(&mut app, KeyCode::Char('k'));
    assert_eq!(
        app.selected_vm().map(|vm| vm.state),
        Some(VmState::Stopping)
    );
    press(&mut app, KeyCode::Char('f'));
    assert_eq!(app.dialog, None);
    assert!(app.status.as_ref().is_some_and(|status| status.error));
    press(&mut app, KeyCode::Home);
    press(&mut app, KeyCode::Char('f'));
    let commands = app.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    let [banger_tui::Command::Request(banger_tui::Request::Fork { id, .. })] = commands.as_slice()
    else {
        panic!("expected a fork, got {commands:?}");
    };
    let _ = app.apply(DaemonUpdate::Forked {
        id: *id,
        result: Err("VM api-server-copy exists already".into()),
    });
    let status = app.status.clone().expect("a status");
    assert!(status.error);
    assert_eq!(
        status.text,
        "fork api-server: VM api-server-copy exists already"
    );
}

#[test]
fn confirm_dialog() {
    let mut app = many_vms_app(COLOR);
    press(&mut app, KeyCode::Char('d'));
    assert!(matches!(app.dialog, Some(Dialog::Confirm(_))));
    snapshot("confirm_delete", &app);
}

#[test]
fn help() {
    let mut app = many_vms_app(COLOR);
    press(&mut app, KeyCode::Char('?'));
    snapshot("help", &app);
}

#[test]
fn images_and_kernels_tabs() {
    let mut app = many_vms_app(COLOR);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.tab, Tab::Images);
    snapshot("images", &app);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.tab, Tab::Kernels);
    snapshot("kernels", &app);
}

#[test]
fn error_in_the_status_line() {
    let mut app = many_vms_app(COLOR);
    // Starting a running VM is refused in the TUI.
    press(&mut app, KeyCode::Char('s'));
    assert!(app.status.as_ref().is_some_and(|status| status.error));
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Char('j'));
    // builder (stopped) is selected now; its start fails in the daemon.
    let commands = app.handle_key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::NONE));
    let id = match commands.as_slice() {
        [banger_tui::Command::Request(banger_tui::Request::Act { id, .. })] => *id,
        other => panic!("expected a start, got {other:?}"),
    };
    let _ = app.apply(DaemonUpdate::Acted {
        id,
        result: Err(
            "VM builder cannot start: no free address in 172.16.0.0/24 (every IP is taken)".into(),
        ),
    });
    let _ = app.apply(DaemonUpdate::EventsLost("cannot connect to bangerd".into()));
    snapshot("error_status", &app);
    let status = app.status.clone().expect("a status");
    assert!(status.error);
}

#[test]
fn console_and_sessions_views() {
    let mut app = one_vm_app(COLOR);
    press(&mut app, KeyCode::Char('l'));
    let _ = app.apply(DaemonUpdate::Console {
        vm: name("dev"),
        text: "[    0.000000] Linux version 6.1.0-37-cloud-amd64\r\n\u{1b}[32m[  OK  ]\u{1b}[0m Started ssh.service.\nDebian GNU/Linux 12 dev ttyS0\n\ndev login: ".into(),
    });
    snapshot("console", &app);
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::Char('a'));
    let _ = app.apply(DaemonUpdate::Sessions(
        name("dev"),
        Ok(vec![
            session(
                "dev",
                "agent",
                banger_api::sessions::SessionState::Running,
                true,
            ),
            session(
                "dev",
                "build",
                banger_api::sessions::SessionState::Exited,
                false,
            ),
        ]),
    ));
    snapshot("sessions", &app);
    // Enter attaches to the pipe session (the TUI runs `banger vm session attach`).
    let commands = app.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(
        commands,
        [banger_tui::Command::Exec(banger_tui::External::Attach {
            vm: name("dev"),
            session: banger_api::SessionName::parse("agent").expect("name"),
        })]
    );
    // A detached one cannot be attached; the status line says why.
    press(&mut app, KeyCode::Down);
    assert!(
        app.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE))
            .is_empty()
    );
    assert!(app.status.as_ref().is_some_and(|status| status.error));
}

#[test]
fn no_color_uses_no_colours() {
    let app = many_vms_app(Theme::new(false));
    insta::assert_snapshot!("no_color_80x24", screen(&app, 80, 24));
    for (width, height) in [(80, 24), (160, 50)] {
        let terminal = render(&app, width, height);
        for cell in terminal.backend().buffer().content() {
            assert_eq!(cell.fg, Color::Reset, "{cell:?}");
            assert_eq!(cell.bg, Color::Reset, "{cell:?}");
        }
    }
    // With colours, a running VM's state is green and an error red.
    let app = many_vms_app(COLOR);
    let terminal = render(&app, 160, 50);
    let buffer = terminal.backend().buffer();
    // (Rows other than the selected one, whose highlight sets its own colours.)
    let colour_of = |vm: &str, word: &str| {
        let text = text(buffer);
        let (row, line) = text
            .lines()
            .enumerate()
            .find(|(_, line)| {
                line.contains(&format!(" {vm} ")) && line.contains(&format!(" {word} "))
            })
            .expect("state shown");
        let column = line.find(&format!(" {word} ")).expect("column") + 1;
        let x = line[..column].chars().count() as u16;
        buffer[(x, row as u16)].fg
    };
    assert_eq!(colour_of("dev", "running"), Color::Green);
    assert_eq!(colour_of("ci-runner-with-a-long-name", "error"), Color::Red);
    assert_eq!(colour_of("parked", "paused"), Color::Cyan);
}
