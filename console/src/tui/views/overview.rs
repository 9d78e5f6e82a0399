//! Overview: how far deployment got, the curve of it, versions, livetag, recent events.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Style},
    symbols,
    text::{Line, Span},
    widgets::{Axis, Block, Borders, Chart, Dataset, Gauge, GraphType, List, ListItem, Paragraph},
};

use crate::tui::{app::App, model::Model};

/// Versions marked bad the facts panel lists (the rest: `status`).
const MAX_BAD_SHOWN: usize = 3;

/// The overview tab: the gauge, the cluster's facts and recent events on the left, the
/// deployment curve on the right.
pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let m = &app.model;
    let [left, right] =
        Layout::horizontal([Constraint::Length(44), Constraint::Min(20)]).areas(area);
    // Two lines per version marked bad (at most three), above the versions.
    let bad_lines = 2 * m.bad_versions.len().min(MAX_BAD_SHOWN) as u16;
    let [gauge, facts, events] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(10 + bad_lines),
        Constraint::Min(3),
    ])
    .areas(left);
    draw_gauge(frame, gauge, m);
    draw_facts(frame, facts, m);
    draw_events(frame, events, m);
    draw_curve(frame, right, m);
}

fn draw_gauge(frame: &mut Frame, gauge: Rect, m: &Model) {
    let ratio = if m.total == 0 {
        0.0
    } else {
        (m.deployed as f64 / m.total as f64).min(1.0)
    };
    frame.render_widget(
        Gauge::default()
            .block(Block::default().borders(Borders::ALL).title(" deployed "))
            .gauge_style(Style::new().fg(Color::Green))
            .ratio(ratio)
            .label(format!("{}/{}", m.deployed, m.total)),
        gauge,
    );
}

fn draw_facts(frame: &mut Frame, facts: Rect, m: &Model) {
    let mut lines = vec![
        Line::from(format!(
            "running {}  disabled {}  unreachable {}",
            m.running, m.disabled, m.unreachable
        )),
        Line::from(format!("membership v{}", m.membership_version)),
    ];
    if m.unresponsive > 0 {
        lines.push(Line::from(Span::styled(
            format!(
                "UNRESPONSIVE: {} peer(s) run but do not answer; killed and restarted after \
                 the grace period",
                m.unresponsive
            ),
            Style::new().fg(Color::Red),
        )));
    }
    if m.conflicts > 0 {
        lines.push(Line::from(Span::styled(
            format!(
                "CONFLICT: {} machine(s) answered by another machine's peer (shared address?)",
                m.conflicts
            ),
            Style::new().fg(Color::Red),
        )));
    }
    match m.livetag {
        Some(tag) => lines.push(Line::from(vec![
            Span::raw("livetag "),
            Span::styled(
                if tag.enabled { "enabled" } else { "DISABLED" },
                Style::new().fg(if tag.enabled {
                    Color::Green
                } else {
                    Color::Blue
                }),
            ),
            Span::raw(format!(
                " v{}, on {}/{} deployed",
                tag.version, m.livetag_agreeing, m.deployed
            )),
        ])),
        None => lines.push(Line::from("livetag -")),
    }
    let red = Style::new().fg(Color::Red);
    for bad in m.bad_versions.iter().take(MAX_BAD_SHOWN) {
        // The time of day of the RFC 3339 mark (the date is in `status`).
        let time = bad.at.as_deref().and_then(|t| t.get(11..)).unwrap_or("");
        let machine = bad.machine.as_deref().unwrap_or("?");
        lines.push(Line::from(Span::styled(
            format!("BAD {} on {machine} {time}", bad.version),
            red.add_modifier(ratatui::style::Modifier::BOLD),
        )));
        lines.push(Line::from(Span::styled(format!("  {}", bad.reason), red)));
    }
    lines.push(Line::from("versions:"));
    for (version, count) in m.versions.iter().rev().take(5) {
        lines.push(Line::from(format!("  {version:<12} ×{count}")));
    }
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" cluster ")),
        facts,
    );
}

fn draw_events(frame: &mut Frame, events: Rect, m: &Model) {
    let height = events.height.saturating_sub(2) as usize;
    let width = events.width.saturating_sub(2) as usize;
    // One event per row; a cut one ends with an ellipsis (the whole text is in the log).
    let items: Vec<ListItem> = m
        .events
        .iter()
        .take(height)
        .map(|e| {
            ListItem::new(crate::tui::ui::ellipsize(
                &format!("{:>6.1}s {}", e.at, e.text()),
                width,
            ))
        })
        .collect();
    frame.render_widget(
        List::new(items).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" recent events "),
        ),
        events,
    );
}

fn draw_curve(frame: &mut Frame, right: Rect, m: &Model) {
    // The curve runs up to now: the count held since its last change.
    let last_t = m.now.max(m.history.last().map_or(0.0, |p| p.0)).max(1.0);
    let mut points = m.history.clone();
    if let Some(&(_, y)) = m.history.last() {
        points.push((last_t, y));
    }
    let dataset = Dataset::default()
        .marker(symbols::Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::new().fg(Color::Cyan))
        .data(&points);
    let top = f64::from(m.total.max(1));
    frame.render_widget(
        Chart::new(vec![dataset])
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" deployment progress (machines over seconds) "),
            )
            .x_axis(
                Axis::default()
                    .bounds([0.0, last_t])
                    .labels(vec![Line::from("0"), Line::from(format!("{last_t:.0}s"))]),
            )
            .y_axis(
                Axis::default()
                    .bounds([0.0, top])
                    .labels(vec![Line::from("0"), Line::from(format!("{}", m.total))]),
            ),
        right,
    );
}
