//! The images and kernels tabs.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table, TableState};

use super::spinner;
use crate::app::{App, Selection};
use crate::text::{bytes, sanitize};

/// Names joined with commas, or `-`.
fn names<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A list tab's table.
struct ListTable<'a> {
    title: &'a str,
    loading: bool,
    /// What shows when there are no rows.
    empty: &'a str,
    header: Row<'static>,
    rows: Vec<Row<'static>>,
    widths: &'a [Constraint],
    selection: Selection,
}

/// A titled table (or a hint when there are no rows).
fn draw_table(frame: &mut Frame<'_>, app: &App, area: Rect, spec: ListTable<'_>) {
    let ListTable {
        title,
        loading,
        empty,
        header,
        rows,
        widths,
        selection,
    } = spec;
    let theme = app.theme;
    let busy = if loading {
        format!(" {}", spinner(app))
    } else {
        String::new()
    };
    let block = Block::bordered().title(Line::styled(
        format!(" {title} ({}){busy} ", rows.len()),
        theme.title(),
    ));
    if rows.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled(empty.to_owned(), theme.dim())).block(block),
            area,
        );
        return;
    }
    let table = Table::new(rows, widths.to_vec())
        .header(header.style(theme.header()))
        .column_spacing(1)
        .block(block)
        .row_highlight_style(theme.selected())
        .highlight_symbol("▶ ");
    let mut state = TableState::default().with_selected(selection.index());
    frame.render_stateful_widget(table, area, &mut state);
}

/// The images tab.
pub fn images(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let rows = app
        .images
        .iter()
        .map(|image| {
            let kind = if image.oci.is_some() {
                "pulled"
            } else if image.provision.is_some() {
                "provisioned"
            } else if image.managed {
                "managed"
            } else {
                "unmanaged"
            };
            Row::new([
                image.name.to_string(),
                kind.to_owned(),
                image.kernel.to_string(),
                bytes(image.size_bytes),
                sanitize(&names(&image.used_by_vms)),
            ])
        })
        .collect();
    draw_table(
        frame,
        app,
        area,
        ListTable {
            title: "Images",
            loading: app.loading.images,
            empty: "No images yet: the first VM create builds the default one.",
            header: Row::new(["NAME", "KIND", "KERNEL", "SIZE", "USED BY"]),
            rows,
            widths: &[
                Constraint::Fill(2),
                Constraint::Length(11),
                Constraint::Fill(2),
                Constraint::Length(6),
                Constraint::Fill(2),
            ],
            selection: app.image_selection,
        },
    );
}

/// The kernels tab.
pub fn kernels(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let rows = app
        .kernels
        .iter()
        .map(|kernel| {
            Row::new([
                kernel.name.to_string(),
                sanitize(&kernel.version),
                sanitize(&kernel.source),
                bytes(kernel.size_bytes),
                names(&kernel.used_by_images),
            ])
        })
        .collect();
    draw_table(
        frame,
        app,
        area,
        ListTable {
            title: "Kernels",
            loading: app.loading.kernels,
            empty: "No kernels yet: the first image build pulls the default one.",
            header: Row::new(["NAME", "VERSION", "SOURCE", "SIZE", "USED BY"]),
            rows,
            widths: &[
                Constraint::Fill(2),
                Constraint::Fill(2),
                Constraint::Fill(2),
                Constraint::Length(6),
                Constraint::Fill(2),
            ],
            selection: app.kernel_selection,
        },
    );
}
