//! Keys to actions, per mode.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{Action, App, Mode, Tab};

pub fn action_for(app: &App, key: KeyEvent) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    match &app.mode {
        Mode::Help => Some(Action::Cancel),
        Mode::Confirm(_) => match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => Some(Action::Yes),
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => Some(Action::No),
            _ => None,
        },
        Mode::Filter(_) | Mode::Command(_) => match key.code {
            KeyCode::Enter => Some(Action::Submit),
            KeyCode::Esc => Some(Action::Cancel),
            KeyCode::Backspace => Some(Action::Backspace),
            KeyCode::Char(c) => Some(Action::Input(c)),
            _ => None,
        },
        Mode::Normal => Some(match key.code {
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Tab | KeyCode::Char(']') => Action::NextTab,
            KeyCode::BackTab | KeyCode::Char('[') => Action::PrevTab,
            KeyCode::Char(c @ '1'..='4') => Action::GoTab(c as usize - '1' as usize),
            KeyCode::Char('j') | KeyCode::Down => Action::Down,
            KeyCode::Char('k') | KeyCode::Up => Action::Up,
            KeyCode::Char('g') | KeyCode::Home => Action::Top,
            KeyCode::Char('G') | KeyCode::End => Action::Bottom,
            KeyCode::PageDown => Action::PageDown,
            KeyCode::PageUp => Action::PageUp,
            KeyCode::Char('s') => Action::SortNext,
            KeyCode::Char('S') => Action::SortReverse,
            KeyCode::Char('/') => Action::StartFilter,
            KeyCode::Char(':') => Action::StartCommand(String::new()),
            KeyCode::Char('f') => Action::Freeze,
            KeyCode::Char('?') => Action::Help,
            KeyCode::Char('d') => Action::Disable,
            KeyCode::Char('e') => Action::Enable,
            KeyCode::Char('u') => Action::StartCommand("upgrade ".into()),
            KeyCode::Char('m') => Action::StartCommand("membership set ".into()),
            KeyCode::Char('i') => Action::StartCommand("app install ".into()),
            KeyCode::Char('a') => Action::StartCommand(app_set_prefill(app)),
            KeyCode::Esc => Action::Cancel,
            _ => return None,
        }),
    }
}

/// `app set` prefilled from the selection: the app of the Apps tab, the machine of the
/// Machines tab.
fn app_set_prefill(app: &App) -> String {
    let name = app
        .model
        .apps
        .get(app.app_selected)
        .map_or("NAME".to_string(), |a| a.name.clone());
    match (app.tab, app.selected_row()) {
        (Tab::Machines, Some(row)) => format!("app set {name} online --machine {}", row.name),
        _ => format!("app set {name} online --all"),
    }
}

/// The help overlay's lines.
pub const HELP: &[(&str, &str)] = &[
    ("1-4  [ ]  Tab", "switch view"),
    ("j k  ↑ ↓", "move"),
    ("g G  PgUp PgDn", "top, bottom, page"),
    ("s  S", "sort by the next column, reverse"),
    ("/", "filter machines (regex on name, state, version)"),
    ("Esc", "clear the filter, close prompts"),
    ("f", "freeze / resume updates"),
    (
        ":",
        "command line: any batch command (disable, upgrade FILE, app set ...)",
    ),
    ("d  e", "disable / enable self-management (asks first)"),
    ("u", "upgrade: choose a package file"),
    ("m", "membership: choose a machines file"),
    ("i  a", "install an application; set an application's state"),
    ("?", "this help"),
    ("q", "quit"),
];
