//! The VMs tab: the table, the detail pane and view, the console and the
//! sessions list.

use banger_api::VmName;
use banger_api::sessions::{SessionInfo, SessionState};
use banger_api::vms::{VmInfo, VmState};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap};

use super::{field, missing, spinner, styled};
use crate::app::{App, ConsoleView, Selection};
use crate::text::{bytes, mib, sanitize, uptime};

/// Height of the detail pane under the table.
const PANE_HEIGHT: u16 = 9;
/// Below this body height the list shows no detail pane (Enter opens it).
const PANE_MIN_BODY: u16 = 16;

/// The table, and under it the selected VM's detail when there is room.
pub fn list(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let (table_area, pane) = if area.height >= PANE_MIN_BODY {
        // The table as tall as its rows (header and borders: 3 more), the
        // pane takes the rest but at least PANE_HEIGHT.
        let rows = u16::try_from(app.vms.len()).unwrap_or(u16::MAX);
        let table_height = rows
            .saturating_add(3)
            .clamp(5, area.height.saturating_sub(PANE_HEIGHT));
        let [table, pane] =
            Layout::vertical([Constraint::Length(table_height), Constraint::Min(0)]).areas(area);
        (table, Some(pane))
    } else {
        (area, None)
    };
    table(frame, app, table_area);
    if let Some(pane) = pane {
        match app.selected_vm() {
            Some(vm) => {
                let block = Block::bordered()
                    .title(Line::styled(format!(" {} ", vm.name), app.theme.title()));
                let lines = summary_lines(app, vm);
                frame.render_widget(
                    Paragraph::new(lines)
                        .block(block)
                        .wrap(Wrap { trim: false }),
                    pane,
                );
            }
            None => {
                let text = if app.loading.vms {
                    "reading VMs…"
                } else {
                    "No VMs. Press c to create one."
                };
                frame.render_widget(
                    Paragraph::new(Line::styled(text, app.theme.dim())).block(Block::bordered()),
                    pane,
                );
            }
        }
    }
}

fn table(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let theme = app.theme;
    let header = Row::new([
        "NAME", "STATE", "IP", "IMAGE", "VCPU", "MEM", "CPU%", "MEM USE", "UPTIME",
    ])
    .style(theme.header());
    let rows = app.vms.iter().map(|vm| {
        let name = match app.pending_on(&vm.name) {
            Some(_) => format!("{} {}", spinner(app), vm.name),
            None => vm.name.to_string(),
        };
        let stats = app.live_stats(vm);
        let cpu = stats
            .and_then(|stats| stats.host.vmm_cpu_percent)
            .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.1}"));
        let guest = stats.and_then(|stats| stats.guest.as_ref());
        let memory_use = guest
            .map(|guest| {
                bytes(
                    guest
                        .mem_total_bytes
                        .saturating_sub(guest.mem_available_bytes),
                )
            })
            .or_else(|| stats.and_then(|stats| stats.host.vmm_rss_bytes).map(bytes))
            .unwrap_or_else(|| "-".to_owned());
        let up = guest.map_or_else(|| "-".to_owned(), |guest| uptime(guest.uptime_secs));
        Row::new([
            Cell::from(name),
            Cell::from(vm.state.as_str()).style(theme.state(vm.state)),
            Cell::from(vm.ip.to_string()),
            Cell::from(image_name(vm)),
            Cell::from(vm.vcpus.to_string()),
            Cell::from(mib(vm.memory_mib)),
            Cell::from(cpu),
            Cell::from(memory_use),
            Cell::from(up),
        ])
    });
    let widths = [
        Constraint::Fill(1),
        Constraint::Length(8),
        Constraint::Length(12),
        Constraint::Fill(1),
        Constraint::Length(4),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(6),
    ];
    let loading = if app.loading.vms {
        format!(" {}", spinner(app))
    } else {
        String::new()
    };
    let title = format!(" VMs ({}){loading} ", app.vms.len());
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .block(Block::bordered().title(Line::styled(title, theme.title())))
        .row_highlight_style(theme.selected())
        .highlight_symbol("▶ ");
    let mut state = TableState::default().with_selected(app.vm_selection.index());
    frame.render_stateful_widget(table, area, &mut state);
}

