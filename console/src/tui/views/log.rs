//! The log pane: the lines of one log, the end followed or a place scrolled to, the search's
//! matches highlighted; its title says what is shown and through which peer.

use ratatui::{
    Frame,
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph},
};
use regex::Regex;

use crate::tui::{app::App, log_pane::LogPane};

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let Some(pane) = &app.log else { return };
    let height = area.height.saturating_sub(2) as usize;
    let first = pane.first_shown(height);
    let mut lines: Vec<Line> = pane.lines[first..]
        .iter()
        .take(height)
        .map(|l| highlighted(l, pane.search.as_ref()))
        .collect();
    if pane.lines.is_empty() {
        lines.push(Line::from(Span::styled(
            match &pane.problem {
                Some(problem) => problem.clone(),
                None => "reading…".into(),
            },
            Style::new().fg(Color::DarkGray),
        )));
    }
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(title(pane, first, height)),
        ),
        area,
    );
}

fn title(pane: &LogPane, first: usize, height: usize) -> String {
    let via = pane
        .via
        .as_ref()
        .map_or(String::new(), |v| format!(" via {v}"));
    let place = if pane.following {
        "following".to_string()
    } else {
        let last = (first + height).min(pane.lines.len());
        format!("lines {}-{last} of {}", first + 1, pane.lines.len())
    };
    let search = match &pane.search {
        Some(re) => format!(
            " · /{}/ {} matches",
            re.as_str().trim_start_matches("(?i)"),
            pane.matches()
        ),
        None => String::new(),
    };
    format!(" {}{via} · {place}{search} ", pane.target)
}

/// A line with the search's matches reversed.
fn highlighted<'a>(line: &'a str, search: Option<&Regex>) -> Line<'a> {
    let Some(re) = search else {
        return Line::from(line);
    };
    let mark = Style::new()
        .fg(Color::Yellow)
        .add_modifier(Modifier::REVERSED);
    let mut spans = Vec::new();
    let mut at = 0;
    for m in re.find_iter(line).filter(|m| !m.is_empty()) {
        spans.push(Span::raw(&line[at..m.start()]));
        spans.push(Span::styled(m.as_str(), mark));
        at = m.end();
    }
    spans.push(Span::raw(&line[at..]));
    Line::from(spans)
}

/// The status line while the pane is open: the search being typed, a message, the last
/// problem reading the log, or the pane's keys.
pub fn status_line(app: &App) -> Line<'static> {
    let pane = app.log.as_ref();
    if let Some(text) = pane.and_then(|p| p.typing.as_ref()) {
        return Line::from(vec![
            Span::styled("/", Style::new().fg(Color::Cyan)),
            Span::raw(text.clone()),
            Span::raw("█"),
        ]);
    }
    if let Some(message) = &app.message {
        return Line::from(Span::styled(
            message.clone(),
            Style::new().fg(Color::Yellow),
        ));
    }
    if let Some(problem) = pane.and_then(|p| p.problem.as_ref()) {
        return Line::from(Span::styled(problem.clone(), Style::new().fg(Color::Red)));
    }
    Line::from(Span::styled(
        "Esc back  j/k PgUp/PgDn scroll  g top  G follow  / search  n/N next/previous  q quit",
        Style::new().fg(Color::DarkGray),
    ))
}
