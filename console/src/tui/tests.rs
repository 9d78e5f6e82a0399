//! `update()` unit tests and snapshot tests of every view (120×40, TestBackend).

use ratatui::{Terminal, backend::TestBackend};
use smon_proto::{
    AppState, AppStatus, ClusterView, DesiredState, LiveTag, MachineId, MachineRecord, PeerState,
    Version,
};

use super::{
    app::{Action, App, Effect, Mode, SortKey, Tab},
    model::{DataMsg, Model},
    ui,
};

fn record(i: u32, state: PeerState, version: Version, overhead: u32) -> MachineRecord {
    MachineRecord {
        machine: i,
        rev: 3,
        state,
        peer_version: Some(version),
        first_deployed_ms: Some(1_000 + u64::from(i)),
        overhead,
        logins: 1 + i % 3,
        livetag: LiveTag {
            enabled: true,
            version: 0,
        },
        apps: if i.is_multiple_of(2) {
            vec![AppStatus {
                name: "hello-http".into(),
                version: Version::new(1, 0, 0),
                desired: DesiredState::Online,
                state: if i.is_multiple_of(4) {
                    AppState::Running
                } else {
                    AppState::Backoff
                },
                restarts: i % 4,
                reason: None,
            }]
        } else {
            Vec::new()
        },
        load: (i * 7 % 300) as u16,
        news_rev: 3,
        changed_ms: 0,
        bad_versions: Vec::new(),
        reason: None,
    }
}

fn machines(n: u32) -> Vec<MachineId> {
    (1..=n)
        .map(|i| MachineId::local(format!("m{i:03}")))
        .collect()
}

/// A view of the 24 machines `ids` answered by the first, livetag enabled (v0).
fn view_of(ids: &[MachineId], seq: u64, records: Vec<(MachineId, MachineRecord)>) -> ClusterView {
    ClusterView {
        seq,
        answered_by: ids[0].clone(),
        membership_version: 1,
        machines: 24,
        livetag: LiveTag {
            enabled: true,
            version: 0,
        },
        records,
        ..ClusterView::empty(ids[0].clone())
    }
}

/// A cluster of 24 machines, 20 of them known, seen at fixed times.
pub(super) fn sample_app() -> App {
    let ids = machines(24);
    let mut model = Model::with_machines(&ids);
    let v1 = Version::new(0, 1, 0);
    let v2 = Version::new(0, 2, 0);
    let states = [
        PeerState::Running,
        PeerState::Running,
        PeerState::Disabled,
        PeerState::Unreachable,
        PeerState::Running,
    ];
    for step in 1..=4u32 {
        let records = (0..step * 5)
            .map(|i| {
                let state = states[i as usize % states.len()];
                let version = if i % 3 == 0 { v2 } else { v1 };
                (
                    ids[i as usize].clone(),
                    record(i, state, version, 1 + u32::from(i % 7 == 0)),
                )
            })
            .collect();
        let view = view_of(&ids, u64::from(step), records);
        model.apply(DataMsg::View {
            at: f64::from(step) * 2.0,
            full: step == 1,
            view: Box::new(view),
        });
    }
    let mut app = App::new(model, false, true);
    app.update(Action::PageSize(10));
    app
}

pub(super) fn render(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    terminal.draw(|f| ui::draw(f, app)).unwrap();
    terminal.backend().to_string()
}

/// Issue 16: a release rolled back on m003 shows on the overview (where, when, why) and in
/// the recent events.
#[test]
fn the_overview_shows_a_version_marked_bad() {
    let mut app = sample_app();
    let ids = machines(24);
    let mut r = record(2, PeerState::Running, Version::new(0, 1, 0), 1);
    r.news_rev = 4;
    r.bad_versions = vec![smon_proto::BadVersion {
        version: Version::new(0, 5, 0),
        reason: smon_proto::BadReason::Exited { code: 3 },
        at_ms: 1_795_000_000_000,
    }];
    let mut view = view_of(&ids, 5, vec![(ids[2].clone(), r.clone())]);
    view.root.add_record(&r, 1);
    app.update(Action::Data(DataMsg::View {
        at: 10.0,
        full: false,
        view: Box::new(view),
    }));
    let screen = render(&app);
    assert!(
        screen.contains("BAD 0.5.0 on local:m003 11:06:40Z"),
        "{screen}"
    );
    assert!(screen.contains("exited with code 3 at start"), "{screen}");
    assert!(
        screen.contains("local:m003: version 0.5.0 marked"),
        "{screen}"
    );
    insta::assert_snapshot!("overview_bad_version", screen);
}

