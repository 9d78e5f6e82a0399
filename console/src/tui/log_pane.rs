//! The log pane (`l`, as k9s's): one machine's or application's log, followed as it grows,
//! scrolled with the usual keys, searched with `/` (a regex; `n`/`N` for the next or
//! previous match) and closed with `Esc`. This is its state; `log_follow.rs` feeds it and
//! `views/log.rs` draws it.

use regex::Regex;

use super::{
    app::{Action, App, Effect, Mode, Tab},
    ui,
};
use crate::log_follow::LogTarget;

/// Most lines the pane keeps (the oldest go first).
pub const MAX_LINES: usize = 20_000;

/// What the reading task tells the pane (`generation`: which pane it reads for, so that
/// what a closed pane's task still sends is dropped).
#[derive(Clone, Debug)]
pub struct LogMsg {
    pub generation: u64,
    pub event: LogEvent,
}

#[derive(Clone, Debug)]
pub enum LogEvent {
    /// Lines read through the peer `via`; `restarted`: the file was rotated or truncated.
    Lines {
        via: String,
        text: String,
        restarted: bool,
    },
    /// Reading failed; `last`: it will not be tried again (the log does not exist, ...).
    Problem { message: String, last: bool },
}

pub struct LogPane {
    pub target: LogTarget,
    pub generation: u64,
    pub lines: Vec<String>,
    /// Lines dropped from the front since the pane opened (to keep [`MAX_LINES`]).
    pub dropped: usize,
    /// Showing the end and moving with it (`G`); else `top` is the first line shown.
    pub following: bool,
    pub top: usize,
    /// The search being typed after `/`.
    pub typing: Option<String>,
    pub search: Option<Regex>,
    /// The line of the match last jumped to (`n`/`N` go on from it).
    pub current: Option<usize>,
    /// The peer the lines come through, and the last problem, for the title and status.
    pub via: Option<String>,
    pub problem: Option<String>,
}

impl LogPane {
    pub fn new(target: LogTarget, generation: u64) -> Self {
        Self {
            target,
            generation,
            lines: Vec::new(),
            dropped: 0,
            following: true,
            top: 0,
            typing: None,
            search: None,
            current: None,
            via: None,
            problem: None,
        }
    }

    pub fn apply(&mut self, event: LogEvent) {
        match event {
            LogEvent::Lines {
                via,
                text,
                restarted,
            } => {
                if restarted {
                    self.lines
                        .push("--- the log was rotated or truncated: from its start ---".into());
                }
                self.lines.extend(text.lines().map(str::to_owned));
                self.via = Some(via);
                self.problem = None;
                let over = self.lines.len().saturating_sub(MAX_LINES);
                if over > 0 {
                    self.lines.drain(..over);
                    self.dropped += over;
                    self.top = self.top.saturating_sub(over);
                    self.current = self.current.and_then(|c| c.checked_sub(over));
                }
            }
            LogEvent::Problem { message, last } => {
                let again = if last { "" } else { " (trying again)" };
                self.problem = Some(format!("{message}{again}"));
            }
        }
    }

    /// The first line to show in `height` rows.
    pub fn first_shown(&self, height: usize) -> usize {
        let last_top = self.lines.len().saturating_sub(height);
        if self.following {
            last_top
        } else {
            self.top.min(last_top)
        }
    }

    /// Scroll by `delta` lines in a pane of `height` rows; reaching the end follows again.
    pub fn scroll(&mut self, delta: isize, height: usize) {
        let last_top = self.lines.len().saturating_sub(height);
        let top = (self.first_shown(height) as isize + delta).clamp(0, last_top as isize);
        self.top = top as usize;
        self.following = self.top >= last_top;
    }

    pub fn follow(&mut self) {
        self.following = true;
    }

    /// Search for `text` (a regex, case-insensitive): the newest match is shown at the top.
    /// Errors: the regex's, last line.
    pub fn set_search(&mut self, text: &str) -> Result<(), String> {
        if text.is_empty() {
            self.search = None;
            self.current = None;
            return Ok(());
        }
        let re = Regex::new(&format!("(?i){text}"))
            .map_err(|e| e.to_string().lines().last().unwrap_or("").trim().to_owned())?;
        // The newest match first, as the pane shows the end.
        self.current = (0..self.lines.len())
            .rev()
            .find(|&i| re.is_match(&self.lines[i]));
        if let Some(i) = self.current {
            self.top = i;
            self.following = false;
        }
        self.search = Some(re);
        Ok(())
    }

