//! The metrics text of a sim-sized view: real parsers accept it, its figures are the view's,
//! it stays small, and the HTTP server serves it.

#[path = "support/parsers.rs"]
mod parsers;
#[path = "support/view.rs"]
mod view;

use std::io::{Read, Write};

use parsers::{openmetrics_samples, promtool_check, value};
use smon_metrics::{Exporter, Format, MetricsServer, Scrape, render};
use smon_proto_types::{AppState, PeerState};

/// promtool reads Prometheus' text format 0.0.4 (its `check metrics` has no OpenMetrics
/// parser: it reads an OpenMetrics counter's `_total` sample as a family of its own without
/// help), so it checks that format; the OpenMetrics text goes through the client library's
/// strict OpenMetrics parser.
#[test]
fn prometheus_and_the_openmetrics_parser_accept_the_text() {
    let view = view::sim_sized_view(200, 3);
    let exporter = Some(Exporter {
        connected: true,
        disconnects: 2,
    });
    let text = render(&view, exporter, Format::Prometheus);
    if let Some(checked) = promtool_check(&text) {
        checked.unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
    let text = render(&view, exporter, Format::OpenMetrics);
    assert!(text.ends_with("# EOF\n"), "{text}");
    if let Some(parsed) = openmetrics_samples(&text) {
        parsed.unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
}

#[test]
fn the_figures_are_the_root_aggregates() {
    let view = view::sim_sized_view(1000, 4);
    let text = render(&view, None, Format::OpenMetrics);
    let Some(samples) = openmetrics_samples(&text) else {
        return;
    };
    let samples = samples.unwrap();
    let root = &view.root;
    let v = |name, labels: &[(&str, &str)]| {
        value(&samples, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    assert_eq!(v("smon_cluster_machines", &[]), 1000.0);
    assert_eq!(
        v("smon_cluster_machines_deployed", &[]),
        f64::from(root.up())
    );
    for state in PeerState::ALL {
        let labels = [("state", state.as_str())];
        assert_eq!(
            v("smon_cluster_machines_by_state", &labels),
            f64::from(root.count(state))
        );
    }
    assert_eq!(
        v(
            "smon_cluster_machines_by_state",
            &[("state", "unreachable")]
        ),
        20.0
    );
    for (version, n) in &root.versions {
        let labels = [("version", version.to_string())];
        let labels: Vec<_> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            v("smon_cluster_peer_version_machines", &labels),
            f64::from(*n)
        );
    }
    let app = root.app("app-02").unwrap();
    for state in AppState::ALL {
        let labels = [("app", "app-02"), ("state", state.as_str())];
        assert_eq!(
            v("smon_cluster_app_machines", &labels),
            f64::from(app.count(state))
        );
    }
    // The histograms: counts and sums of the tables, cumulative buckets.
    let up = f64::from(root.up());
    assert_eq!(v("smon_cluster_overhead_copies_count", &[]), up);
    let sum: u64 = root
        .overhead
        .iter()
        .map(|&(k, n)| u64::from(k) * u64::from(n))
        .sum();
    assert_eq!(v("smon_cluster_overhead_copies_sum", &[]), sum as f64);
    let at_most_2: u32 = root
        .overhead
        .iter()
        .filter(|(k, _)| *k <= 2)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        v("smon_cluster_overhead_copies_bucket", &[("le", "2.0")]),
        f64::from(at_most_2)
    );
    assert_eq!(v("smon_cluster_logins_bucket", &[("le", "+Inf")]), up);
    // The answering peer's own figures.
    let me = [("machine", "local:m0007")];
    assert_eq!(v("smon_peer_view_age_seconds", &me), 2.5);
    assert_eq!(v("smon_peer_gossip_sent_bytes_total", &me), 123_456.0);
    assert_eq!(v("smon_peer_login_failures_total", &me), 3.0);
    assert_eq!(v("smon_peer_deploy_attempts_total", &me), 12.0);
}

/// The goal's size half: ≤ 200 KB at 10,000 machines (the time half is the bench:
/// `cargo run --release -p smon-metrics --example render_bench`).
#[test]
fn ten_thousand_machines_render_under_200_kb() {
    let view = view::sim_sized_view(10_000, 8);
    let text = render(&view, Some(Exporter::default()), Format::OpenMetrics);
    assert!(text.len() <= 200_000, "{} bytes", text.len());
}

/// One scrape over real HTTP: GET /metrics in the format asked for, 404 elsewhere, 503 when
/// there is nothing to serve.
#[test]
fn the_server_serves_a_scrape() {
    let view = view::sim_sized_view(50, 2);
    let server = MetricsServer::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    let _thread = server.spawn(move |format| {
        if view.machines == 0 {
            Scrape::Unavailable("no view".into())
        } else {
            Scrape::Text(render(&view, None, format))
        }
    });
    let get = |path: &str, accept: &str| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    };
    let om = get(
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
    );
    assert!(om.starts_with("HTTP/1.1 200"), "{om}");
    assert!(om.contains("application/openmetrics-text"), "{om}");
    assert!(
        om.contains("\nsmon_cluster_machines 50\n") && om.ends_with("# EOF\n"),
        "{om}"
    );
    let plain = get("/metrics", "text/plain");
    assert!(plain.contains("text/plain; version=0.0.4"), "{plain}");
    assert!(!plain.contains("# EOF"), "{plain}");
    assert!(get("/other", "*/*").starts_with("HTTP/1.1 404"));
}

#[test]
fn a_bind_error_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = MetricsServer::bind(&addr).err().expect("the port is taken");
    assert!(err.to_string().contains(&addr), "{err}");
}