/// The VM's image, or `(deleted)` after a forced image delete.
fn image_name(vm: &VmInfo) -> String {
    vm.image
        .as_ref()
        .map_or_else(|| "(deleted)".to_owned(), ToString::to_string)
}

/// The detail pane: state, ports, sessions, disks, resource use.
fn summary_lines(app: &App, vm: &VmInfo) -> Vec<Line<'static>> {
    let theme = app.theme;
    let mut lines = Vec::new();
    let mut first = field(
        app,
        "state",
        styled(vm.state.as_str(), theme.state(vm.state)),
    );
    first.push(Span::raw(format!(
        " · {} · {} vCPU · {} · disk {} · NAT {}",
        vm.backend
            .map_or("no backend yet", |backend| backend.as_str()),
        vm.vcpus,
        mib(vm.memory_mib),
        bytes(vm.disk_bytes),
        if vm.nat { "on" } else { "off" },
    )));
    if let Some(pid) = vm.pid {
        first.push(Span::raw(format!(" · pid {pid}")));
    }
    lines.push(Line::from(first));
    lines.push(Line::from(field(
        app,
        "ssh",
        format!("banger vm ssh {} (e) · {} · {}.vm", vm.name, vm.ip, vm.name),
    )));
    lines.push(Line::from(ports_spans(app, vm)));
    lines.push(Line::from(sessions_spans(app, vm)));
    lines.push(Line::from(disk_spans(app, vm)));
    lines.push(Line::from(usage_spans(app, vm)));
    if let Some(error) = &vm.last_error {
        lines.push(Line::from(field(
            app,
            "last error",
            styled(sanitize(error), theme.error()),
        )));
    }
    lines
}

fn detail_state<'a>(app: &'a App, vm: &VmInfo) -> Option<&'a crate::app::VmDetail> {
    app.details.get(&vm.name)
}

fn ports_spans(app: &App, vm: &VmInfo) -> Vec<Span<'static>> {
    let theme = app.theme;
    let value: Vec<Span<'static>> = if vm.state != VmState::Running {
        vec![styled("(while running)", theme.dim())]
    } else {
        match detail_state(app, vm).and_then(|detail| detail.ports.as_ref()) {
            None => vec![styled(format!("{} reading…", spinner(app)), theme.dim())],
            Some(Err(error)) => vec![styled(sanitize(error), theme.error())],
            Some(Ok(ports)) if ports.ports.is_empty() => vec![styled("none", theme.dim())],
            Some(Ok(ports)) => {
                let shown: Vec<String> = ports
                    .ports
                    .iter()
                    .map(|port| match (&port.url, port.reachable) {
                        (Some(url), true) => sanitize(url),
                        (_, true) => sanitize(&port.endpoint),
                        (_, false) => format!("{} (guest-only)", sanitize(&port.endpoint)),
                    })
                    .collect();
                vec![Span::raw(shown.join("  "))]
            }
        }
    };
    let mut spans = field(app, "ports", "");
    spans.pop();
    spans.extend(value);
    spans
}

/// How a session is: `running`, `exited 0`, `killed by signal 9`, `lost`.
fn session_how(session: &SessionInfo) -> String {
    match (session.state, session.exit_code, session.signal) {
        (SessionState::Exited, Some(code), _) => format!("exited {code}"),
        (SessionState::Exited, None, Some(signal)) => format!("killed by signal {signal}"),
        (state, _, _) => state.to_string(),
    }
}

fn session_label(session: &SessionInfo) -> String {
    format!(
        "{} ({}, {})",
        session.name,
        session_how(session),
        session.stdin_mode.as_str()
    )
}

