//! Keys to actions, per mode. The normal mode's keys are one table, [`BINDINGS`]: each line
//! of the help overlay with the keys it explains and the typed action each key sends, so the
//! help cannot say what the keys do not do (the keymap-with-help of gitui and ratatui's
//! component template).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{Action, App, Mode};
use Action as A;
use KeyCode::{BackTab, Char, Down, End, Esc, Home, PageDown, PageUp, Tab, Up};

/// One line of the help overlay: the keys as it shows them, what they do, and each key with
/// the action it sends.
pub struct Binding {
    pub keys: &'static str,
    pub help: &'static str,
    pub map: &'static [(KeyCode, Action)],
}

/// The normal mode's keys, in the help overlay's order.
pub static BINDINGS: &[Binding] = &[
    Binding {
        keys: "1-4  [ ]  Tab",
        help: "switch view",
        map: &[
            (Char('1'), A::GoTab(0)),
            (Char('2'), A::GoTab(1)),
            (Char('3'), A::GoTab(2)),
            (Char('4'), A::GoTab(3)),
            (Char(']'), A::NextTab),
            (Tab, A::NextTab),
            (Char('['), A::PrevTab),
            (BackTab, A::PrevTab),
        ],
    },
    Binding {
        keys: "j k  ↑ ↓",
        help: "move (in a log: scroll)",
        map: &[
            (Char('j'), A::Down),
            (Down, A::Down),
            (Char('k'), A::Up),
            (Up, A::Up),
        ],
    },
    Binding {
        keys: "g G  PgUp PgDn",
        help: "top, bottom (in a log: follow the end), page",
        map: &[
            (Char('g'), A::Top),
            (Home, A::Top),
            (Char('G'), A::Bottom),
            (End, A::Bottom),
            (PageUp, A::PageUp),
            (PageDown, A::PageDown),
        ],
    },
    Binding {
        keys: "s  S",
        help: "sort by the next column, reverse",
        map: &[(Char('s'), A::SortNext), (Char('S'), A::SortReverse)],
    },
    Binding {
        keys: "/",
        help: "filter machines (regex: name, state, version); a log: search",
        map: &[(Char('/'), A::StartFilter)],
    },
    Binding {
        keys: "Esc",
        help: "clear the filter, close prompts, leave the log",
        map: &[(Esc, A::Cancel)],
    },
    Binding {
        keys: "l",
        help: "log of the selected machine or application, followed",
        map: &[(Char('l'), A::OpenLog)],
    },
    Binding {
        keys: "n  N",
        help: "in a log: next / previous match of the search",
        map: &[(Char('n'), A::NextMatch), (Char('N'), A::PrevMatch)],
    },
    Binding {
        keys: "f",
        help: "freeze / resume updates",
        map: &[(Char('f'), A::Freeze)],
    },
    Binding {
        keys: ":",
        help: "command line: any batch command (disable, upgrade FILE, app set ...)",
        map: &[(Char(':'), A::StartCommand(""))],
    },
    Binding {
        keys: "d  e",
        help: "disable / enable self-management (asks first)",
        map: &[(Char('d'), A::Disable), (Char('e'), A::Enable)],
    },
    Binding {
        keys: "u",
        help: "upgrade: choose a package file",
        map: &[(Char('u'), A::StartCommand("upgrade "))],
    },
    Binding {
        keys: "m",
        help: "membership: choose a machines file",
        map: &[(Char('m'), A::StartCommand("membership set "))],
    },
    Binding {
        keys: "i  a",
        help: "install an application; set an application's state",
        map: &[
            (Char('i'), A::StartCommand("app install ")),
            (Char('a'), A::AppSet),
        ],
    },
    Binding {
        keys: "?",
        help: "this help",
        map: &[(Char('?'), A::Help)],
    },
    Binding {
        keys: "q",
        help: "quit",
        map: &[(Char('q'), A::Quit)],
    },
];

pub fn action_for(app: &App, key: KeyEvent) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == Char('c') {
        return Some(Action::Quit);
    }
    match &app.mode {
        Mode::Help => Some(Action::Cancel),
        Mode::Confirm(_) => match key.code {
            Char('y') | Char('Y') | KeyCode::Enter => Some(Action::Yes),
            Char('n') | Char('N') | Esc => Some(Action::No),
            _ => None,
        },
        Mode::Filter(_) | Mode::Command(_) => match key.code {
            KeyCode::Enter => Some(Action::Submit),
            Esc => Some(Action::Cancel),
            KeyCode::Backspace => Some(Action::Backspace),
            Char(c) => Some(Action::Input(c)),
            _ => None,
        },
        Mode::Log if app.log.as_ref().is_some_and(|p| p.typing.is_some()) => match key.code {
            KeyCode::Enter => Some(Action::Submit),
            Esc => Some(Action::Cancel),
            KeyCode::Backspace => Some(Action::Backspace),
            Char(c) => Some(Action::Input(c)),
            _ => None,
        },
        Mode::Normal | Mode::Log => BINDINGS
            .iter()
            .flat_map(|b| b.map)
            .find(|(code, _)| *code == key.code)
            .map(|(_, action)| action.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::model::Model;

    #[test]
    fn every_key_of_the_table_is_bound_once_and_sends_its_action() {
        let app = App::new(Model::default(), false, true);
        let mut seen = Vec::new();
        for binding in BINDINGS {
            assert!(!binding.map.is_empty(), "{}: no key", binding.keys);
            for (code, action) in binding.map {
                assert!(!seen.contains(code), "{code:?} is bound twice");
                seen.push(*code);
                let sent = action_for(&app, KeyEvent::new(*code, KeyModifiers::NONE));
                assert_eq!(format!("{sent:?}"), format!("{:?}", Some(action)));
            }
        }
        let unbound = action_for(&app, KeyEvent::new(Char('z'), KeyModifiers::NONE));
        assert!(unbound.is_none());
    }
}
