//! The exporter's scrape at 10,000 machines (issue 16's goal: ≤ 50 ms to render, ≤ 200 KB
//! of text): renders a sim-sized view (`tests/support/view.rs`: 10,000 records summed into
//! the root aggregate as peers sum them, 8 applications) many times in both formats and
//! prints the median and worst time and the size.
//!
//! `cargo run --release -p smon-metrics --example render_bench [MACHINES] [APPS] [ROUNDS]`

#[path = "../tests/support/view.rs"]
mod view;

use std::{
    io::{Read, Write},
    time::Instant,
};

use smon_metrics::{Exporter, Format, MetricsServer, Scrape, render};

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
    scrape_over_http(view, rounds);
}

/// Whole scrapes, as Prometheus makes them: connect, GET /metrics, read the answer.
fn scrape_over_http(view: smon_proto_types::ClusterView, rounds: u32) {
    let machines = view.machines;
    let server = MetricsServer::bind("127.0.0.1:0").expect("bind loopback");
    let addr = server.local_addr();
    server.spawn(move |format| Scrape::Text(render(&view, Some(Exporter::default()), format)));
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text\r\n\
              Connection: close\r\n\r\n",
        )
        .expect("send");
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).expect("read");
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        bytes = answer.len();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "HTTP scrape (OpenMetrics): {machines} machines: median {:.3} ms, max {:.3} ms \
         ({rounds} rounds), {bytes} bytes with headers",
        times[times.len() / 2],
        times[times.len() - 1],
    );
}