fn sessions_spans(app: &App, vm: &VmInfo) -> Vec<Span<'static>> {
    let theme = app.theme;
    let value = match detail_state(app, vm).and_then(|detail| detail.sessions.as_ref()) {
        None => styled(format!("{} reading…", spinner(app)), theme.dim()),
        Some(Err(error)) => styled(sanitize(error), theme.error()),
        Some(Ok(sessions)) if sessions.is_empty() => styled("none", theme.dim()),
        Some(Ok(sessions)) => Span::raw(format!(
            "{} (a)",
            sessions
                .iter()
                .map(session_label)
                .collect::<Vec<_>>()
                .join(" · ")
        )),
    };
    field(app, "sessions", value)
}

fn disk_spans(app: &App, vm: &VmInfo) -> Vec<Span<'static>> {
    let stats = app.stats.get(&vm.name);
    let guest = app.live_stats(vm).and_then(|stats| stats.guest.as_ref());
    let usage = |used: Option<u64>, total: Option<u64>| match (used, total) {
        (Some(used), Some(total)) => format!(", guest {} of {}", bytes(used), bytes(total)),
        _ => String::new(),
    };
    let text = match stats {
        Some(stats) => format!(
            "work {} (host {}{}) · overlay host {}{}",
            bytes(vm.disk_bytes),
            bytes(stats.host.work_allocated_bytes),
            usage(
                guest.and_then(|guest| guest.work_used_bytes),
                guest.and_then(|guest| guest.work_total_bytes)
            ),
            bytes(stats.host.overlay_allocated_bytes),
            usage(
                guest.and_then(|guest| guest.root_used_bytes),
                guest.and_then(|guest| guest.root_total_bytes)
            ),
        ),
        None => format!("work {} · host usage once sampled", bytes(vm.disk_bytes)),
    };
    field(app, "disks", text)
}

fn usage_spans(app: &App, vm: &VmInfo) -> Vec<Span<'static>> {
    let Some(stats) = app.live_stats(vm) else {
        let mut spans = field(app, "use", "");
        spans.pop();
        spans.push(missing(app));
        return spans;
    };
    let mut parts = Vec::new();
    if let Some(cpu) = stats.host.vmm_cpu_percent {
        parts.push(format!("cpu {cpu:.1}%"));
    }
    if let Some(guest) = &stats.guest {
        parts.push(format!(
            "memory {} of {}",
            bytes(
                guest
                    .mem_total_bytes
                    .saturating_sub(guest.mem_available_bytes)
            ),
            bytes(guest.mem_total_bytes)
        ));
        parts.push(format!(
            "load {:.2} {:.2} {:.2}",
            guest.load[0], guest.load[1], guest.load[2]
        ));
        parts.push(format!("up {}", uptime(guest.uptime_secs)));
    } else if let Some(rss) = stats.host.vmm_rss_bytes {
        parts.push(format!("vmm rss {}", bytes(rss)));
    }
    if let Some(error) = &stats.guest_error {
        parts.push(format!("agent: {}", sanitize(error)));
    }
    field(app, "use", parts.join(" · "))
}