/// Issue 14 item 2: the overview says where a key rotation stands, as `status` does.
#[test]
fn the_overview_shows_where_a_key_rotation_stands() {
    let mut app = sample_app();
    assert!(!render(&app).contains("rekey"));
    app.update(Action::Data(DataMsg::Rekey(
        crate::rekey_status::RekeyStatus {
            epoch: 2,
            on_epoch: 17,
            machines: 20,
            grace_left_ms: 90_000,
        },
    )));
    let screen = render(&app);
    assert!(
        screen.contains("rekey epoch 2: 17/20 on it, grace 1m 30s"),
        "{screen}"
    );
}

/// Issue 15, kinds 1, 2 and 7: an unresponsive machine is counted and named on the overview,
/// and the selected machine's pane says why it is in its state (and why an app is).
#[test]
fn the_tui_shows_unresponsive_machines_and_why() {
    let mut app = sample_app();
    let ids = machines(24);
    let mut r = record(0, PeerState::Unresponsive, Version::new(0, 1, 0), 1);
    r.news_rev = 9;
    r.reason = Some(smon_proto::Reason::new(
        "peer process (pid 4242) runs but does not answer pings",
    ));
    r.apps[0].reason = Some(smon_proto::Reason::new(
        "processes {7} could not be stopped",
    ));
    let mut view = view_of(&ids, 5, vec![(ids[0].clone(), r.clone())]);
    view.root.add_record(&r, 1);
    // Nobody refreshed it for 25 s when the view was asked (issue 15, kind 1).
    view.record_ages_ms = vec![25_000];
    app.update(Action::Data(DataMsg::View {
        at: 10.0,
        full: false,
        view: Box::new(view),
    }));
    let screen = render(&app);
    assert!(screen.contains("UNRESPONSIVE: 1 peer(s)"), "{screen}");
    assert!(screen.contains("local:m001: unresponsive"), "{screen}");
    app.update(Action::GoTab(1));
    app.update(Action::Top);
    let screen = render(&app);
    assert!(screen.contains("unresponsive"), "{screen}");
    assert!(screen.contains("why      peer process (pid"), "{screen}");
    assert!(screen.contains("why: processes {7}"), "{screen}");
    assert!(screen.contains("seen     25s ago"), "{screen}");
    // Ten seconds later, by the next view's clock, the record is ten seconds older.
    app.update(Action::Data(DataMsg::View {
        at: 20.0,
        full: false,
        view: Box::new(view_of(&ids, 6, Vec::new())),
    }));
    assert!(
        render(&app).contains("seen     35s ago"),
        "{}",
        render(&app)
    );
}

#[test]
fn snapshots_of_every_view() {
    let mut app = sample_app();
    insta::assert_snapshot!("overview", render(&app));
    app.update(Action::GoTab(1));
    app.update(Action::Down);
    insta::assert_snapshot!("machines", render(&app));
    app.update(Action::GoTab(2));
    insta::assert_snapshot!("apps", render(&app));
    app.update(Action::GoTab(3));
    insta::assert_snapshot!("overhead", render(&app));
    app.update(Action::Help);
    insta::assert_snapshot!("help", render(&app));
    app.update(Action::Cancel);
    app.update(Action::Disable);
    insta::assert_snapshot!("confirm_disable", render(&app));
    app.update(Action::No);
    app.update(Action::Data(DataMsg::Disconnected {
        at: 9.0,
        error: "connection refused".into(),
    }));
    app.update(Action::GoTab(0));
    insta::assert_snapshot!("stale", render(&app));
}

