//! Dialogs drawn over the screen: help, confirmation, the create and fork
//! forms and their progress.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Gauge, Paragraph, Row, Table, Wrap};

use super::{centered, spinner, styled};
use crate::app::{App, Confirm, CreateForm, Field, ForkField, ForkForm};
use crate::command::{OpId, VmAction};
use crate::text::sanitize;

/// Every key, as the help dialog lists it (docs/tui.md has the same list).
pub const KEYS: [(&str, &str); 19] = [
    ("? F1", "this help"),
    ("q Ctrl-C", "quit"),
    ("Tab ←→ 1 2 3", "switch tab: VMs, Images, Kernels"),
    ("↑↓ j k PgUp PgDn g G", "move (Home/End too)"),
    ("F5", "re-read everything"),
    ("Enter", "VM details (Enter/Esc back)"),
    ("c", "create a VM (a form, then live progress)"),
    ("s", "start (resumes a paused VM)"),
    ("x / r", "stop / restart (asks first)"),
    ("d Delete", "delete (asks first)"),
    ("p / u", "pause / resume"),
    ("f", "fork a running or paused VM (form, progress)"),
    ("e", "ssh shell; the TUI comes back when it ends"),
    ("l", "console log, following (Esc back)"),
    ("a", "sessions; Enter attaches (Ctrl-] detaches)"),
    ("Esc Backspace", "back, close, cancel"),
    ("form: Tab ↑↓", "next / previous field"),
    ("form: ←→ Space", "pick an image (fork: count) / toggle NAT"),
    ("confirm: y n", "yes / no (Enter: the focused button)"),
];

fn popup<'a>(frame: &mut Frame<'_>, app: &App, area: Rect, title: String) -> (Rect, Block<'a>) {
    frame.render_widget(Clear, area);
    let block = Block::bordered().title(Line::styled(title, app.theme.title()));
    (block.inner(area), block)
}

/// The keys.
pub fn help(frame: &mut Frame<'_>, app: &App, body: Rect) {
    let area = centered(body, 72, KEYS.len() as u16 + 2);
    let (_, block) = popup(frame, app, area, " Keys (any key closes) ".to_owned());
    let rows = KEYS
        .iter()
        .map(|(key, what)| Row::new([Span::styled(*key, app.theme.key()), Span::raw(*what)]));
    let table = Table::new(rows, [Constraint::Length(21), Constraint::Fill(1)]).block(block);
    frame.render_widget(table, area);
}

/// What a confirmed action will do.
fn consequence(app: &App, confirm: &Confirm) -> Vec<String> {
    let paused = app
        .vm(&confirm.vm)
        .is_some_and(|vm| vm.state == banger_api::vms::VmState::Paused);
    match confirm.action {
        VmAction::Stop if paused => {
            vec!["It is paused: its saved memory (running processes, /tmp) is discarded.".into()]
        }
        VmAction::Stop => vec!["The guest shuts down; its disks are kept.".into()],
        VmAction::Restart => vec!["The guest reboots; its processes end.".into()],
        VmAction::Delete { force } => {
            let mut lines = vec!["The VM and its disks (including /root) are deleted.".into()];
            if force {
                lines.push("It is running: it is stopped first.".into());
            }
            lines
        }
        VmAction::Start | VmAction::Pause | VmAction::Resume => Vec::new(),
    }
}

/// Yes or no.
pub fn confirm(frame: &mut Frame<'_>, app: &App, confirm: &Confirm, body: Rect) {
    let theme = app.theme;
    let area = centered(body, 62, 8);
    let verb = confirm.action.verb();
    let (inner, block) = popup(frame, app, area, format!(" {verb} {}? ", confirm.vm));
    frame.render_widget(block, area);
    let button = |label: &str, focused: bool| {
        let text = format!("[ {label} ]");
        if focused {
            Span::styled(text, theme.focus())
        } else {
            Span::raw(text)
        }
    };
    let mut lines: Vec<Line<'_>> = consequence(app, confirm)
        .into_iter()
        .map(Line::raw)
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::raw("  "),
        button("No", !confirm.yes_focused),
        Span::raw("   "),
        button(&format!("Yes, {verb}"), confirm.yes_focused),
        styled("   y / n", theme.dim()),
    ]));
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

