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
        return;
    }
    let [list, detail] =
        Layout::horizontal([Constraint::Length(46), Constraint::Min(30)]).areas(area);
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
    let Some(selected) = m.apps.get(app.app_selected) else {
        return;
    };
    let shown = detail.height.saturating_sub(3) as usize;
    let rows = m
        .rows
        .iter()
        .filter_map(|row| {
            let status = row
                .record
                .as_ref()?
                .apps
                .iter()
                .find(|a| a.name == selected.name)?;
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
                .title(format!(" {} per machine ", selected.name)),
        ),
        detail,
    );
}
