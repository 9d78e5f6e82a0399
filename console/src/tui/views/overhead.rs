//! Overhead: package copies per machine (the paper's Table II) and logins per machine.

use std::collections::BTreeMap;

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Style},
    widgets::{Bar, BarChart, BarGroup, Block, Borders},
};

use crate::tui::app::App;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let [copies, logins] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let m = &app.model;
    let mean = mean(&m.overhead_histogram);
    histogram(
        frame,
        copies,
        &m.overhead_histogram,
        &format!(" package copies per machine (mean {mean:.2}; paper: 1.88) "),
        Color::Cyan,
    );
    let mean = mean_of(&m.logins_histogram);
    histogram(
        frame,
        logins,
        &m.logins_histogram,
        &format!(" logins per machine (mean {mean:.2}) "),
        Color::Magenta,
    );
}

fn mean(h: &BTreeMap<u32, usize>) -> f64 {
    mean_of(h)
}

fn mean_of(h: &BTreeMap<u32, usize>) -> f64 {
    let n: usize = h.values().sum();
    if n == 0 {
        return 0.0;
    }
    h.iter()
        .map(|(k, v)| f64::from(*k) * *v as f64)
        .sum::<f64>()
        / n as f64
}

fn histogram(frame: &mut Frame, area: Rect, h: &BTreeMap<u32, usize>, title: &str, color: Color) {
    let bars: Vec<Bar> = h
        .iter()
        .map(|(k, v)| {
            Bar::default()
                .value(*v as u64)
                .label(ratatui::text::Line::from(k.to_string()))
                .text_value(v.to_string())
        })
        .collect();
    frame.render_widget(
        BarChart::default()
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(title.to_string()),
            )
            .bar_width(5)
            .bar_gap(2)
            .bar_style(Style::new().fg(color))
            .data(BarGroup::default().bars(&bars)),
        area,
    );
}
