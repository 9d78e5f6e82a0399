//! A cluster view as OpenMetrics text, written by `prometheus-client` (a [`Collector`] that
//! encodes one snapshot per scrape, the crate's pattern for exporters).

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::{Registry, Unit},
};
use smon_proto_types::{Aggregate, AppState, ClusterView, MachineId, PeerCounters, PeerState};

/// Upper bounds of the buckets of the overhead and logins histograms (copies or logins per
/// machine); `+Inf` follows. Small integers: a machine normally needs 1 to 3.
pub const HISTOGRAM_BOUNDS: [u32; 12] = [0, 1, 2, 3, 4, 5, 6, 8, 10, 16, 32, 64];

/// The text format to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (`application/openmetrics-text; version=1.0.0`), ends `# EOF`.
    OpenMetrics,
    /// Prometheus' text format 0.0.4 (`text/plain; version=0.0.4`), for scrapers that do not
    /// ask for OpenMetrics.
    Prometheus,
}

impl Format {
    /// The format a scraper asks for in its `Accept` header: OpenMetrics when it names it.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The HTTP `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// What the console's exporter adds about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exporter {
    /// The last poll of a peer succeeded (the figures are current).
    pub connected: bool,
    /// Connections to peers lost (or never made) since the exporter started.
    pub disconnects: u64,
}

/// The figures of `view` (and of `exporter`, if given) in `format`.
///
/// The cluster's figures are the root aggregate's (`status` counts from it too); the peer's
/// are those of `view.answered_by`, labelled with it.
pub fn render(view: &ClusterView, exporter: Option<Exporter>, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot {
        machines: view.machines,
        membership_version: view.membership_version,
        livetag: (view.livetag.enabled, view.livetag.version),
        root: view.root.clone(),
        machine: view.answered_by.clone(),
        view_age_ms: view.now_ms.saturating_sub(view.as_of_ms),
        peer: view.peer,
        exporter,
    }));
    let mut text = String::new();
    let written = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &registry),
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        }
    };
    written.expect("writing to a String does not fail");
    text
}

/// One scrape's data, owned (a [`Collector`] is `'static`).
#[derive(Debug)]
struct Snapshot {
    machines: u32,
    membership_version: u64,
    livetag: (bool, u64),
    root: Aggregate,
    machine: MachineId,
    view_age_ms: u64,
    peer: PeerCounters,
    exporter: Option<Exporter>,
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_cluster(&mut enc)?;
        self.encode_apps(&mut enc)?;
        self.encode_peer(&mut enc)?;
        if let Some(e) = self.exporter {
            let connected = "1 while the exporter's last poll of a peer succeeded";
            gauge(
                &mut enc,
                "smon_exporter_connected",
                connected,
                i64::from(e.connected),
            )?;
            counter(
                &mut enc,
                "smon_exporter_disconnects",
                "Connections to peers the exporter lost or could not make",
                e.disconnects,
                None,
            )?;
        }
        Ok(())
    }
}

impl Snapshot {
    fn encode_cluster(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let root = &self.root;
        gauge(
            enc,
            "smon_cluster_machines",
            "Machines in the membership list",
            self.machines.into(),
        )?;
        let deployed = "Machines known to run a peer (running, disabled or removed)";
        gauge(
            enc,
            "smon_cluster_machines_deployed",
            deployed,
            root.up().into(),
        )?;
        let unknown = i64::from(self.machines) - i64::from(root.known());
        let states = PeerState::ALL
            .iter()
            .map(|s| ([("state", s.as_str())], i64::from(root.count(*s))))
            .chain([([("state", "unknown")], unknown.max(0))]);
        let help = "Machines by peer state (unknown: listed, no record heard of yet)";
        gauge_family(enc, "smon_cluster_machines_by_state", help, states)?;
        let version = "Version of the membership list";
        gauge(
            enc,
            "smon_cluster_membership_version",
            version,
            self.membership_version as i64,
        )?;
        let (enabled, tag) = self.livetag;
        let help = "1 while self-management is on (the livetag the answering peer holds)";
        gauge(
            enc,
            "smon_cluster_livetag_enabled",
            help,
            i64::from(enabled),
        )?;
        let help = "Version of the livetag the answering peer holds";
        gauge(enc, "smon_cluster_livetag_version", help, tag as i64)?;
        let tags = root.livetags.iter().map(|(t, n)| {
            let labels = [
                ("version", t.version.to_string()),
                ("enabled", t.enabled.to_string()),
            ];
            (labels, i64::from(*n))
        });
        let help = "Deployed machines by the livetag their record carries";
        gauge_family(enc, "smon_cluster_livetag_machines", help, tags)?;
        let versions = root
            .versions
            .iter()
            .map(|(v, n)| ([("version", v.to_string())], i64::from(*n)));
        let help = "Deployed machines by peer version";
        gauge_family(enc, "smon_cluster_peer_version_machines", help, versions)?;
        let help = "Package copies a machine received before its peer ran (the paper's overhead)";
        histogram(enc, "smon_cluster_overhead_copies", help, &root.overhead)?;
        let help = "Logins into a deployed machine by other peers";
        histogram(enc, "smon_cluster_logins", help, &root.logins)
    }

