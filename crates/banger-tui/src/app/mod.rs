//! The TUI's state machine. [`App::handle_key`] and [`App::apply`] are the
//! only ways it changes; both return the [`Command`]s to carry out. Nothing
//! here does IO or looks at a clock, so tests drive it key by key.

mod fork;
mod form;
mod keys;
mod update;

use std::collections::BTreeMap;

use banger_api::VmName;
use banger_api::images::ImageInfo;
use banger_api::kernels::KernelInfo;
use banger_api::operation::Progress;
use banger_api::sessions::SessionInfo;
use banger_api::vms::{VmInfo, VmPorts, VmState, VmStats};

pub use fork::{ForkField, ForkForm, ForkTarget};
pub use form::{CreateForm, Field};

use crate::command::{Command, Failure, OpId, Request, VmAction};
use crate::theme::Theme;

/// Most console lines kept in memory.
pub const CONSOLE_LINES: usize = 10_000;
/// Lines a PageUp/PageDown moves in views whose height the app does not know.
pub const PAGE: usize = 10;

/// The top-level tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// VMs, with their detail, console and sessions.
    Vms,
    /// Images.
    Images,
    /// Installed kernels.
    Kernels,
}

impl Tab {
    /// Every tab, left to right.
    pub const ALL: [Self; 3] = [Self::Vms, Self::Images, Self::Kernels];

    /// The tab's title.
    pub fn title(self) -> &'static str {
        match self {
            Self::Vms => "VMs",
            Self::Images => "Images",
            Self::Kernels => "Kernels",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Vms => 0,
            Self::Images => 1,
            Self::Kernels => 2,
        }
    }
}

/// What the VMs tab shows.
#[derive(Debug, Clone, PartialEq)]
pub enum View {
    /// The table (with the detail pane when there is room).
    List,
    /// One VM's details, full screen.
    Detail(VmName),
    /// A VM's serial console, following its end.
    Console(ConsoleView),
    /// A VM's sessions.
    Sessions {
        /// The VM.
        vm: VmName,
        /// The selected session.
        selected: Selection,
    },
}

/// The console being followed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConsoleView {
    /// The VM.
    pub vm: Option<VmName>,
    /// Complete lines (sanitised).
    pub lines: Vec<String>,
    /// The unfinished last line.
    pub partial: String,
    /// Lines scrolled back from the end; 0 follows new output.
    pub scroll_back: usize,
    /// Why the last read failed, if it did.
    pub error: Option<Failure>,
}

impl ConsoleView {
    fn new(vm: VmName) -> Self {
        Self {
            vm: Some(vm),
            ..Self::default()
        }
    }

    /// Appends console output.
    pub fn push(&mut self, text: &str) {
        self.error = None;
        let text = self.partial.clone() + &text.replace('\r', "");
        let mut pieces: Vec<&str> = text.split('\n').collect();
        let partial = pieces.pop().unwrap_or_default();
        let added = pieces.len();
        self.lines
            .extend(pieces.into_iter().map(crate::text::sanitize));
        self.partial = partial.to_owned();
        if self.scroll_back > 0 {
            // Keep the same lines on screen while new output arrives.
            self.scroll_back += added;
        }
        if self.lines.len() > CONSOLE_LINES {
            let excess = self.lines.len() - CONSOLE_LINES;
            self.lines.drain(..excess);
        }
        self.scroll_back = self.scroll_back.min(self.total());
    }

    /// Lines including the unfinished one.
    pub fn total(&self) -> usize {
        self.lines.len() + usize::from(!self.partial.is_empty())
    }
}

/// A modal dialog over the screen.
#[derive(Debug, Clone, PartialEq)]
pub enum Dialog {
    /// The keys.
    Help,
    /// Confirm a destructive action.
    Confirm(Confirm),
    /// The create form.
    Create(CreateForm),
    /// The fork form, for a running or paused VM.
    Fork(ForkForm),
    /// A create or fork in progress (the dialog can be closed; the
    /// operation goes on).
    Progress(OpId),
}

/// A destructive action waiting for a yes.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirm {
    /// The VM.
    pub vm: VmName,
    /// What to do to it.
    pub action: VmAction,
    /// Whether "yes" has the focus (it starts on "no").
    pub yes_focused: bool,
}

/// An action in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Its id.
    pub id: OpId,
    /// The VM it acts on (a create without a name has none yet; a fork's
    /// is its source).
    pub vm: Option<VmName>,
    /// What it is (`Some` for lifecycle actions, `None` for a create or a
    /// fork).
    pub action: Option<VmAction>,
    /// For a fork: the VMs it makes.
    pub fork: Option<ForkTarget>,
    /// The latest progress step.
    pub progress: Option<Progress>,
}

