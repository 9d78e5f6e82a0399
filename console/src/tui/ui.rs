//! Drawing: the frame around the views (title, tabs, status line) and the overlays. Views
//! only draw what the state says; they change nothing.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Clear, Paragraph, Tabs, Wrap},
};

use super::{
    app::{App, Mode, TABS, Tab},
    keys::BINDINGS,
    model::Connection,
    views,
};

/// Rows of the screen that are not the table (title, tabs, header, borders, status line).
pub const CHROME_ROWS: u16 = 8;

/// Rows of the screen that are not log text when the log pane is open (title, tabs,
/// borders, status line).
pub const LOG_CHROME_ROWS: u16 = 5;

pub fn draw(frame: &mut Frame, app: &App) {
    let [top, body, bottom] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    header(frame, top, app);
    match app.tab {
        _ if app.log.is_some() => views::log::draw(frame, body, app),
        Tab::Overview => views::overview::draw(frame, body, app),
        Tab::Machines => views::machines::draw(frame, body, app),
        Tab::Apps => views::apps::draw(frame, body, app),
        Tab::Overhead => views::overhead::draw(frame, body, app),
    }
    status_line(frame, bottom, app);
    match &app.mode {
        Mode::Help => help(frame, app),
        Mode::Confirm(pending) => confirm(frame, &pending.description, &pending.args),
        _ => {}
    }
    if app.no_color {
        strip_colors(frame.buffer_mut());
    }
}

/// Whether the environment asks for no colour: `NO_COLOR` set and not empty (no-color.org).
pub fn no_color_requested() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Under NO_COLOR the buffer is drawn without colours ([`strip_colors`]), so crossterm's own
/// NO_COLOR handling is switched off: it writes a colour change as an empty sequence,
/// `ESC[;m`, which terminals take as an SGR reset that also drops reverse and bold (the
/// highlights). The only colours left to write are the defaults.
pub fn leave_no_color_to_the_buffer() {
    crossterm::style::Colored::set_ansi_color_disabled(false);
}

/// Every cell in the terminal's default colours; modifiers (reverse, bold: the highlights)
/// are kept, so selections stay visible.
pub fn strip_colors(buffer: &mut ratatui::buffer::Buffer) {
    for cell in buffer.content.iter_mut() {
        cell.set_fg(Color::Reset).set_bg(Color::Reset);
        cell.underline_color = Color::Reset;
    }
}

/// Columns of the title row besides the connection's state: the name, the count, the marks.
fn fixed_width(m: &crate::tui::model::Model, app: &App) -> usize {
    let count = format!(" smon {}/{} deployed  ", m.deployed, m.total);
    count.chars().count()
        + if app.frozen { "  FROZEN (f)".len() } else { 0 }
        + if app.readonly { "  read-only".len() } else { 0 }
}

fn header(frame: &mut Frame, area: Rect, app: &App) {
    let [title, tabs] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let m = &app.model;
    let connection = match &m.connection {
        None | Some(Connection::Connecting) => {
            Span::styled("connecting…", Style::new().fg(Color::Yellow))
        }
        Some(Connection::Live { peer }) => {
            Span::styled(format!("live via {peer}"), Style::new().fg(Color::Green))
        }
        // Cut to the row, visibly: the whole error is among the recent events.
        Some(Connection::Stale { since, error }) => Span::styled(
            ellipsize(
                &format!("STALE since {since:.0}s, retrying: {error}"),
                usize::from(area.width).saturating_sub(fixed_width(m, app)),
            ),
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ),
    };
    let mut spans = vec![
        Span::styled(
            " smon ",
            Style::new().add_modifier(Modifier::BOLD).fg(Color::Cyan),
        ),
        Span::raw(format!("{}/{} deployed  ", m.deployed, m.total)),
        connection,
    ];
    if app.frozen {
        spans.push(Span::styled(
            "  FROZEN (f)",
            Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD),
        ));
    }
    if app.readonly {
        spans.push(Span::styled(
            "  read-only",
            Style::new().fg(Color::DarkGray),
        ));
    }
    frame.render_widget(Line::from(spans), title);
    let titles: Vec<Line> = TABS
        .iter()
        .enumerate()
        .map(|(i, t)| Line::from(format!("{} {}", i + 1, t.title())))
        .collect();
    let selected = TABS.iter().position(|t| *t == app.tab).unwrap_or(0);
    frame.render_widget(
        Tabs::new(titles).select(selected).highlight_style(
            Style::new()
                .fg(Color::Cyan)
                .add_modifier(Modifier::BOLD | Modifier::REVERSED),
        ),
        tabs,
    );
}

