//! Colours, or their absence: with `NO_COLOR` set (and not empty, as
//! <https://no-color.org> says) the TUI uses no colour at all, only bold,
//! reverse video and text, so every state still reads.

use banger_api::vms::VmState;
use ratatui::style::{Color, Modifier, Style};

/// How things look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    color: bool,
}

impl Theme {
    /// With colours, or without (`NO_COLOR`).
    pub const fn new(color: bool) -> Self {
        Self { color }
    }

    /// Colours unless the `NO_COLOR` environment variable is set to
    /// something.
    pub fn from_env() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        Self::new(!no_color)
    }

    /// Whether colours are used.
    pub fn has_color(self) -> bool {
        self.color
    }

    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    /// A VM state's cell.
    pub fn state(self, state: VmState) -> Style {
        match state {
            VmState::Running => self.fg(Color::Green).add_modifier(Modifier::BOLD),
            VmState::Starting | VmState::Stopping => self.fg(Color::Yellow),
            VmState::Paused => self.fg(Color::Cyan),
            VmState::Error => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            VmState::Created | VmState::Stopped => self.fg(Color::DarkGray),
        }
    }

    /// The selected row.
    pub fn selected(self) -> Style {
        if self.color {
            Style::new()
                .bg(Color::Blue)
                .fg(Color::White)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    /// Table headers and labels.
    pub fn header(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// The active tab and dialog titles.
    pub fn title(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    /// Errors.
    pub fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    /// Success and live things.
    pub fn good(self) -> Style {
        self.fg(Color::Green)
    }

    /// Secondary text (hints, placeholders).
    pub fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }

    /// A key in a hint.
    pub fn key(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    /// The progress bar's filled part.
    pub fn gauge(self) -> Style {
        if self.color {
            Style::new().fg(Color::Green).bg(Color::Black)
        } else {
            Style::new()
        }
    }

    /// The focused form field or button.
    pub fn focus(self) -> Style {
        self.selected()
    }
}