impl Pending {
    /// "stopping dev", "creating dev", "creating a VM", "forking dev into
    /// try".
    pub fn label(&self) -> String {
        if let (Some(target), Some(vm)) = (&self.fork, &self.vm) {
            return format!("forking {vm} into {}", target.describe());
        }
        match (&self.action, &self.vm) {
            (Some(action), Some(vm)) => format!("{} {vm}", action.doing()),
            (Some(action), None) => action.doing().to_owned(),
            (None, Some(vm)) => format!("creating {vm}"),
            (None, None) => "creating a VM".to_owned(),
        }
    }

    /// What goes on in the background when its progress dialog is hidden:
    /// "create", "fork", or the action's verb.
    pub fn noun(&self) -> &'static str {
        match (&self.fork, self.action) {
            (Some(_), _) => "fork",
            (None, Some(action)) => action.verb(),
            (None, None) => "create",
        }
    }
}

/// The line above the key hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The text.
    pub text: String,
    /// Whether it reports a failure.
    pub error: bool,
}

/// The event stream's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Not connected yet.
    Connecting,
    /// Events arrive.
    Live,
    /// The stream ended or failed; it is being retried.
    Lost(Failure),
}

/// A selected row index, kept valid for a list of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Selection {
    index: Option<usize>,
}

impl Selection {
    /// The selected index.
    pub fn index(self) -> Option<usize> {
        self.index
    }

    /// Selects `index`, clamped into a list of `len` rows.
    pub fn set(&mut self, index: usize, len: usize) {
        self.index = (len > 0).then(|| index.min(len - 1));
    }

    /// Keeps the selection inside `len` rows: none when empty, the first
    /// row when nothing was selected.
    pub fn fix(&mut self, len: usize) {
        self.set(self.index.unwrap_or(0), len);
    }

    /// Moves by `delta` rows, stopping at the ends.
    pub fn shift(&mut self, delta: isize, len: usize) {
        let current = self.index.unwrap_or(0) as isize;
        let target = (current + delta).clamp(0, len.saturating_sub(1) as isize);
        self.set(target as usize, len);
    }
}

/// What the detail pane knows about a VM beyond its record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VmDetail {
    /// Its sessions, when read.
    pub sessions: Option<Result<Vec<SessionInfo>, Failure>>,
    /// Its listening ports, when read.
    pub ports: Option<Result<VmPorts, Failure>>,
    /// A read is in flight.
    pub loading: bool,
}

/// Lists being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loading {
    /// The VM list.
    pub vms: bool,
    /// The images.
    pub images: bool,
    /// The kernels.
    pub kernels: bool,
}

/// The whole state of the TUI.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// Colours or not.
    pub theme: Theme,
    /// The active tab.
    pub tab: Tab,
    /// What the VMs tab shows.
    pub view: View,
    /// The open dialog.
    pub dialog: Option<Dialog>,
    /// VMs, sorted by name.
    pub vms: Vec<VmInfo>,
    /// Selected VM.
    pub vm_selection: Selection,
    /// Images, sorted by name.
    pub images: Vec<ImageInfo>,
    /// Selected image.
    pub image_selection: Selection,
    /// Installed kernels, sorted by name.
    pub kernels: Vec<KernelInfo>,
    /// Selected kernel.
    pub kernel_selection: Selection,
    /// The newest stats sample per VM.
    pub stats: BTreeMap<VmName, VmStats>,
    /// Sessions and ports per VM.
    pub details: BTreeMap<VmName, VmDetail>,
    /// Actions in flight, oldest first.
    pub pending: Vec<Pending>,
    /// The status line.
    pub status: Option<Status>,
    /// The event stream.
    pub link: Link,
    /// Lists being read.
    pub loading: Loading,
    /// Animation frame of spinners; advanced by [`App::tick`].
    pub frame: usize,
    /// The VM whose detail was last asked for.
    detail_for: Option<VmName>,
    next_op: u64,
}

impl App {
    /// An empty app; [`App::start`] says what to read first.
    pub fn new(theme: Theme) -> Self {
        Self {
            theme,
            tab: Tab::Vms,
            view: View::List,
            dialog: None,
            vms: Vec::new(),
            vm_selection: Selection::default(),
            images: Vec::new(),
            image_selection: Selection::default(),
            kernels: Vec::new(),
            kernel_selection: Selection::default(),
            stats: BTreeMap::new(),
            details: BTreeMap::new(),
            pending: Vec::new(),
            status: None,
            link: Link::Connecting,
            loading: Loading::default(),
            frame: 0,
            detail_for: None,
            next_op: 1,
        }
    }

