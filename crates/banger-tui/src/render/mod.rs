//! Drawing: [`draw`] paints an [`App`] into a frame of any size. Every area
//! is derived from the frame's, so nothing is drawn outside it, however
//! small the terminal.

mod dialogs;
mod lists;
mod vms;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::{App, Dialog, Link, Tab, View};

/// Spinner frames, one per tick.
const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// The spinner's current frame.
fn spinner(app: &App) -> &'static str {
    SPINNER[app.frame % SPINNER.len()]
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    // A long message (a daemon error with its causes) gets up to three
    // rows rather than being cut.
    let status_line = status_line(app);
    let width = usize::from(frame.area().width.max(1));
    let status_rows = status_line.width().div_ceil(width).clamp(1, 3) as u16;
    let [top, body, status, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(status_rows),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_top(frame, app, top);
    match app.tab {
        Tab::Vms => match &app.view {
            View::List => vms::list(frame, app, body),
            View::Detail(vm) => vms::detail_view(frame, app, vm, body),
            View::Console(console) => vms::console(frame, app, console, body),
            View::Sessions { vm, selected } => vms::sessions(frame, app, vm, *selected, body),
        },
        Tab::Images => lists::images(frame, app, body),
        Tab::Kernels => lists::kernels(frame, app, body),
    }
    frame.render_widget(
        Paragraph::new(status_line).wrap(ratatui::widgets::Wrap { trim: false }),
        status,
    );
    draw_hints(frame, app, hints);
    if let Some(dialog) = &app.dialog {
        match dialog {
            Dialog::Help => dialogs::help(frame, app, body),
            Dialog::Confirm(confirm) => dialogs::confirm(frame, app, confirm, body),
            Dialog::Create(form) => dialogs::create(frame, app, form, body),
            Dialog::Fork(form) => dialogs::fork(frame, app, form, body),
            Dialog::Progress(id) => dialogs::progress(frame, app, *id, body),
        }
    }
}

/// Tabs on the left, the event stream's state on the right.
fn draw_top(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let theme = app.theme;
    let mut spans = vec![Span::styled(" banger ", theme.title())];
    for (index, tab) in Tab::ALL.into_iter().enumerate() {
        let label = format!(" {} {} ", index + 1, tab.title());
        if tab == app.tab {
            spans.push(Span::styled(label, theme.selected()));
        } else {
            spans.push(Span::raw(label));
        }
    }
    let link = match &app.link {
        Link::Connecting => Span::styled("○ connecting ", theme.dim()),
        Link::Live => Span::styled("● live ", theme.good()),
        Link::Lost(_) => Span::styled("✗ events lost, retrying ", theme.error()),
    };
    let width = usize::from(area.width);
    let left: usize = spans.iter().map(Span::width).sum();
    let gap = width.saturating_sub(left + link.width());
    spans.push(Span::raw(" ".repeat(gap)));
    spans.push(link);
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Actions in flight with a spinner, then the last message.
fn status_line(app: &App) -> Line<'static> {
    let theme = app.theme;
    let mut spans = Vec::new();
    if !app.pending.is_empty() {
        let labels: Vec<String> = app
            .pending
            .iter()
            .map(|pending| match &pending.progress {
                Some(progress) => format!(
                    "{}: {}",
                    pending.label(),
                    crate::text::sanitize(&progress.message)
                ),
                None => pending.label(),
            })
            .collect();
        spans.push(Span::styled(
            format!("{} {}", spinner(app), labels.join(", ")),
            theme.title(),
        ));
    } else if app.loading.vms || app.loading.images || app.loading.kernels {
        spans.push(Span::styled(
            format!("{} loading", spinner(app)),
            theme.dim(),
        ));
    }
    if let Some(status) = &app.status {
        if !spans.is_empty() {
            spans.push(Span::raw(" │ "));
        }
        let text = crate::text::sanitize(&status.text);
        if status.error {
            spans.push(Span::styled(format!("error: {text}"), theme.error()));
        } else {
            spans.push(Span::styled(text, theme.good()));
        }
    } else if let (Link::Lost(error), true) = (&app.link, spans.is_empty()) {
        spans.push(Span::styled(
            format!("events: {}", crate::text::sanitize(error)),
            theme.error(),
        ));
    }
    Line::from(spans)
}

/// The most useful keys of the current screen.
fn draw_hints(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let hints: &[(&str, &str)] = match (&app.dialog, app.tab, &app.view) {
        (Some(Dialog::Help), _, _) => &[("any key", "close")],
        (Some(Dialog::Confirm(_)), _, _) => &[("y", "yes"), ("n/Esc", "no"), ("←→", "choose")],
        (Some(Dialog::Create(_)), _, _) => &[
            ("Enter", "create"),
            ("Tab/↑↓", "field"),
            ("←→", "image"),
            ("Space", "NAT"),
            ("Esc", "cancel"),
        ],
        (Some(Dialog::Fork(_)), _, _) => &[
            ("Enter", "fork"),
            ("Tab/↑↓", "field"),
            ("←→", "count"),
            ("Esc", "cancel"),
        ],
        (Some(Dialog::Progress(id)), _, _) => {
            if app
                .pending(*id)
                .is_some_and(|pending| pending.fork.is_some())
            {
                &[("Esc", "hide (the fork goes on)")]
            } else {
                &[("Esc", "hide (the create goes on)")]
            }
        }
        (None, Tab::Vms, View::List) => &[
            ("?", "help"),
            ("c", "create"),
            ("s", "start"),
            ("x", "stop"),
            ("r", "restart"),
            ("d", "delete"),
            ("e", "ssh"),
            ("l", "console"),
            ("a", "sessions"),
            ("p/u", "pause/resume"),
            ("q", "quit"),
        ],
        (None, Tab::Vms, View::Detail(_)) => &[
            ("Esc", "back"),
            ("?", "help"),
            ("s", "start"),
            ("x", "stop"),
            ("e", "ssh"),
            ("l", "console"),
            ("a", "sessions"),
        ],
        (None, Tab::Vms, View::Console(_)) => &[
            ("Esc", "back"),
            ("↑↓ PgUp PgDn", "scroll"),
            ("End", "follow"),
        ],
        (None, Tab::Vms, View::Sessions { .. }) => {
            &[("Esc", "back"), ("Enter", "attach"), ("F5", "refresh")]
        }
        (None, _, _) => &[
            ("?", "help"),
            ("Tab", "next tab"),
            ("↑↓", "move"),
            ("F5", "refresh"),
            ("q", "quit"),
        ],
    };
    let theme = app.theme;
    let mut spans = Vec::new();
    for (key, what) in hints {
        spans.push(Span::styled(format!(" {key}"), theme.key()));
        spans.push(Span::styled(format!(" {what} "), theme.dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A rectangle of at most `width` × `height` centred in `area`.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

/// A label and a value, the label in the header style.
fn field<'a>(app: &App, label: &'a str, value: impl Into<Span<'a>>) -> Vec<Span<'a>> {
    vec![
        Span::styled(format!("{label} "), app.theme.header()),
        value.into(),
    ]
}

/// A dimmed `-` for missing values.
fn missing(app: &App) -> Span<'static> {
    Span::styled("-", app.theme.dim())
}

/// Plain text in a style.
fn styled(text: impl Into<String>, style: Style) -> Span<'static> {
    Span::styled(text.into(), style)
}
