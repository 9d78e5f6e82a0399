//! Prometheus metrics (issue 16 part 4) on a real local cluster that opted in to peers'
//! `/metrics` (`init --metrics-port`): `metrics` equals `status --json` once the cluster is
//! quiet and passes Prometheus' own parser; every peer serves its own figures; the
//! exporter (`metrics --listen`) is scraped over HTTP and fails over when its peer dies.

mod harness;
#[path = "../../metrics/tests/support/parsers.rs"]
mod parsers;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    process::{Command, Stdio},
    time::Duration,
};

use harness::{Cluster, console_bin, is_alive, kill, wait_for};
use parsers::{Sample, openmetrics_samples, promtool_check};
use serde_json::Value;
use smon_console::cluster_dir::ClusterDir;
use smon_proto::MachineId;

const MACHINES: usize = 6;

/// The figures `status --json` prints that the metrics carry too, by one name each.
fn status_figures(s: &Value) -> BTreeMap<String, f64> {
    let n = |v: &Value| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    let mut f = BTreeMap::new();
    for key in [
        "machines",
        "membership_version",
        "deployed",
        "running",
        "disabled",
        "unreachable",
    ] {
        f.insert(key.to_string(), n(&s[key]));
    }
    for (version, count) in s["versions"].as_object().unwrap() {
        f.insert(format!("version {version}"), n(count));
    }
    f.insert(
        "livetag enabled".into(),
        f64::from(u8::from(s["livetag"]["enabled"].as_bool().unwrap())),
    );
    f.insert("livetag version".into(), n(&s["livetag"]["version"]));
    for hist in ["overhead_histogram", "logins_histogram"] {
        let (mut count, mut sum) = (0.0, 0.0);
        for (k, machines) in s[hist].as_object().unwrap() {
            count += n(machines);
            sum += k.parse::<f64>().unwrap() * n(machines);
        }
        f.insert(format!("{hist} count"), count);
        f.insert(format!("{hist} sum"), sum);
    }
    f
}

/// The same figures, read from the metrics' samples.
fn metric_figures(samples: &[Sample]) -> BTreeMap<String, f64> {
    let mut f = BTreeMap::new();
    for s in samples {
        let label = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
        let key = match s.name.as_str() {
            "smon_cluster_machines" => "machines".to_string(),
            "smon_cluster_membership_version" => "membership_version".into(),
            "smon_cluster_machines_deployed" => "deployed".into(),
            "smon_cluster_machines_by_state" => match label("state").as_str() {
                state @ ("running" | "disabled" | "unreachable") => state.into(),
                _ => continue,
            },
            "smon_cluster_peer_version_machines" => format!("version {}", label("version")),
            "smon_cluster_livetag_enabled" => "livetag enabled".into(),
            "smon_cluster_livetag_version" => "livetag version".into(),
            "smon_cluster_overhead_copies_count" => "overhead_histogram count".into(),
            "smon_cluster_overhead_copies_sum" => "overhead_histogram sum".into(),
            "smon_cluster_logins_count" => "logins_histogram count".into(),
            "smon_cluster_logins_sum" => "logins_histogram sum".into(),
            _ => continue,
        };
        f.insert(key, s.value);
    }
    f
}

/// GET `path` from `addr` over HTTP/1.1 asking for OpenMetrics; (status line, body).
fn get(addr: &str, path: &str) -> std::io::Result<(String, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/openmetrics-text; \
         version=1.0.0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    Ok((
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    ))
}

fn samples_of(text: &str) -> Option<Vec<Sample>> {
    openmetrics_samples(text).map(|parsed| parsed.unwrap_or_else(|e| panic!("{e}\n{text}")))
}