    /// The first reads: every list.
    pub fn start(&mut self) -> Vec<Command> {
        self.refresh_all()
    }

    /// Advances spinners; called a few times a second by the runtime.
    pub fn tick(&mut self) {
        self.frame = self.frame.wrapping_add(1);
    }

    /// The selected VM.
    pub fn selected_vm(&self) -> Option<&VmInfo> {
        self.vm_selection
            .index()
            .and_then(|index| self.vms.get(index))
    }

    /// A VM by name.
    pub fn vm(&self, name: &VmName) -> Option<&VmInfo> {
        self.vms.iter().find(|vm| &vm.name == name)
    }

    /// The VM a view or the selection points at: the view's VM when a
    /// full-screen view is open, else the selected one.
    pub fn focused_vm(&self) -> Option<&VmInfo> {
        match &self.view {
            View::List => self.selected_vm(),
            View::Detail(vm) | View::Sessions { vm, .. } => self.vm(vm),
            View::Console(console) => console.vm.as_ref().and_then(|vm| self.vm(vm)),
        }
    }

    /// The pending action on a VM, if any.
    pub fn pending_on(&self, vm: &VmName) -> Option<&Pending> {
        self.pending
            .iter()
            .find(|pending| pending.vm.as_ref() == Some(vm))
    }

    /// The pending action with this id.
    pub fn pending(&self, id: OpId) -> Option<&Pending> {
        self.pending.iter().find(|pending| pending.id == id)
    }

    /// The stats sample to show for a VM: only while it runs.
    pub fn live_stats(&self, vm: &VmInfo) -> Option<&VmStats> {
        (vm.state == VmState::Running)
            .then(|| self.stats.get(&vm.name))
            .flatten()
    }

    /// Whether anything is being waited for (spinners show).
    pub fn busy(&self) -> bool {
        !self.pending.is_empty()
            || self.loading.vms
            || self.loading.images
            || self.loading.kernels
            || self.details.values().any(|detail| detail.loading)
    }

    /// Rows in the active tab's list.
    pub fn rows(&self) -> usize {
        match self.tab {
            Tab::Vms => self.vms.len(),
            Tab::Images => self.images.len(),
            Tab::Kernels => self.kernels.len(),
        }
    }

    /// The active tab's selection.
    pub fn selection(&self) -> Selection {
        match self.tab {
            Tab::Vms => self.vm_selection,
            Tab::Images => self.image_selection,
            Tab::Kernels => self.kernel_selection,
        }
    }

    fn selection_mut(&mut self) -> &mut Selection {
        match self.tab {
            Tab::Vms => &mut self.vm_selection,
            Tab::Images => &mut self.image_selection,
            Tab::Kernels => &mut self.kernel_selection,
        }
    }

    fn op_id(&mut self) -> OpId {
        let id = OpId(self.next_op);
        self.next_op += 1;
        id
    }

