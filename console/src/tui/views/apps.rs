//! Apps: per application, machines by state; for the selected one, its state per machine.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Modifier, Style},
    text::Line,
    widgets::{Block, Borders, Cell, List, ListItem, Paragraph, Row as TableRow, Table},
};

use crate::tui::{app::App, model::app_state_word, ui::state_style};

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let m = &app.model;
    if m.apps.is_empty() {
        draw_empty(frame, area);
        return;
    }
    let [list, detail] =
        Layout::horizontal([Constraint::Length(46), Constraint::Min(30)]).areas(area);
    draw_list(frame, list, app);
    if let Some(selected) = m.apps.get(app.app_selected) {
        draw_detail(frame, detail, app, &selected.name);
    }
}

/// No application yet: say how to install one.
fn draw_empty(frame: &mut Frame, area: Rect) {
    frame.render_widget(
        Paragraph::new(vec![
            Line::from("No application reported by any machine yet."),
            Line::from("Install one with `i` or `:app install DIR`."),
        ])
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" applications "),
        ),
        area,
    );
}

/// The applications, each with its machines by state; the selected one highlighted.
fn draw_list(frame: &mut Frame, list: Rect, app: &App) {
    let m = &app.model;
    let items: Vec<ListItem> = m
        .apps
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let counts: Vec<String> = a.by_state.iter().map(|(s, n)| format!("{s} {n}")).collect();
            let text = format!("{:<14} {}", a.name, counts.join(", "));
            let style = if i == app.app_selected {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                Style::new()
            };
            ListItem::new(text).style(style)
        })
        .collect();
    frame.render_widget(
        List::new(items).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" applications "),
        ),
        list,
    );
}

/// The application `name`'s state on each machine (the rows that fit in `detail`).
fn draw_detail(frame: &mut Frame, detail: Rect, app: &App, name: &str) {
    let shown = detail.height.saturating_sub(3) as usize;
    let rows = app
        .model
        .rows
        .iter()
        .filter_map(|row| {
            let status = row.record.as_ref()?.apps.iter().find(|a| a.name == name)?;
            Some((row, status))
        })
        .take(shown)
        .map(|(row, status)| {
            let state = app_state_word(status.state);
            TableRow::new(vec![
                Cell::from(row.name.as_str()),
                Cell::from(state).style(state_style(state)),
                Cell::from(format!("{:?}", status.desired).to_lowercase()),
                Cell::from(status.version.to_string()),
                Cell::from(status.restarts.to_string()),
            ])
        });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Min(20),
                Constraint::Length(11),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(8),
            ],
        )
        .header(
            TableRow::new(vec!["MACHINE", "STATE", "DESIRED", "VERSION", "RESTARTS"])
                .style(Style::new().add_modifier(Modifier::BOLD)),
        )
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" {name} per machine ")),
        ),
        detail,
    );
}
