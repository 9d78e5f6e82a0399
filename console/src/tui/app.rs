//! The TUI's one state and its one `update(Action)`: keys, data and results all arrive as
//! actions; what must happen outside (run a command, quit) comes back as an [`Effect`].

use regex::Regex;

use super::{
    log_pane::{LogMsg, LogPane},
    model::{DataMsg, Model, Row},
};
use crate::{
    cli::{Cli, Command, InTui},
    log_follow::LogTarget,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Machines,
    Apps,
    Overhead,
}

pub const TABS: [Tab; 4] = [Tab::Overview, Tab::Machines, Tab::Apps, Tab::Overhead];

impl Tab {
    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::Machines => "Machines",
            Tab::Apps => "Apps",
            Tab::Overhead => "Overhead",
        }
    }

    fn index(self) -> usize {
        TABS.iter().position(|t| *t == self).expect("listed")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Machine,
    State,
    Version,
    Overhead,
    Logins,
    Load,
}

pub const SORT_KEYS: [SortKey; 6] = [
    SortKey::Machine,
    SortKey::State,
    SortKey::Version,
    SortKey::Overhead,
    SortKey::Logins,
    SortKey::Load,
];

/// A change to the cluster waiting for the operator's yes.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub description: String,
    /// Batch-mode words: `smon-console -C DIR <args>`.
    pub args: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    Normal,
    Filter(String),
    Command(String),
    Confirm(Pending),
    Help,
    /// The log pane is open ([`App::log`]).
    Log,
}

#[derive(Clone, Debug)]
pub enum Action {
    Quit,
    NextTab,
    PrevTab,
    GoTab(usize),
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    SortNext,
    SortReverse,
    StartFilter,
    /// Open the command line with this text typed.
    StartCommand(&'static str),
    /// Open the command line with `app set` for the selected application (and machine).
    AppSet,
    Input(char),
    Backspace,
    Submit,
    Cancel,
    Freeze,
    Help,
    Disable,
    Enable,
    Yes,
    No,
    /// The rows the table area can show (from the last layout).
    PageSize(usize),
    Data(DataMsg),
    OpDone(Result<String, String>),
    /// Open the log pane on the selection: the selected machine's peer log (Machines tab),
    /// the selected application's log (Apps tab) on a machine where it is not running, or
    /// else on the first machine that has it.
    OpenLog,
    /// In the log pane: the next / previous match of the search.
    NextMatch,
    PrevMatch,
    Log(LogMsg),
}

impl From<DataMsg> for Action {
    fn from(msg: DataMsg) -> Self {
        Action::Data(msg)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Quit,
    Run(Vec<String>),
    /// Start reading this log for the pane of this generation (ending any other reader).
    FollowLog(LogTarget, u64),
    /// The pane closed: stop reading.
    StopLog,
}

pub struct App {
    pub model: Model,
    pub tab: Tab,
    pub mode: Mode,
    pub frozen: bool,
    held: Vec<DataMsg>,
    pub readonly: bool,
    /// Commands need a cluster directory (`-C`); with `--peer` the TUI only watches.
    pub can_run_commands: bool,
    pub sort: SortKey,
    pub descending: bool,
    pub filter: Option<Regex>,
    pub filter_text: String,
    /// Indices into `model.rows`, filtered and sorted: the table's rows.
    pub visible: Vec<usize>,
    visible_generation: Option<u64>,
    pub selected: usize,
    pub scroll: usize,
    pub page: usize,
    pub app_selected: usize,
    pub message: Option<String>,
    /// NO_COLOR (<https://no-color.org>): draw without colours; highlights keep their
    /// reverse and bold.
    pub no_color: bool,
    /// The open log pane, if any; `log_generation` numbers the panes opened.
    pub log: Option<LogPane>,
    pub(super) log_generation: u64,
}

impl App {
    pub fn new(model: Model, readonly: bool, can_run_commands: bool) -> Self {
        let mut app = Self {
            model,
            tab: Tab::Overview,
            mode: Mode::Normal,
            frozen: false,
            held: Vec::new(),
            readonly,
            can_run_commands,
            sort: SortKey::Machine,
            descending: false,
            filter: None,
            filter_text: String::new(),
            visible: Vec::new(),
            visible_generation: None,
            selected: 0,
            scroll: 0,
            page: 20,
            app_selected: 0,
            message: None,
            no_color: false,
            log: None,
            log_generation: 0,
        };
        app.refresh_visible();
        app
    }

    pub fn selected_row(&self) -> Option<&Row> {
        self.visible
            .get(self.selected)
            .map(|&i| &self.model.rows[i])
    }