    fn info(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: false,
        });
    }

    fn error(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: true,
        });
    }

    fn refresh_all(&mut self) -> Vec<Command> {
        self.loading = Loading {
            vms: true,
            images: true,
            kernels: true,
        };
        let mut commands = vec![
            Command::Request(Request::Vms),
            Command::Request(Request::Images),
            Command::Request(Request::Kernels),
        ];
        if let Some(vm) = self.focused_vm().map(|vm| vm.name.clone()) {
            commands.push(self.request_detail(&vm));
        }
        commands
    }

    /// Asks for a VM's sessions (and ports and stats when it runs).
    fn request_detail(&mut self, name: &VmName) -> Command {
        let running = self.vm(name).is_some_and(|vm| vm.state == VmState::Running);
        self.details.entry(name.clone()).or_default().loading = true;
        self.detail_for = Some(name.clone());
        Command::Request(Request::Detail {
            vm: name.clone(),
            running,
        })
    }

    /// After anything that may change the selected VM: asks for its detail
    /// once per selection.
    fn follow_selection(&mut self, commands: &mut Vec<Command>) {
        if self.tab != Tab::Vms {
            return;
        }
        let selected = self.focused_vm().map(|vm| vm.name.clone());
        if selected != self.detail_for {
            match selected {
                Some(vm) => commands.push(self.request_detail(&vm)),
                None => self.detail_for = None,
            }
        }
    }

    /// Sessions of a VM as last read (empty when not read or failed).
    pub fn sessions_of(&self, vm: &VmName) -> &[SessionInfo] {
        self.details
            .get(vm)
            .and_then(|detail| detail.sessions.as_ref())
            .and_then(|sessions| sessions.as_ref().ok())
            .map_or(&[], Vec::as_slice)
    }

    /// Keeps every selection inside its list, after every key and update:
    /// whenever a list has rows, one is selected.
    fn normalize(&mut self) {
        self.vm_selection.fix(self.vms.len());
        self.image_selection.fix(self.images.len());
        self.kernel_selection.fix(self.kernels.len());
        if let View::Sessions { vm, selected } = &self.view {
            let mut selected = *selected;
            selected.fix(self.sessions_of(vm).len());
            if let View::Sessions { selected: slot, .. } = &mut self.view {
                *slot = selected;
            }
        }
    }

    /// Replaces the VM list, keeping the selected VM selected (or the row
    /// where it was, when it is gone).
    fn set_vms(&mut self, mut vms: Vec<VmInfo>) {
        vms.sort_by(|a, b| a.name.cmp(&b.name));
        let selected = self.selected_vm().map(|vm| vm.name.clone());
        let old_index = self.vm_selection.index();
        self.vms = vms;
        match selected.and_then(|name| self.vms.iter().position(|vm| vm.name == name)) {
            Some(index) => self.vm_selection.set(index, self.vms.len()),
            None => self
                .vm_selection
                .set(old_index.unwrap_or(0), self.vms.len()),
        }
        let names: Vec<VmName> = self.vms.iter().map(|vm| vm.name.clone()).collect();
        self.stats.retain(|name, _| names.contains(name));
        self.details.retain(|name, _| names.contains(name));
        self.leave_views_of_missing_vms();
    }

    fn upsert_vm(&mut self, vm: VmInfo) {
        let mut vms = self.vms.clone();
        match vms.iter_mut().find(|row| row.name == vm.name) {
            Some(row) => *row = vm,
            None => vms.push(vm),
        }
        self.set_vms(vms);
    }

    fn remove_vm(&mut self, name: &VmName) {
        let vms = self
            .vms
            .iter()
            .filter(|vm| &vm.name != name)
            .cloned()
            .collect();
        self.set_vms(vms);
    }

    fn select_vm(&mut self, name: &VmName) {
        if let Some(index) = self.vms.iter().position(|vm| &vm.name == name) {
            self.vm_selection.set(index, self.vms.len());
        }
    }

    /// A full-screen view of a VM that no longer exists goes back to the list.
    fn leave_views_of_missing_vms(&mut self) {
        let gone = match &self.view {
            View::List => None,
            View::Detail(vm) | View::Sessions { vm, .. } => Some(vm.clone()),
            View::Console(console) => console.vm.clone(),
        }
        .filter(|vm| self.vm(vm).is_none());
        if let Some(vm) = gone {
            self.view = View::List;
            self.info(format!("VM {vm} is gone"));
        }
        if let Some(Dialog::Confirm(Confirm { vm, .. }) | Dialog::Fork(ForkForm { source: vm, .. })) =
            &self.dialog
            && self.vm(vm).is_none()
        {
            self.dialog = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_stays_inside_the_list() {
        let mut selection = Selection::default();
        selection.fix(0);
        assert_eq!(selection.index(), None);
        selection.fix(3);
        assert_eq!(selection.index(), Some(0));
        selection.shift(10, 3);
        assert_eq!(selection.index(), Some(2));
        selection.shift(-10, 3);
        assert_eq!(selection.index(), Some(0));
        selection.set(7, 2);
        assert_eq!(selection.index(), Some(1));
        selection.fix(0);
        assert_eq!(selection.index(), None);
    }

    #[test]
    fn console_splits_lines_and_keeps_scroll_position() {
        let mut console = ConsoleView::new(VmName::parse("dev").expect("name"));
        console.push("one\r\ntw");
        assert_eq!(console.lines, ["one"]);
        assert_eq!(console.partial, "tw");
        console.push("o\nthree\n\u{1b}[1mbold");
        assert_eq!(console.lines, ["one", "two", "three"]);
        assert_eq!(console.partial, "\u{1b}[1mbold");
        console.scroll_back = 1;
        console.push("\nfour\n");
        assert_eq!(console.scroll_back, 3);
        assert_eq!(console.lines.last().map(String::as_str), Some("four"));
        assert_eq!(console.lines[3], "bold");
    }
}
