//! Overview: how far deployment got, the curve of it, versions, livetag, recent events.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Style},
    symbols,
    text::{Line, Span},
    widgets::{Axis, Block, Borders, Chart, Dataset, Gauge, GraphType, Paragraph, Wrap},
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
    // The facts wrap (a long reason is read whole, not cut): as many rows as they take,
    // leaving the events at least three.
    let facts_lines = facts(m);
    let inner = left.width.saturating_sub(2);
    let rows: u16 = facts_lines
        .iter()
        .map(|l| crate::tui::ui::wrapped_rows(&l.to_string(), inner))
        .sum();
    let facts_height = (rows + 2).min(left.height.saturating_sub(6));
    let [gauge, facts_area, events] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(facts_height),
        Constraint::Min(3),
    ])
    .areas(left);
    draw_gauge(frame, gauge, m);
    frame.render_widget(
        Paragraph::new(facts_lines)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(" cluster ")),
        facts_area,
    );
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

/// The cluster panel's lines, unwrapped.
fn facts(m: &Model) -> Vec<Line<'static>> {
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
    if let Some(rekey) = &m.rekey {
        let style = if rekey.on_epoch < rekey.machines {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new()
        };
        lines.push(Line::from(Span::styled(rekey.short(), style)));
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
    lines
}

fn draw_events(frame: &mut Frame, events: Rect, m: &Model) {
    let height = events.height.saturating_sub(2) as usize;
    // Newest first, each wrapped to the panel's width (read whole, not cut); what does not
    // fit below is the oldest.
    let lines: Vec<Line> = m
        .events
        .iter()
        .take(height)
        .map(|e| Line::from(format!("{:>6.1}s {}", e.at, e.text())))
        .collect();
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
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