    /// Re-filter and re-sort the table when the data, the filter or the order changed.
    pub fn refresh_visible(&mut self) {
        if self.visible_generation == Some(self.model.generation) {
            return;
        }
        let selected_name = self.selected_row().map(|r| r.name.clone());
        let rows = &self.model.rows;
        let mut visible: Vec<usize> = (0..rows.len())
            .filter(|&i| self.filter.as_ref().is_none_or(|re| matches(re, &rows[i])))
            .collect();
        let key = self.sort;
        visible.sort_by(|&a, &b| {
            let (a, b) = (&rows[a], &rows[b]);
            let ord = match key {
                SortKey::Machine => std::cmp::Ordering::Equal,
                SortKey::State => a.state_word().cmp(b.state_word()),
                SortKey::Version => a
                    .record
                    .as_ref()
                    .and_then(|r| r.peer_version)
                    .cmp(&b.record.as_ref().and_then(|r| r.peer_version)),
                SortKey::Overhead => field(a, |r| r.overhead).cmp(&field(b, |r| r.overhead)),
                SortKey::Logins => field(a, |r| r.logins).cmp(&field(b, |r| r.logins)),
                SortKey::Load => {
                    field(a, |r| u32::from(r.load)).cmp(&field(b, |r| u32::from(r.load)))
                }
            };
            ord.then_with(|| a.name.cmp(&b.name))
        });
        if self.descending {
            visible.reverse();
        }
        self.visible = visible;
        self.visible_generation = Some(self.model.generation);
        // Keep the same machine selected when it is still shown.
        self.selected = selected_name
            .and_then(|name| {
                self.visible
                    .iter()
                    .position(|&i| self.model.rows[i].name == name)
            })
            .unwrap_or(self.selected)
            .min(self.visible.len().saturating_sub(1));
        self.clamp_scroll();
    }

    fn invalidate(&mut self) {
        self.visible_generation = None;
        self.refresh_visible();
    }

    fn clamp_scroll(&mut self) {
        let page = self.page.max(1);
        if self.selected < self.scroll {
            self.scroll = self.selected;
        } else if self.selected >= self.scroll + page {
            self.scroll = self.selected + 1 - page;
        }
        self.scroll = self.scroll.min(self.visible.len().saturating_sub(page));
    }

    fn move_by(&mut self, delta: isize) {
        if self.tab == Tab::Apps {
            let n = self.model.apps.len();
            self.app_selected = (self.app_selected as isize + delta)
                .clamp(0, n.saturating_sub(1) as isize) as usize;
            return;
        }
        let last = self.visible.len().saturating_sub(1) as isize;
        self.selected = (self.selected as isize + delta).clamp(0, last.max(0)) as usize;
        self.clamp_scroll();
    }

    fn propose(&mut self, description: String, args: Vec<String>) {
        if self.readonly {
            self.message = Some("read-only: actions are off".into());
        } else if !self.can_run_commands {
            self.message = Some("actions need the cluster directory: start with -C DIR".into());
        } else {
            self.mode = Mode::Confirm(Pending { description, args });
        }
    }

    pub fn update(&mut self, action: Action) -> Option<Effect> {
        match (&mut self.mode, action) {
            // Data and results arrive in every mode.
            (_, Action::Data(msg)) => {
                if self.frozen {
                    self.held.push(msg);
                } else {
                    self.model.apply(msg);
                    self.refresh_visible();
                }
            }
            (_, Action::OpDone(result)) => {
                self.message = Some(match result {
                    Ok(text) => text,
                    Err(text) => format!("failed: {text}"),
                });
            }
            (_, Action::Log(msg)) => {
                if let Some(pane) = self.log.as_mut().filter(|p| p.generation == msg.generation) {
                    pane.apply(msg.event);
                }
            }
            (_, Action::PageSize(rows)) => {
                self.page = rows.max(1);
                self.clamp_scroll();
            }
            (Mode::Help, _) => {
                self.mode = match self.log {
                    Some(_) => Mode::Log,
                    None => Mode::Normal,
                }
            }
            (Mode::Confirm(pending), Action::Yes | Action::Submit) => {
                let args = pending.args.clone();
                self.message = Some(format!("running: {}", args.join(" ")));
                self.mode = Mode::Normal;
                return Some(Effect::Run(args));
            }
            (Mode::Confirm(_), Action::No | Action::Cancel | Action::Quit) => {
                self.mode = Mode::Normal;
                self.message = Some("cancelled".into());
            }
            (Mode::Confirm(_), _) => {}
            (Mode::Filter(text), Action::Input(c)) | (Mode::Command(text), Action::Input(c)) => {
                text.push(c)
            }
            (Mode::Filter(text), Action::Backspace) | (Mode::Command(text), Action::Backspace) => {
                text.pop();
            }
            (Mode::Filter(_) | Mode::Command(_), Action::Cancel) => self.mode = Mode::Normal,
            (Mode::Filter(text), Action::Submit) => {
                let text = text.clone();
                if text.is_empty() {
                    self.filter = None;
                    self.filter_text.clear();
                    self.mode = Mode::Normal;
                    self.invalidate();
                } else {
                    match Regex::new(&text) {
                        Ok(re) => {
                            self.filter = Some(re);
                            self.filter_text = text;
                            self.mode = Mode::Normal;
                            self.selected = 0;
                            self.invalidate();
                        }
                        Err(e) => {
                            self.message =
                                Some(format!("bad filter: {}", first_line(&e.to_string())))
                        }
                    }
                }
            }
            (Mode::Command(text), Action::Submit) => {
                let text = text.clone();
                self.mode = Mode::Normal;
                return self.command(&text);
            }
            (Mode::Filter(_) | Mode::Command(_), _) => {}
            (Mode::Log, action) => return self.in_log(action),
            (Mode::Normal, action) => return self.normal(action),
        }
        None
    }