#[test]
fn navigation_moves_scrolls_and_stays_in_bounds() {
    let mut app = sample_app();
    app.update(Action::GoTab(1));
    assert_eq!(app.tab, Tab::Machines);
    app.update(Action::Up);
    assert_eq!(app.selected, 0);
    app.update(Action::Down);
    app.update(Action::Down);
    assert_eq!(app.selected_row().unwrap().name, "local:m003");
    app.update(Action::PageDown);
    assert_eq!(app.selected, 12);
    assert!(app.scroll > 0 && app.selected < app.scroll + app.page);
    app.update(Action::Bottom);
    assert_eq!(app.selected, 23);
    app.update(Action::Down);
    assert_eq!(app.selected, 23);
    app.update(Action::Top);
    assert_eq!((app.selected, app.scroll), (0, 0));
    app.update(Action::NextTab);
    assert_eq!(app.tab, Tab::Apps);
    app.update(Action::PrevTab);
    app.update(Action::PrevTab);
    assert_eq!(app.tab, Tab::Overview);
    app.update(Action::PrevTab);
    assert_eq!(app.tab, Tab::Overhead);
}

#[test]
fn the_filter_takes_a_regex_and_refuses_a_bad_one() {
    let mut app = sample_app();
    app.update(Action::StartFilter);
    assert_eq!(app.tab, Tab::Machines);
    for c in "m00[1-3]|unreach".chars() {
        app.update(Action::Input(c));
    }
    app.update(Action::Submit);
    let names: Vec<_> = app
        .visible
        .iter()
        .map(|&i| app.model.rows[i].name.clone())
        .collect();
    assert!(names.contains(&"local:m001".to_string()));
    assert!(names.iter().all(|n| {
        let row = app.model.rows.iter().find(|r| &r.name == n).unwrap();
        n.starts_with("local:m00") && matches!(&n[9..], "1" | "2" | "3")
            || row.state_word() == "unreachable"
    }));
    assert!(names.len() < 24);
    app.update(Action::StartFilter);
    app.update(Action::Input('('));
    app.update(Action::Submit);
    assert!(app.message.as_deref().unwrap().starts_with("bad filter"));
    assert!(
        matches!(app.mode, Mode::Filter(_)),
        "a bad filter keeps the prompt open"
    );
    app.update(Action::Cancel);
    app.update(Action::Cancel);
    assert_eq!(app.visible.len(), 24, "Esc clears the filter");
}

#[test]
fn sorting_cycles_columns_and_reverses() {
    let mut app = sample_app();
    app.update(Action::SortNext);
    assert_eq!(app.sort, SortKey::State);
    let states: Vec<_> = app
        .visible
        .iter()
        .map(|&i| app.model.rows[i].state_word())
        .collect();
    let mut sorted = states.clone();
    sorted.sort();
    assert_eq!(states, sorted);
    app.update(Action::SortNext);
    app.update(Action::SortNext);
    assert_eq!(app.sort, SortKey::Overhead);
    app.update(Action::SortReverse);
    let first = &app.model.rows[app.visible[0]];
    assert_eq!(
        first.record.as_ref().unwrap().overhead,
        2,
        "the largest overhead first"
    );
}

#[test]
fn actions_ask_first_and_run_only_on_yes() {
    let mut app = sample_app();
    assert_eq!(app.update(Action::Disable), None);
    assert!(
        matches!(&app.mode, Mode::Confirm(p) if p.args == ["disable"] && p.description.contains("Disable"))
    );
    assert_eq!(
        app.update(Action::Down),
        None,
        "other keys do nothing while asking"
    );
    assert_eq!(app.update(Action::No), None);
    assert_eq!(app.mode, Mode::Normal);
    app.update(Action::Enable);
    assert_eq!(
        app.update(Action::Yes),
        Some(Effect::Run(vec!["enable".into()]))
    );
    app.update(Action::OpDone(Ok(
        "enable: livetag set to true (version 3)".into(),
    )));
    assert!(app.message.as_deref().unwrap().contains("version 3"));

    let mut readonly = App::new(Model::default(), true, true);
    readonly.update(Action::Disable);
    assert_eq!(readonly.mode, Mode::Normal);
    assert!(readonly.message.as_deref().unwrap().contains("read-only"));
}

