//! The loop joining the terminal, the daemon layer and the app: keys and
//! resizes from a reader thread, updates from the daemon tasks, a tick for
//! spinners; after each, the app's commands are carried out and the screen
//! redrawn. Running `ssh` or `session attach` leaves the alternate screen,
//! hands the terminal to the program and takes it back when it ends.

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use banger_client::DaemonClient;
use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use crate::app::App;
use crate::command::{Command, DaemonUpdate, External};
use crate::daemon::DaemonLayer;
use crate::render::draw;
use crate::theme::Theme;

/// How often spinners move.
const TICK: Duration = Duration::from_millis(200);
/// How long the reader thread waits for input before checking for a pause.
const INPUT_POLL: Duration = Duration::from_millis(50);

/// What the TUI needs from its caller.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `banger` executable, run for `vm ssh` and `vm session attach`.
    pub banger: PathBuf,
}

/// Why the TUI stopped other than by the user quitting.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The terminal could not be set up, drawn or restored.
    #[error("cannot use the terminal")]
    Terminal(#[source] std::io::Error),
    /// Reading keys failed.
    #[error("cannot read from the terminal")]
    Input(#[source] std::io::Error),
}

/// What the reader thread sends.
enum Input {
    Event(Event),
    Failed(std::io::Error),
}

/// Orders for the reader thread.
enum Control {
    /// Stop reading (a program takes the terminal); answer when stopped.
    Pause(std_mpsc::Sender<()>),
    /// Read again.
    Resume,
}

/// Runs the TUI until the user quits.
pub async fn run(client: DaemonClient, options: Options) -> Result<(), RunError> {
    let mut terminal = ratatui::try_init().map_err(RunError::Terminal)?;
    let result = run_loop(&mut terminal, client, &options).await;
    let restored = ratatui::try_restore().map_err(RunError::Terminal);
    result.and(restored)
}

async fn run_loop(
    terminal: &mut DefaultTerminal,
    client: DaemonClient,
    options: &Options,
) -> Result<(), RunError> {
    let (input_tx, mut input_rx) = mpsc::unbounded_channel();
    let (control_tx, control_rx) = std_mpsc::channel();
    std::thread::spawn(move || read_input(&input_tx, &control_rx));
    let (update_tx, mut update_rx) = mpsc::unbounded_channel();
    let mut daemon = DaemonLayer::start(client, update_tx.clone());
    let mut app = App::new(Theme::from_env());
    let mut commands = app.start();
    let mut ticker = tokio::time::interval(TICK);
    loop {
        for command in std::mem::take(&mut commands) {
            match command {
                Command::Request(request) => daemon.execute(request),
                Command::Quit => return Ok(()),
                Command::Exec(what) => {
                    let result = run_external(
                        terminal,
                        &control_tx,
                        &mut update_rx,
                        &mut app,
                        &mut daemon,
                        options,
                        &what,
                    )
                    .await?;
                    commands.extend(app.apply(DaemonUpdate::ExternalDone { what, result }));
                }
            }
        }
        if !commands.is_empty() {
            continue;
        }
        terminal
            .draw(|frame| draw(frame, &app))
            .map_err(RunError::Terminal)?;
        tokio::select! {
            input = input_rx.recv() => match input {
                Some(Input::Event(Event::Key(key))) => commands = app.handle_key(key),
                // A resize (or anything else) only needs the redraw.
                Some(Input::Event(_)) => {}
                Some(Input::Failed(error)) => return Err(RunError::Input(error)),
                None => return Ok(()),
            },
            Some(update) = update_rx.recv() => commands = app.apply(update),
            _ = ticker.tick() => app.tick(),
        }
    }
}

/// Hands the terminal to `banger <what>` and takes it back. Daemon updates
/// keep being applied meanwhile (the screen is redrawn after).
async fn run_external(
    terminal: &mut DefaultTerminal,
    control: &std_mpsc::Sender<Control>,
    updates: &mut UnboundedReceiver<DaemonUpdate>,
    app: &mut App,
    daemon: &mut DaemonLayer,
    options: &Options,
    what: &External,
) -> Result<Result<i32, String>, RunError> {
    let (ack_tx, ack_rx) = std_mpsc::channel();
    if control.send(Control::Pause(ack_tx)).is_ok() {
        // The reader stops within one poll interval.
        let _ = ack_rx.recv_timeout(Duration::from_secs(2));
    }
    ratatui::try_restore().map_err(RunError::Terminal)?;
    let args = what.banger_args();
    eprintln!(
        "banger tui: running `banger {}`; the TUI comes back when it ends",
        args.join(" ")
    );
    let spawned = tokio::process::Command::new(&options.banger)
        .args(&args)
        .spawn();
    let result = match spawned {
        Ok(mut child) => loop {
            tokio::select! {
                status = child.wait() => break status
                    .map(|status| exit_code(&status))
                    .map_err(|error| format!("waiting for {}: {error}", options.banger.display())),
                Some(update) = updates.recv() => {
                    for command in app.apply(update) {
                        if let Command::Request(request) = command {
                            daemon.execute(request);
                        }
                    }
                }
            }
        },
        Err(error) => Err(format!("cannot run {}: {error}", options.banger.display())),
    };
    *terminal = ratatui::try_init().map_err(RunError::Terminal)?;
    terminal.clear().map_err(RunError::Terminal)?;
    let _ = control.send(Control::Resume);
    Ok(result)
}

/// A process's exit code, or 128 + the signal that ended it.
fn exit_code(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// The reader thread: terminal events to `events` until the app is gone;
/// pauses on request so a program run on the terminal gets all input.
fn read_input(events: &UnboundedSender<Input>, control: &std_mpsc::Receiver<Control>) {
    loop {
        match control.try_recv() {
            Ok(Control::Pause(ack)) => {
                let _ = ack.send(());
                loop {
                    match control.recv() {
                        Ok(Control::Resume) => break,
                        Ok(Control::Pause(ack)) => {
                            let _ = ack.send(());
                        }
                        Err(_) => return,
                    }
                }
            }
            Ok(Control::Resume) | Err(std_mpsc::TryRecvError::Empty) => {}
            Err(std_mpsc::TryRecvError::Disconnected) => return,
        }
        if events.is_closed() {
            return;
        }
        let input = match event::poll(INPUT_POLL) {
            Ok(false) => continue,
            Ok(true) => match event::read() {
                Ok(event) => Input::Event(event),
                Err(error) => Input::Failed(error),
            },
            Err(error) => Input::Failed(error),
        };
        let failed = matches!(input, Input::Failed(_));
        if events.send(input).is_err() || failed {
            return;
        }
    }
}
