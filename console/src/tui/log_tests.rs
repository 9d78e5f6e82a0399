//! The log pane (`l`): opened on the selection, fed by its reader, scrolled, searched and
//! closed; snapshots at 120×40.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use smon_proto::{AppState, MachineId};

use super::{
    app::{Action, App, Effect, Mode, Tab},
    keys,
    log_pane::{LogEvent, LogMsg},
    tests::{render, sample_app},
};
use crate::log_follow::LogTarget;

fn lines(generation: u64, from: usize, to: usize) -> Action {
    let text: String = (from..=to)
        .map(|i| {
            format!(
                "2026-12-01T00:{:02}:{:02}Z  INFO smon_peer: round {i} done\n",
                i / 60,
                i % 60
            )
        })
        .collect();
    Action::Log(LogMsg {
        generation,
        event: LogEvent::Lines {
            via: "local:m001".into(),
            text,
            restarted: false,
        },
    })
}

fn key(app: &App, code: KeyCode) -> Option<Action> {
    keys::action_for(app, KeyEvent::new(code, KeyModifiers::NONE))
}

/// Press `code` as the TUI does: the key's action, then update.
fn press(app: &mut App, code: KeyCode) -> Option<Effect> {
    let action = key(app, code)?;
    app.update(action)
}

fn open_on_m002() -> App {
    let mut app = sample_app();
    // The page of a 40-row screen, as the TUI reports it.
    app.update(Action::PageSize(40 - usize::from(super::ui::CHROME_ROWS)));
    app.update(Action::GoTab(1));
    app.update(Action::Down);
    let effect = press(&mut app, KeyCode::Char('l'));
    let target = LogTarget {
        machine: MachineId::local("m002"),
        app: None,
    };
    assert_eq!(effect, Some(Effect::FollowLog(target, 1)));
    assert_eq!(app.mode, Mode::Log);
    app
}

#[test]
fn the_log_pane_opens_follows_searches_and_closes() {
    let mut app = open_on_m002();
    insta::assert_snapshot!("log_reading", render(&app));
    app.update(lines(1, 1, 60));
    insta::assert_snapshot!("log_following", render(&app));
    // More lines arrive: the pane shows the end.
    app.update(lines(1, 61, 62));
    assert!(render(&app).contains("round 62 done"));
    for c in "/round 4\n".chars() {
        let code = if c == '\n' {
            KeyCode::Enter
        } else {
            KeyCode::Char(c)
        };
        press(&mut app, code);
    }
    insta::assert_snapshot!("log_search", render(&app));
    let pane = app.log.as_ref().unwrap();
    assert!(!pane.following);
    assert_eq!(pane.current, Some(48), "the newest match, round 49");
    press(&mut app, KeyCode::Char('N'));
    assert_eq!(app.log.as_ref().unwrap().current, Some(47), "round 48");
    for _ in 0..9 {
        press(&mut app, KeyCode::Char('N'));
    }
    // Rounds 47..40, then 4: shown at the top.
    assert_eq!(app.log.as_ref().unwrap().current, Some(3));
    assert!(
        render(&app).contains("lines 4-38 of 62"),
        "{}",
        render(&app)
    );
    assert!(press(&mut app, KeyCode::Char('N')).is_none());
    assert!(app.message.as_deref().unwrap().contains("no more matches"));
    press(&mut app, KeyCode::Char('n'));
    assert_eq!(app.log.as_ref().unwrap().current, Some(39), "round 40");
    press(&mut app, KeyCode::Char('G'));
    assert!(app.log.as_ref().unwrap().following);
    // Esc leaves the pane for the table it was opened from, and stops the reader.
    assert_eq!(press(&mut app, KeyCode::Esc), Some(Effect::StopLog));
    assert_eq!(app.mode, Mode::Normal);
    assert!(app.log.is_none());
    assert!(render(&app).contains("MACHINE"));
}

#[test]
fn scrolling_stops_following_and_g_resumes_it() {
    let mut app = open_on_m002();
    app.update(lines(1, 1, 200));
    press(&mut app, KeyCode::Char('k'));
    press(&mut app, KeyCode::PageUp);
    let pane = app.log.as_ref().unwrap();
    assert!(!pane.following);
    let screen = render(&app);
    assert!(!screen.contains("round 200 done"), "{screen}");
    assert!(screen.contains("lines"), "the title says where: {screen}");
    // More lines do not move a scrolled pane.
    let top = app.log.as_ref().unwrap().top;
    app.update(lines(1, 201, 210));
    assert_eq!(app.log.as_ref().unwrap().top, top);
    press(&mut app, KeyCode::Char('g'));
    assert!(render(&app).contains("round 1 done"));
    press(&mut app, KeyCode::Char('G'));
    assert!(render(&app).contains("round 210 done"));
}

#[test]
fn what_a_closed_pane_reader_sends_is_dropped_and_problems_are_shown() {
    let mut app = open_on_m002();
    press(&mut app, KeyCode::Esc);
    let effect = press(&mut app, KeyCode::Char('l'));
    assert!(matches!(effect, Some(Effect::FollowLog(_, 2))));
    app.update(lines(1, 1, 5));
    assert!(
        app.log.as_ref().unwrap().lines.is_empty(),
        "generation 1 is gone"
    );
    app.update(Action::Log(LogMsg {
        generation: 2,
        event: LogEvent::Problem {
            message: "the peer log of local:m002 through local:m001: unreachable: ...".into(),
            last: false,
        },
    }));
    let screen = render(&app);
    assert!(screen.contains("unreachable"), "{screen}");
    assert!(screen.contains("trying again"), "{screen}");
}

#[test]
fn on_the_apps_tab_l_opens_the_application_where_it_is_not_running() {
    let mut app = sample_app();
    app.update(Action::GoTab(2));
    assert_eq!(app.tab, Tab::Apps);
    let Some(Effect::FollowLog(target, _)) = press(&mut app, KeyCode::Char('l')) else {
        panic!("no log opened");
    };
    assert_eq!(target.app.as_deref(), Some("hello-http"));
    let row = app
        .model
        .rows
        .iter()
        .find(|r| r.machine == target.machine)
        .unwrap();
    let status = &row.record.as_ref().unwrap().apps[0];
    assert_ne!(status.state, AppState::Running, "{target}");
}

#[test]
fn the_log_opens_read_only_and_from_the_command_line() {
    let mut app = App::new(sample_app().model, true, true);
    app.update(Action::GoTab(1));
    assert!(matches!(
        press(&mut app, KeyCode::Char('l')),
        Some(Effect::FollowLog(..))
    ));
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::Char(':'));
    for c in "logs local:m003 web".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    let effect = press(&mut app, KeyCode::Enter);
    let target = LogTarget {
        machine: MachineId::local("m003"),
        app: Some("web".into()),
    };
    assert!(matches!(effect, Some(Effect::FollowLog(t, _)) if t == target));
    // While a search is typed, keys are text: q does not quit.
    press(&mut app, KeyCode::Char('/'));
    assert_eq!(press(&mut app, KeyCode::Char('q')), None);
    assert_eq!(app.log.as_ref().unwrap().typing.as_deref(), Some("q"));
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.mode, Mode::Log, "Esc ends the search first");
    press(&mut app, KeyCode::Char(':'));
    assert_eq!(app.mode, Mode::Log, "no command line over the log");
}