/// Type `text` on the `:` line and press Enter.
fn type_line(app: &mut App, text: &str) {
    app.update(Action::StartCommand(""));
    for c in text.chars() {
        app.update(Action::Input(c));
    }
    app.update(Action::Submit);
}

#[test]
fn the_command_line_takes_batch_commands() {
    let mut app = sample_app();
    type_line(&mut app, "upgrade /tmp/smon-peer-0.2.0");
    match &app.mode {
        Mode::Confirm(p) => {
            assert_eq!(p.args, ["upgrade", "/tmp/smon-peer-0.2.0"]);
            assert!(p.description.contains("/tmp/smon-peer-0.2.0"));
        }
        other => panic!("{other:?}"),
    }
    app.update(Action::No);
    type_line(&mut app, "status");
    assert!(app.message.as_deref().unwrap().contains("only reads"));
    type_line(&mut app, "frobnicate");
    assert!(
        app.message.as_deref().unwrap().contains("frobnicate"),
        "{:?}",
        app.message
    );
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn freezing_holds_updates_until_resumed() {
    let mut app = sample_app();
    let deployed = app.model.deployed;
    app.update(Action::Freeze);
    let ids = machines(24);
    let record = record(23, PeerState::Running, Version::new(0, 2, 0), 1);
    let view = view_of(&ids, 99, vec![(ids[23].clone(), record)]);
    app.update(Action::Data(DataMsg::View {
        at: 10.0,
        full: false,
        view: Box::new(view),
    }));
    assert_eq!(app.model.deployed, deployed, "frozen");
    app.update(Action::Freeze);
    assert_eq!(app.model.deployed, deployed + 1, "resumed");
}

fn render_sized(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| ui::draw(f, app)).unwrap();
    terminal
}

/// Issue 15, kind 9: under NO_COLOR no cell has a colour, and the selected tab and the whole
/// selected row stay reversed (crossterm's empty colour sequence used to reset them).
#[test]
fn no_color_drops_colours_but_keeps_the_selection_visible() {
    use ratatui::style::{Color, Modifier};
    let mut app = sample_app();
    app.no_color = true;
    app.update(Action::GoTab(1));
    app.update(Action::Down);
    let terminal = render_sized(&app, 120, 40);
    let buffer = terminal.backend().buffer();
    for cell in &buffer.content {
        assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset), "{cell:?}");
    }
    let row_text = |y: u16| -> String { (0..120).map(|x| buffer[(x, y)].symbol()).collect() };
    // The selected tab: every cell of its title reversed, the others not.
    let tabs = row_text(1);
    let column = |text: &str, at: usize| text[..at].chars().count() as u16;
    let start = column(&tabs, tabs.find("2 Machines").expect("the machines tab"));
    for x in start..start + "2 Machines".len() as u16 {
        assert!(
            buffer[(x, 1)].modifier.contains(Modifier::REVERSED),
            "tab cell {x}"
        );
    }
    let other = column(&tabs, tabs.find("1 Overview").unwrap());
    assert!(!buffer[(other, 1)].modifier.contains(Modifier::REVERSED));
    // The selected row: reversed across its columns, not only the first.
    let name = app.selected_row().unwrap().machine.clone();
    let y = (0..40)
        .find(|&y| row_text(y).starts_with(&format!("│{name} ")))
        .expect("the row");
    let reversed = (0..120)
        .filter(|&x| buffer[(x, y)].modifier.contains(Modifier::REVERSED))
        .count();
    assert!(
        reversed > 60,
        "only {reversed} cells of the selected row are reversed"
    );
}

