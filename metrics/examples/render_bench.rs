//! The exporter's scrape at 10,000 machines (issue 16's goal: ≤ 50 ms to render, ≤ 200 KB
//! of text): renders a sim-sized view (`tests/support/view.rs`: 10,000 records summed into
//! the root aggregate as peers sum them, 8 applications) many times in both formats and
//! prints the median and worst time and the size.
//!
//! `cargo run --release -p smon-metrics --example render_bench [MACHINES] [APPS] [ROUNDS]`

#[path = "../tests/support/view.rs"]
mod view;

use std::time::Instant;

use smon_metrics::{Exporter, Format, render};

fn main() {
    let arg = |i: usize, default: u32| {
        std::env::args()
            .nth(i)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let (machines, apps, rounds) = (arg(1, 10_000), arg(2, 8), arg(3, 200));
    let view = view::sim_sized_view(machines, apps);
    for format in [Format::OpenMetrics, Format::Prometheus] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..rounds {
            let start = Instant::now();
            let text = render(&view, Some(Exporter::default()), format);
            times.push(start.elapsed().as_secs_f64() * 1000.0);
            bytes = text.len();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{format:?}: {machines} machines, {apps} apps: render median {:.3} ms, max {:.3} ms \
             ({rounds} rounds), {bytes} bytes",
            times[times.len() / 2],
            times[times.len() - 1],
        );
    }
}