fn status_line(frame: &mut Frame, area: Rect, app: &App) {
    let line = match &app.mode {
        Mode::Filter(text) => Line::from(vec![
            Span::styled("/", Style::new().fg(Color::Cyan)),
            Span::raw(text.clone()),
            Span::raw("█"),
        ]),
        Mode::Command(text) => Line::from(vec![
            Span::styled(":", Style::new().fg(Color::Cyan)),
            Span::raw(text.clone()),
            Span::raw("█"),
        ]),
        Mode::Log => views::log::status_line(app),
        _ => match &app.message {
            Some(message) => Line::from(Span::styled(
                message.clone(),
                Style::new().fg(Color::Yellow),
            )),
            None => Line::from(Span::styled(
                "? help  q quit  1-4 views  / filter  s sort  : command  d/e disable/enable  f freeze",
                Style::new().fg(Color::DarkGray),
            )),
        },
    };
    frame.render_widget(line, area);
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn help(frame: &mut Frame, app: &App) {
    let area = centered(frame.area(), 80, BINDINGS.len() as u16 + 4);
    let mut lines: Vec<Line> = BINDINGS
        .iter()
        .map(|b| {
            Line::from(vec![
                Span::styled(format!("{:<18}", b.keys), Style::new().fg(Color::Cyan)),
                Span::raw(b.help),
            ])
        })
        .collect();
    if app.readonly {
        lines.push(Line::from(Span::styled(
            "read-only: actions are off",
            Style::new().fg(Color::DarkGray),
        )));
    }
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" keys (any key closes) "),
        ),
        area,
    );
}

/// The confirmation dialog: the description wrapped to the dialog's width, the command it
/// runs, and on its last inner row, always, the keys that answer it.
fn confirm(frame: &mut Frame, description: &str, args: &[String]) {
    let width = 72.min(frame.area().width);
    let inner = width.saturating_sub(2).max(1);
    let command = format!(
        "runs: smon-console {}",
        shlex::try_join(args.iter().map(String::as_str)).unwrap_or_else(|_| args.join(" "))
    );
    let rows = wrapped_rows(description, inner) + 1 + wrapped_rows(&command, inner);
    let area = centered(frame.area(), width, rows + 4);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" confirm ")
        .border_style(Style::new().fg(Color::Yellow));
    let [text_area, keys_area] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(block.inner(area));
    let text = vec![
        Line::from(description.to_string()),
        Line::default(),
        Line::from(Span::styled(command, Style::new().fg(Color::DarkGray))),
    ];
    let keys = Line::from(vec![
        Span::styled(
            "y",
            Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
        ),
        Span::raw(" / Enter: do it    "),
        Span::styled(
            "n",
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        Span::raw(" / Esc: cancel"),
    ]);
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), text_area);
    frame.render_widget(keys, keys_area);
}

/// How many rows `text` takes wrapped at word boundaries to `width` columns (at least 1; a
/// word longer than a row is broken across rows).
pub fn wrapped_rows(text: &str, width: u16) -> u16 {
    let width = usize::from(width.max(1));
    let (mut rows, mut used) = (1u16, 0usize);
    for word in text.split_whitespace() {
        let mut len = word.chars().count();
        if used > 0 && used + 1 + len <= width {
            used += 1 + len;
            continue;
        }
        if used > 0 {
            rows = rows.saturating_add(1);
        }
        while len > width {
            rows = rows.saturating_add(1);
            len -= width;
        }
        used = len;
    }
    rows
}

/// `text` cut to `width` columns, ending with `…` where it was cut.
pub fn ellipsize(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

pub fn state_style(state: &str) -> Style {
    match state {
        "running" => Style::new().fg(Color::Green),
        "disabled" => Style::new().fg(Color::Blue),
        "deploying" => Style::new().fg(Color::Yellow),
        "unreachable" | "unresponsive" | "stopped" | "failed" | "conflict" => {
            Style::new().fg(Color::Red)
        }
        "backoff" => Style::new().fg(Color::Yellow),
        "removed" => Style::new().fg(Color::DarkGray),
        _ => Style::new().fg(Color::Gray),
    }
}
