//! Machines: a table that builds rows only for the visible slice, sortable and filterable,
//! with a detail pane for the selected machine.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Paragraph, Row as TableRow, Table, Wrap},
};

use crate::tui::{
    app::{App, SORT_KEYS, SortKey},
    model::Row,
    ui::state_style,
};

const COLUMNS: [(&str, SortKey); 6] = [
    ("MACHINE", SortKey::Machine),
    ("STATE", SortKey::State),
    ("VERSION", SortKey::Version),
    ("OVERHEAD", SortKey::Overhead),
    ("LOGINS", SortKey::Logins),
    ("LOAD", SortKey::Load),
];

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let [table_area, detail] =
        Layout::horizontal([Constraint::Min(60), Constraint::Length(38)]).areas(area);
    debug_assert_eq!(COLUMNS.len(), SORT_KEYS.len());
    let header = TableRow::new(COLUMNS.iter().map(|(name, key)| {
        let arrow = match (*key == app.sort, app.descending) {
            (true, false) => "▲",
            (true, true) => "▼",
            _ => "",
        };
        Cell::from(format!("{name}{arrow}"))
    }))
    .style(Style::new().add_modifier(Modifier::BOLD).fg(Color::Cyan));

    let rows_shown = table_area.height.saturating_sub(3) as usize;
    let start = app.scroll.min(app.visible.len());
    let end = (start + rows_shown).min(app.visible.len());
    let rows = app.visible[start..end].iter().enumerate().map(|(k, &i)| {
        let row = &app.model.rows[i];
        let selected = start + k == app.selected;
        table_row(row, selected)
    });
    let title = match &app.filter {
        Some(_) => format!(
            " machines {}/{} matching /{}/ ",
            app.visible.len(),
            app.model.rows.len(),
            app.filter_text
        ),
        None => format!(" machines ({}) ", app.model.rows.len()),
    };
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Min(24),
                Constraint::Length(12),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(7),
                Constraint::Length(6),
            ],
        )
        .header(header)
        .block(Block::default().borders(Borders::ALL).title(title)),
        table_area,
    );

    let lines = match app.selected_row() {
        None => vec![Line::from("no machine selected")],
        Some(row) => details(row, app.model.now),
    };
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(" selected ")),
        detail,
    );
}

fn table_row(row: &Row, selected: bool) -> TableRow<'_> {
    let state = row.state_word();
    let (overhead, logins, load) = match &row.record {
        Some(r) => (
            r.overhead.to_string(),
            r.logins.to_string(),
            format!("{:.2}", f64::from(r.load) / 100.0),
        ),
        None => ("-".into(), "-".into(), "-".into()),
    };
    let style = if selected {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new()
    };
    TableRow::new(vec![
        Cell::from(row.name.as_str()),
        Cell::from(state).style(state_style(state)),
        Cell::from(row.version()),
        Cell::from(overhead),
        Cell::from(logins),
        Cell::from(load),
    ])
    .style(style)
}

/// The selected machine's lines; `now` the TUI's clock, for the record's age.
fn details(row: &Row, now: f64) -> Vec<Line<'static>> {
    let mut lines = vec![
        Line::from(row.name.clone()),
        Line::from(format!("state    {}", row.state_word())),
    ];
    if let Some(seen_at) = row.seen_at {
        lines.push(Line::from(format!(
            "seen     {:.0}s ago",
            (now - seen_at).max(0.0)
        )));
    }
    if let Some(r) = &row.record {
        lines.push(Line::from(format!("version  {}", row.version())));
        lines.push(Line::from(format!(
            "livetag  {} v{}",
            if r.livetag.enabled {
                "enabled"
            } else {
                "disabled"
            },
            r.livetag.version
        )));
        lines.push(Line::from(format!("overhead {} copies", r.overhead)));
        lines.push(Line::from(format!("logins   {}", r.logins)));
        lines.push(Line::from(format!(
            "load     {:.2}",
            f64::from(r.load) / 100.0
        )));
        lines.push(Line::from(format!("rev      {}", r.rev)));
        if let Some(why) = &r.reason {
            lines.push(Line::from(Span::styled(
                format!("why      {why}"),
                Style::new().fg(Color::Red),
            )));
        }
        if r.apps.is_empty() {
            lines.push(Line::from("apps     -"));
        }
        for a in &r.apps {
            lines.push(Line::from(format!(
                "app {} {} {:?} ({} restarts)",
                a.name, a.version, a.state, a.restarts
            )));
            if let Some(why) = &a.reason {
                lines.push(Line::from(Span::styled(
                    format!("  why: {why}"),
                    Style::new().fg(Color::Red),
                )));
            }
        }
    }
    lines
}