    /// Show the next match after the current one (`forward`) or before it (from the first
    /// line shown when there is none), at the top; the message when there is none.
    pub fn next_match(&mut self, forward: bool, height: usize) -> Option<String> {
        let re = self.search.as_ref()?;
        let from = self
            .current
            .unwrap_or_else(|| self.first_shown(height))
            .min(self.lines.len());
        let found = if forward {
            (from + 1..self.lines.len()).find(|&i| re.is_match(&self.lines[i]))
        } else {
            (0..from).rev().find(|&i| re.is_match(&self.lines[i]))
        };
        match found {
            Some(i) => {
                self.top = i;
                self.current = Some(i);
                self.following = false;
                None
            }
            None => Some(format!(
                "no more matches of {}",
                re.as_str().trim_start_matches("(?i)")
            )),
        }
    }

    /// How many lines match the search.
    pub fn matches(&self) -> usize {
        self.search
            .as_ref()
            .map_or(0, |re| self.lines.iter().filter(|l| re.is_match(l)).count())
    }
}

/// The App's side of the pane: opening it on the selection, and the keys while it is open
/// (the normal keymap's actions, read as a pager reads them).
impl App {
    /// Rows of log text the pane shows (the table's page and the rows the pane does not
    /// spend on a table header).
    fn log_height(&self) -> usize {
        self.page + usize::from(ui::CHROME_ROWS - ui::LOG_CHROME_ROWS)
    }

    pub(super) fn open_log(&mut self, target: LogTarget) -> Option<Effect> {
        self.log_generation += 1;
        self.log = Some(LogPane::new(target.clone(), self.log_generation));
        self.mode = Mode::Log;
        self.message = None;
        Some(Effect::FollowLog(target, self.log_generation))
    }

    pub(super) fn open_log_on_selection(&mut self) -> Option<Effect> {
        let target = match self.tab {
            Tab::Apps => self.selected_app_machine(),
            _ => self.selected_row().map(|row| LogTarget {
                machine: row.machine.clone(),
                app: None,
            }),
        };
        match target {
            Some(target) => self.open_log(target),
            None => {
                self.message = Some(match self.tab {
                    Tab::Apps => "no application on any machine yet".into(),
                    _ => "select a machine (2) or an application (3) first".into(),
                });
                None
            }
        }
    }

    /// The selected application on the first machine where it is not running (what an
    /// operator opens a log for), else on the first machine that has it.
    fn selected_app_machine(&self) -> Option<LogTarget> {
        let name = &self.model.apps.get(self.app_selected)?.name;
        let having = self.model.rows.iter().filter_map(|row| {
            let status = row.record.as_ref()?.apps.iter().find(|a| a.name == *name)?;
            Some((row, status.state))
        });
        let mut first = None;
        for (row, state) in having {
            if state != smon_proto::AppState::Running {
                first = Some(row);
                break;
            }
            first = first.or(Some(row));
        }
        Some(LogTarget {
            machine: first?.machine.clone(),
            app: Some(name.clone()),
        })
    }

    pub(super) fn in_log(&mut self, action: Action) -> Option<Effect> {
        let height = self.log_height();
        let pane = self.log.as_mut()?;
        if let Some(text) = pane.typing.as_mut() {
            match action {
                Action::Input(c) => text.push(c),
                Action::Backspace => {
                    text.pop();
                }
                Action::Submit => {
                    let text = pane.typing.take().unwrap_or_default();
                    self.message = pane
                        .set_search(&text)
                        .err()
                        .map(|e| format!("bad search: {e}"));
                }
                Action::Cancel => pane.typing = None,
                Action::Quit => return Some(Effect::Quit),
                _ => {}
            }
            return None;
        }
        let page = height.max(1) as isize;
        match action {
            Action::Quit => return Some(Effect::Quit),
            Action::Cancel => {
                self.log = None;
                self.mode = Mode::Normal;
                self.message = None;
                return Some(Effect::StopLog);
            }
            Action::Up => pane.scroll(-1, height),
            Action::Down => pane.scroll(1, height),
            Action::PageUp => pane.scroll(-page, height),
            Action::PageDown => pane.scroll(page, height),
            Action::Top => pane.scroll(-(isize::MAX / 2), height),
            Action::Bottom => pane.follow(),
            Action::StartFilter => pane.typing = Some(String::new()),
            Action::NextMatch => self.message = pane.next_match(true, height),
            Action::PrevMatch => self.message = pane.next_match(false, height),
            Action::Help => self.mode = Mode::Help,
            _ => {}
        }
        None
    }
}
