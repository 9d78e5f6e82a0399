//! The Grafana dashboard (`assets/grafana/smon.json`) is valid JSON and plots only metric
//! names that smon serves.

#[path = "support/view.rs"]
mod view;

use smon_metrics::{Exporter, Format, render};

#[test]
fn every_metric_the_dashboard_plots_is_served() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/grafana/smon.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let text = render(
        &view::sim_sized_view(100, 2),
        Some(Exporter::default()),
        Format::OpenMetrics,
    );
    let served: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut plotted = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("smon_"))
            {
                assert!(
                    served.contains(&name),
                    "panel {}: {name} is not served",
                    panel["title"]
                );
                plotted += 1;
            }
        }
    }
    assert!(plotted >= 10, "{plotted}");
    let titles: Vec<_> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert!(titles.contains(&"Deploy curve") && titles.contains(&"Application states"));
}