    fn encode_apps(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.root.apps.iter().flat_map(|app| {
            AppState::ALL.iter().map(|s| {
                let labels = [("app", app.name.clone()), ("state", s.as_str().to_owned())];
                (labels, i64::from(app.count(*s)))
            })
        });
        let help = "Deployed machines by application and application state";
        gauge_family(enc, "smon_cluster_app_machines", help, rows)
    }

    fn encode_peer(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let label = [("machine", self.machine.to_string())];
        let age = self.view_age_ms as f64 / 1000.0;
        let mut m = enc.encode_descriptor(
            "smon_peer_view_age",
            "Age of the oldest information the answering peer's cluster counts are made of",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        ConstGauge::new(age).encode(m.encode_family(&label)?)?;
        let p = &self.peer;
        let counters: [(&str, &str, u64, Option<&Unit>); 6] = [
            (
                "smon_peer_gossip_sent",
                "Bytes of epidemic calls and replies the peer sent",
                p.gossip_sent_bytes,
                Some(&Unit::Bytes),
            ),
            (
                "smon_peer_gossip_received",
                "Bytes of epidemic calls and replies the peer received",
                p.gossip_received_bytes,
                Some(&Unit::Bytes),
            ),
            (
                "smon_peer_login_attempts",
                "Logins to other machines the peer started",
                p.login_attempts,
                None,
            ),
            (
                "smon_peer_login_failures",
                "Logins to other machines that failed",
                p.login_failures,
                None,
            ),
            (
                "smon_peer_deploy_attempts",
                "Deployments the peer started",
                p.deploy_attempts,
                None,
            ),
            (
                "smon_peer_deploy_failures",
                "Deployments that failed",
                p.deploy_failures,
                None,
            ),
        ];
        for (name, help, value, unit) in counters {
            let mut m = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
            ConstCounter::new(value).encode(m.encode_family(&label)?)?;
        }
        self.encode_door(enc)
    }

    /// What the answering peer's listener let in and refused (`smon_proto::door`).
    fn encode_door(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let machine = self.machine.to_string();
        let d = &self.peer.door;
        let refused = [
            ("full", d.refused_full),
            ("handshakes", d.refused_handshakes),
            ("source", d.refused_source),
            ("rate", d.refused_rate),
        ];
        let help = "Connections the peer's listener refused before any handshake, by reason \
                    (full: its connection cap; handshakes: its cap on handshakes in flight; \
                    source: a source address's caps; rate: a source address's rate)";
        let mut m =
            enc.encode_descriptor("smon_peer_door_refused", help, None, MetricType::Counter)?;
        for (reason, value) in refused {
            let labels = [("machine", machine.clone()), ("reason", reason.to_owned())];
            ConstCounter::new(value).encode(m.encode_family(&labels)?)?;
        }
        let label = [("machine", machine)];
        let counters = [
            (
                "smon_peer_door_admitted",
                "Connections the peer's listener let in to a handshake",
                d.admitted,
            ),
            (
                "smon_peer_door_handshake_failures",
                "Handshakes that failed (wrong cluster key, not a handshake)",
                d.handshake_failures,
            ),
            (
                "smon_peer_door_handshake_timeouts",
                "Handshakes closed for silence past the handshake timeout",
                d.handshake_timeouts,
            ),
        ];
        for (name, help, value) in counters {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(m.encode_family(&label)?)?;
        }
        let open = i64::try_from(d.open).unwrap_or(i64::MAX);
        gauge_family(
            enc,
            "smon_peer_door_open_connections",
            "Connections the peer's listener holds open now (handshaking or established)",
            [(label, open)],
        )
    }
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(m)
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
    unit: Option<&Unit>,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
    ConstCounter::new(value).encode(m)
}

/// A gauge per label set; `rows` gives each label set and its value.
fn gauge_family<L: prometheus_client::encoding::EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(value).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A histogram from a sorted (value → machines) table, in [`HISTOGRAM_BOUNDS`] buckets.
fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    table: &[(u32, u32)],
) -> Result<(), std::fmt::Error> {
    let mut buckets: Vec<(f64, u64)> = HISTOGRAM_BOUNDS
        .iter()
        .map(|&b| (f64::from(b), 0))
        .chain([(f64::INFINITY, 0)])
        .collect();
    let (mut sum, mut count) = (0f64, 0u64);
    for &(value, machines) in table {
        let slot = HISTOGRAM_BOUNDS.partition_point(|&b| b < value);
        buckets[slot].1 += u64::from(machines);
        sum += f64::from(value) * f64::from(machines);
        count += u64::from(machines);
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}