/// The create form, with the cursor in the focused text field.
pub fn create(frame: &mut Frame<'_>, app: &App, form: &CreateForm, body: Rect) {
    let theme = app.theme;
    let area = centered(body, 60, Field::ALL.len() as u16 + 5);
    let (inner, block) = popup(frame, app, area, " Create a VM ".to_owned());
    frame.render_widget(block, area);
    let mut lines = Vec::new();
    let mut cursor = None;
    for (index, field) in Field::ALL.into_iter().enumerate() {
        let focused = index == form.focus;
        let label = field_label(app, field.label(), focused);
        let value = match form.text(field) {
            Some("") => {
                if focused {
                    cursor = Some((9, index));
                }
                Span::styled(field.placeholder(), theme.dim())
            }
            Some(text) => {
                let text = sanitize(text);
                if focused {
                    cursor = Some((9 + text.chars().count(), index));
                }
                if focused {
                    Span::styled(text, theme.focus())
                } else {
                    Span::raw(text)
                }
            }
            None => {
                let mark = if form.nat { "[x]" } else { "[ ]" };
                let text = format!("{mark} reach the outside world");
                if focused {
                    Span::styled(text, theme.focus())
                } else {
                    Span::raw(text)
                }
            }
        };
        lines.push(Line::from(vec![label, value]));
    }
    lines.push(Line::raw(""));
    match &form.error {
        Some(error) => lines.push(Line::styled(sanitize(error), theme.error())),
        None => lines.push(Line::styled(
            "Enter creates and starts it; empty fields take the defaults.",
            theme.dim(),
        )),
    }
    render_form(frame, inner, lines, cursor);
}

/// The fork form, with the cursor in the focused field and, below, the
/// names the fork will make.
pub fn fork(frame: &mut Frame<'_>, app: &App, form: &ForkForm, body: Rect) {
    let theme = app.theme;
    let area = centered(body, 60, ForkField::ALL.len() as u16 + 6);
    let (inner, block) = popup(frame, app, area, format!(" Fork {} ", form.source));
    frame.render_widget(block, area);
    let mut lines = Vec::new();
    let mut cursor = None;
    for (index, field) in ForkField::ALL.into_iter().enumerate() {
        let focused = index == form.focus;
        let label = field_label(app, field.label(), focused);
        let text = sanitize(form.text(field));
        if focused {
            cursor = Some((9 + text.chars().count(), index));
        }
        let mut spans = vec![
            label,
            if focused {
                Span::styled(text, theme.focus())
            } else {
                Span::raw(text)
            },
        ];
        if field == ForkField::Count {
            spans.push(styled(
                format!("  (1 to {})", banger_api::snapshots::MAX_FORK_COUNT),
                theme.dim(),
            ));
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::raw(""));
    match (&form.error, form.target()) {
        (Some(error), _) => lines.push(Line::styled(sanitize(error), theme.error())),
        (None, Some(target)) => lines.push(Line::styled(
            format!(
                "Enter makes {} from {}'s disks and memory; each gets its own address.",
                target.describe(),
                form.source
            ),
            theme.dim(),
        )),
        (None, None) => lines.push(Line::styled(
            "Enter forks it: copies of its disks and memory.",
            theme.dim(),
        )),
    }
    render_form(frame, inner, lines, cursor);
}

/// A create or fork in progress: stage, message and a bar when the daemon
/// knows the fraction.
pub fn progress(frame: &mut Frame<'_>, app: &App, id: OpId, body: Rect) {
    let theme = app.theme;
    let Some(pending) = app.pending(id) else {
        return;
    };
    let area = centered(body, 64, 7);
    let (inner, block) = popup(frame, app, area, format!(" {} ", pending.label()));
    frame.render_widget(block, area);
    let [message, bar, hint] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    let (stage, text, fraction) = match &pending.progress {
        Some(progress) => (
            sanitize(&progress.stage),
            sanitize(&progress.message),
            progress.fraction,
        ),
        None => ("request".to_owned(), "asking the daemon…".to_owned(), None),
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            styled(format!("{} {stage}: ", spinner(app)), theme.header()),
            Span::raw(text),
        ]))
        .wrap(Wrap { trim: false }),
        message,
    );
    let ratio = f64::from(fraction.unwrap_or(0.0).clamp(0.0, 1.0));
    let label = match fraction {
        Some(_) => format!("{:.0}%", ratio * 100.0),
        None => "working".to_owned(),
    };
    frame.render_widget(
        Gauge::default()
            .ratio(ratio)
            .label(label)
            .gauge_style(theme.gauge())
            .use_unicode(true),
        bar,
    );
    frame.render_widget(
        Paragraph::new(Line::styled(
            format!("Esc hides this; the {} goes on.", pending.noun()),
            theme.dim(),
        )),
        hint,
    );
}

/// A form field's label, right-aligned, highlighted when focused.
fn field_label(app: &App, label: &str, focused: bool) -> Span<'static> {
    let style = if focused {
        app.theme.title()
    } else {
        app.theme.header()
    };
    Span::styled(format!("{label:>7} "), style)
}

/// Draws a form's lines in `inner` and puts the terminal cursor at the
/// focused field's `cursor` (column, row within `inner`) when it is inside.
fn render_form(frame: &mut Frame, inner: Rect, lines: Vec<Line>, cursor: Option<(usize, usize)>) {
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
    if let Some((x, y)) = cursor {
        let position = Position {
            x: inner.x.saturating_add(x as u16),
            y: inner.y.saturating_add(y as u16),
        };
        if inner.contains(position) {
            frame.set_cursor_position(position);
        }
    }
}
