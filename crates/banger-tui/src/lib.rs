//! `banger tui`: a terminal UI on the daemon's API and its live event
//! stream.
//!
//! The pieces, from pure to effectful:
//!
//! - [`app`]: the state machine. [`App::handle_key`] and [`App::apply`]
//!   change the state and return [`Command`]s (daemon requests, a shell to
//!   run, quitting); nothing in it waits or does IO, so every screen, key
//!   and update is testable without a daemon or a terminal.
//! - [`render`]: [`draw`] paints an [`App`] into a ratatui frame.
//! - [`daemon`]: runs each [`Request`] in its own tokio task and sends the
//!   outcome back as a [`DaemonUpdate`]; follows the event stream and
//!   reconnects when it ends.
//! - [`runtime`]: the loop joining the terminal (crossterm), the daemon
//!   layer and the app, including leaving the screen for `ssh`.

pub mod app;
pub mod command;
pub mod daemon;
pub mod render;
pub mod runtime;
pub mod text;
pub mod theme;

pub use app::App;
pub use command::{Command, DaemonUpdate, External, OpId, Request, VmAction};
pub use render::draw;
pub use runtime::{RunError, run};
pub use theme::Theme;