/// The value of `name` without labels.
fn value(samples: &[Sample], name: &str) -> f64 {
    parsers::value(samples, name, &[]).unwrap_or_else(|| panic!("no {name}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn metrics_equal_status_parse_and_are_served_by_peers_and_the_exporter() {
    let port = free_port().to_string();
    let c = Cluster::new_with(MACHINES, "1s", |_| vec!["--metrics-port".into(), port]);
    c.ok(&["deploy"]);
    c.ok(&["wait", "--deployed", "all", "--timeout", "90s"]);

    // Quiet: two `status --json` around one `metrics` agree; then the metrics must too.
    let mut last = String::new();
    wait_for(
        Duration::from_secs(60),
        "metrics to equal status --json",
        || {
            let before = status_figures(&c.status());
            let text = c.ok(&["metrics"]);
            let after = status_figures(&c.status());
            let Some(samples) = samples_of(&text) else {
                return true; // no OpenMetrics parser here: said so above
            };
            let metrics = metric_figures(&samples);
            last = format!("status {before:?}\nmetrics {metrics:?}");
            before == after && metrics == before
        },
    );
    eprintln!("{last}");
    let prometheus = c.ok(&["metrics", "--format", "prometheus"]);
    if let Some(checked) = promtool_check(&prometheus) {
        checked.unwrap_or_else(|e| panic!("{e}\n{prometheus}"));
    }

    // Every peer serves its own figures where the settings say.
    let dir = ClusterDir::open(&c.dir).unwrap();
    let mut deploys = 0.0;
    for name in &c.names {
        let machine = MachineId::local(name);
        let addr = dir
            .config
            .metrics_address(&machine, &dir.membership)
            .unwrap();
        let (status, body) = get(&addr, "/metrics").unwrap_or_else(|e| panic!("{addr}: {e}"));
        assert!(status.contains("200"), "{addr}: {status}\n{body}");
        let Some(samples) = samples_of(&body) else {
            continue;
        };
        let own = |metric: &str| {
            samples
                .iter()
                .find(|s| s.name == metric && s.labels.get("machine") == Some(&machine.to_string()))
                .unwrap_or_else(|| panic!("{addr}: no {metric} of {machine}\n{body}"))
                .value
        };
        assert!(own("smon_peer_gossip_sent_bytes_total") > 0.0, "{body}");
        assert!(own("smon_peer_gossip_received_bytes_total") > 0.0, "{body}");
        assert!(own("smon_peer_view_age_seconds") >= 0.0);
        deploys += own("smon_peer_deploy_attempts_total");
        assert_eq!(
            value(&samples, "smon_cluster_machines_deployed"),
            MACHINES as f64
        );
    }
    // Every machine but the first was deployed by some peer (each counts its own attempts).
    assert!(
        deploys >= (MACHINES - 1) as f64,
        "{deploys} deployments counted"
    );

    exporter_scrapes_and_fails_over(&c);
}

/// `metrics --listen 127.0.0.1:0`: scraped once over HTTP, then its peer is killed and it
/// answers from another.
fn exporter_scrapes_and_fails_over(c: &Cluster) {
    let mut child = Command::new(console_bin())
        .arg("-C")
        .arg(&c.dir)
        .args(["metrics", "--listen", "127.0.0.1:0", "--every", "200ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    let scrape = || {
        let (status, body) = get(&addr, "/metrics").unwrap();
        (status.contains("200")).then_some(body)
    };
    let followed = |body: &str| -> Option<(String, f64)> {
        let samples = samples_of(body)?;
        let s = samples
            .iter()
            .find(|s| s.name == "smon_peer_login_attempts_total")?;
        Some((
            s.labels["machine"].clone(),
            value(&samples, "smon_exporter_connected"),
        ))
    };
    let mut body = String::new();
    wait_for(
        Duration::from_secs(20),
        "the exporter's first scrape",
        || scrape().map(|b| body = b).is_some(),
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    if let Some((machine, connected)) = followed(&body) {
        assert_eq!(connected, 1.0, "{body}");
        let name = machine.strip_prefix("local:").unwrap().to_string();
        c.kill9(&name);
        wait_for(Duration::from_secs(30), "the exporter to fail over", || {
            scrape()
                .and_then(|b| followed(&b))
                .is_some_and(|(m, connected)| m != machine && connected == 1.0)
        });
        let samples = samples_of(&scrape().unwrap()).unwrap();
        assert!(value(&samples, "smon_exporter_disconnects_total") >= 1.0);
    }
    kill(child.id() as i32);
    let _ = child.wait();
    assert!(!is_alive(child.id() as i32));
}