/// One VM, full screen: its record, then the pane's lines, then ports and
/// sessions one per line.
pub fn detail_view(frame: &mut Frame<'_>, app: &App, name: &VmName, area: Rect) {
    let Some(vm) = app.vm(name) else {
        return;
    };
    let theme = app.theme;
    let optional = |value: Option<String>| value.map_or_else(|| missing(app), Span::raw);
    let mut lines = vec![
        Line::from(field(app, "image", image_name(vm))),
        Line::from(field(
            app,
            "ip",
            format!("{} · mac {} · vsock cid {}", vm.ip, vm.mac, vm.vsock_cid),
        )),
        Line::from(field(app, "tap", optional(vm.tap.clone()))),
        Line::from(field(app, "dir", sanitize(&vm.dir))),
        Line::from(field(app, "console", sanitize(&vm.console_log))),
    ];
    if let Some(saved) = vm.saved_memory_bytes {
        lines.push(Line::from(field(app, "saved memory", bytes(saved))));
    }
    lines.extend(summary_lines(app, vm));
    if let Some(Ok(ports)) = detail_state(app, vm).and_then(|detail| detail.ports.as_ref()) {
        lines.push(Line::styled("Ports", theme.title()));
        for port in &ports.ports {
            let process = port
                .guest_process
                .as_ref()
                .map(|process| format!(" · {} [{}] (reported)", process.command, process.pid))
                .unwrap_or_default();
            lines.push(Line::raw(sanitize(&format!(
                "  {} {}{}{}{}",
                port.protocol,
                port.endpoint,
                if port.reachable { "" } else { " (guest-only)" },
                port.url
                    .as_ref()
                    .map(|url| format!(" · {url}"))
                    .unwrap_or_default(),
                process
            ))));
        }
    }
    if let Some(Ok(sessions)) = detail_state(app, vm).and_then(|detail| detail.sessions.as_ref()) {
        lines.push(Line::styled("Sessions", theme.title()));
        for session in sessions {
            lines.push(Line::raw(sanitize(&format!(
                "  {} · {}",
                session_label(session),
                session.command.join(" ")
            ))));
        }
    }
    let block = Block::bordered().title(Line::styled(
        format!(" {} · details (Esc back) ", vm.name),
        theme.title(),
    ));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// The followed console.
pub fn console(frame: &mut Frame<'_>, app: &App, console: &ConsoleView, area: Rect) {
    let theme = app.theme;
    let name = console
        .vm
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let where_ = if console.scroll_back == 0 {
        "following".to_owned()
    } else {
        format!("{} lines back, End follows", console.scroll_back)
    };
    let block = Block::bordered().title(Line::styled(
        format!(" console: {name} ({where_}) "),
        theme.title(),
    ));
    let inner = block.inner(area);
    let height = usize::from(inner.height);
    let partial = sanitize(&console.partial);
    let all: Vec<&str> = console
        .lines
        .iter()
        .map(String::as_str)
        .chain((!partial.is_empty()).then_some(partial.as_str()))
        .collect();
    let end = all.len().saturating_sub(console.scroll_back);
    let start = end.saturating_sub(height);
    let mut lines: Vec<Line<'_>> = all[start..end]
        .iter()
        .map(|line| Line::raw(*line))
        .collect();
    if lines.is_empty() {
        lines.push(Line::styled(
            format!("{} waiting for console output…", spinner(app)),
            theme.dim(),
        ));
    }
    if let Some(error) = &console.error {
        lines.push(Line::styled(sanitize(error), theme.error()));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// A VM's sessions.
pub fn sessions(frame: &mut Frame<'_>, app: &App, name: &VmName, selected: Selection, area: Rect) {
    let theme = app.theme;
    let detail = app.details.get(name);
    let block = Block::bordered().title(Line::styled(
        format!(" {name} · sessions (Enter attaches, Esc back) "),
        theme.title(),
    ));
    let sessions = match detail.and_then(|detail| detail.sessions.as_ref()) {
        None => {
            frame.render_widget(
                Paragraph::new(Line::styled(
                    format!("{} reading sessions…", spinner(app)),
                    theme.dim(),
                ))
                .block(block),
                area,
            );
            return;
        }
        Some(Err(error)) => {
            frame.render_widget(
                Paragraph::new(Line::styled(sanitize(error), theme.error()))
                    .block(block)
                    .wrap(Wrap { trim: false }),
                area,
            );
            return;
        }
        Some(Ok(sessions)) => sessions,
    };
    if sessions.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled(
                "No sessions. Start one with `banger vm session start`.",
                theme.dim(),
            ))
            .block(block),
            area,
        );
        return;
    }
    let header = Row::new(["NAME", "STATE", "STDIN", "ATTACHED", "COMMAND"]).style(theme.header());
    let rows = sessions.iter().map(|session| {
        Row::new([
            session.name.to_string(),
            session_how(session),
            session.stdin_mode.as_str().to_owned(),
            if session.attached { "yes" } else { "no" }.to_owned(),
            sanitize(&session.command.join(" ")),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(18),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Fill(3),
        ],
    )
    .header(header)
    .block(block)
    .row_highlight_style(theme.selected())
    .highlight_symbol("▶ ");
    let mut fixed = selected;
    fixed.fix(sessions.len());
    let mut state = TableState::default().with_selected(fixed.index());
    frame.render_stateful_widget(table, area, &mut state);
}