    fn normal(&mut self, action: Action) -> Option<Effect> {
        match action {
            Action::Quit => return Some(Effect::Quit),
            Action::NextTab => self.tab = TABS[(self.tab.index() + 1) % TABS.len()],
            Action::PrevTab => self.tab = TABS[(self.tab.index() + TABS.len() - 1) % TABS.len()],
            Action::GoTab(i) => {
                if let Some(tab) = TABS.get(i) {
                    self.tab = *tab;
                }
            }
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-(self.page.max(1) as isize)),
            Action::PageDown => self.move_by(self.page.max(1) as isize),
            Action::Top => self.move_by(-(isize::MAX / 2)),
            Action::Bottom => self.move_by(isize::MAX / 2),
            Action::SortNext => {
                let i = SORT_KEYS
                    .iter()
                    .position(|k| *k == self.sort)
                    .expect("listed");
                self.sort = SORT_KEYS[(i + 1) % SORT_KEYS.len()];
                self.invalidate();
            }
            Action::SortReverse => {
                self.descending = !self.descending;
                self.invalidate();
            }
            Action::StartFilter => {
                self.tab = Tab::Machines;
                self.mode = Mode::Filter(self.filter_text.clone());
            }
            Action::StartCommand(prefill) => self.mode = Mode::Command(prefill.to_owned()),
            Action::Cancel => {
                if self.filter.is_some() {
                    self.filter = None;
                    self.filter_text.clear();
                    self.invalidate();
                }
                self.message = None;
            }
            Action::Freeze => {
                self.frozen = !self.frozen;
                if !self.frozen {
                    for msg in std::mem::take(&mut self.held) {
                        self.model.apply(msg);
                    }
                    self.refresh_visible();
                }
            }
            Action::Help => self.mode = Mode::Help,
            Action::Disable => return self.command("disable"),
            Action::Enable => return self.command("enable"),
            Action::AppSet => self.mode = Mode::Command(self.app_set_prefill()),
            Action::OpenLog => return self.open_log_on_selection(),
            _ => {}
        }
        None
    }

    /// A line typed after `:`: the words of a batch command, run after a confirmation that
    /// says what it will do ([`InTui`]).
    fn command(&mut self, text: &str) -> Option<Effect> {
        // Split as a shell would: quotes and backslashes keep a path with spaces one word.
        let Some(args) = shlex::split(text) else {
            self.message = Some(
                "unbalanced quote or trailing backslash: close the quote, or escape it as \\\" or \\'"
                    .into(),
            );
            return None;
        };
        if args.is_empty() {
            return None;
        }
        let words = std::iter::once("smon-console".to_string()).chain(args.iter().cloned());
        match Cli::try_parse_from_words(words) {
            Err(e) => self.message = Some(first_line(&e)),
            // `:logs MACHINE [APP]` opens the log pane.
            Ok(Cli {
                command: Command::Logs(args),
                ..
            }) => match LogTarget::new(args.machine, args.app) {
                Ok(target) => return self.open_log(target),
                Err(e) => self.message = Some(e.to_string()),
            },
            Ok(cli) => match cli.command.in_tui() {
                InTui::Confirm(description) => self.propose(description, args),
                InTui::ReadsOnly => {
                    self.message = Some(format!("`{text}` only reads: the views show it"))
                }
                InTui::NotHere => {
                    self.message = Some(format!("`{text}` does not run inside the TUI"))
                }
            },
        }
        None
    }

    /// `app set` prefilled from the selection: the app of the Apps tab, the machine of the
    /// Machines tab.
    fn app_set_prefill(&self) -> String {
        let name = self
            .model
            .apps
            .get(self.app_selected)
            .map_or("NAME".to_string(), |a| a.name.clone());
        match (self.tab, self.selected_row()) {
            (Tab::Machines, Some(row)) => format!("app set {name} online --machine {}", row.name),
            _ => format!("app set {name} online --all"),
        }
    }
}

fn field(row: &Row, f: impl Fn(&smon_proto::MachineRecord) -> u32) -> Option<u32> {
    row.record.as_ref().map(f)
}

fn matches(re: &Regex, row: &Row) -> bool {
    re.is_match(&row.name) || re.is_match(row.state_word()) || re.is_match(&row.version())
}

fn first_line(text: &str) -> String {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}