/// What a real terminal gets under NO_COLOR: no empty colour sequence (`ESC[;m`, an SGR reset
/// that dropped reverse and bold), and the reverse of the selected tab is written.
#[test]
fn no_color_bytes_keep_reverse_and_write_no_empty_colour_sequence() {
    use ratatui::{TerminalOptions, Viewport, backend::CrosstermBackend, layout::Rect};
    use std::{cell::RefCell, rc::Rc};
    /// A terminal's input: what the backend writes, kept.
    #[derive(Clone, Default)]
    struct Bytes(Rc<RefCell<Vec<u8>>>);
    impl std::io::Write for Bytes {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let draw = |app: &App| {
        let options = TerminalOptions {
            viewport: Viewport::Fixed(Rect::new(0, 0, 120, 40)),
        };
        let bytes = Bytes::default();
        let mut terminal =
            Terminal::with_options(CrosstermBackend::new(bytes.clone()), options).unwrap();
        terminal.draw(|f| ui::draw(f, app)).unwrap();
        String::from_utf8_lossy(&bytes.0.borrow()).into_owned()
    };
    let mut app = sample_app();
    app.update(Action::GoTab(1));
    // NO_COLOR as crossterm sees it: without our handling, the empty sequence appears.
    crossterm::style::Colored::set_ansi_color_disabled(true);
    assert!(
        draw(&app).contains("\x1b[;m"),
        "crossterm no longer writes ESC[;m"
    );
    app.no_color = true;
    ui::leave_no_color_to_the_buffer();
    let bytes = draw(&app);
    assert!(
        !bytes.contains("\x1b[;m"),
        "an empty colour sequence was written"
    );
    assert!(bytes.contains("\x1b[7m"), "no reverse was written");
    assert!(
        !bytes.contains("\x1b[38;5;") && !bytes.contains("\x1b[36m"),
        "a colour was written"
    );
}

/// The confirm dialog wraps a long message and always shows the keys; a long event in the
/// recent-events panel ends with an ellipsis.
#[test]
fn the_confirm_dialog_and_events_wrap_and_the_title_row_cuts_visibly() {
    let mut app = sample_app();
    let path = "/home/operator/releases/smon-peer-0.2.0-with-a-rather-long-name.pkg";
    type_line(&mut app, &format!("upgrade {path}"));
    let terminal = render_sized(&app, 80, 24);
    let screen = terminal.backend().to_string();
    let flat: String = screen
        .lines()
        .map(|l| l.trim_matches(|c| c == '"' || c == '│' || c == ' ').trim())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(flat.contains("every other peer follows."), "{screen}");
    assert!(
        flat.contains("y / Enter: do it") && flat.contains("n / Esc: cancel"),
        "{screen}"
    );
    insta::assert_snapshot!("confirm_upgrade_80x24", screen);

    app.update(Action::No);
    app.update(Action::Data(DataMsg::Disconnected {
        at: 9.0,
        error: "the connection to 127.0.0.1:4000 was reset by the peer while reading the view, \
                retrying every second until it answers again"
            .into(),
    }));
    let screen = render_sized(&app, 80, 30).backend().to_string();
    // The event wraps in its panel: every word of it is on the screen, in order.
    let panel: String = screen
        .lines()
        .skip_while(|l| !l.contains("recent events"))
        .skip(1)
        .map(|l| l.chars().take(44).collect::<String>())
        .map(|l| {
            l.trim_matches(|c| c == '"' || c == '│' || c == ' ')
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        panel.contains("retrying every second until it answers again"),
        "{screen}"
    );
    // The title row cuts the same error visibly, within the terminal's width.
    let title = screen.lines().next().unwrap();
    assert!(
        title.contains("STALE since") && title.contains('…'),
        "{title}"
    );
}

/// The `:` line splits like a shell: quotes and backslashes; a bad quote says so.
#[test]
fn the_command_line_splits_like_a_shell() {
    let mut app = sample_app();
    for line in [
        r#"membership set "my lists/more.txt""#,
        r"membership set 'my lists/more.txt'",
        r"membership set my\ lists/more.txt",
    ] {
        type_line(&mut app, line);
        match &app.mode {
            Mode::Confirm(p) => {
                assert_eq!(p.args, ["membership", "set", "my lists/more.txt"], "{line}");
                assert!(p.description.contains("my lists/more.txt"));
            }
            other => panic!("{line}: {other:?} {:?}", app.message),
        }
        app.update(Action::No);
    }
    type_line(&mut app, r#"membership set "my lists/more.txt"#);
    assert_eq!(app.mode, Mode::Normal);
    let message = app.message.clone().unwrap_or_default();
    assert!(message.contains("unbalanced quote"), "{message}");
}
