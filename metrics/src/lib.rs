//! The figures of an smon cluster and of one peer for Prometheus: rendered from a
//! [`ClusterView`](smon_proto_types::ClusterView) in the OpenMetrics text format (or
//! Prometheus' 0.0.4 text format, for scrapers that ask for it) by the `prometheus-client`
//! crate (`render.rs`), and served at `/metrics` over HTTP by a small blocking server
//! (`http.rs`, tiny_http). The console's exporter (`smon-console metrics --listen`) and a
//! peer that the cluster's settings opt in (`ClusterConfig::metrics`) both use it, so they
//! serve the same names.
//!
//! Metric names (every one starts `smon_`):
//! - the cluster, from the root aggregate of the view (exact once the cluster is quiet, the
//!   same counts `status --json` prints): `smon_cluster_machines`,
//!   `smon_cluster_machines_deployed`, `smon_cluster_machines_by_state{state}` (the peer
//!   states and `unknown`: listed, never heard of), `smon_cluster_membership_version`,
//!   `smon_cluster_livetag_enabled`, `smon_cluster_livetag_version`,
//!   `smon_cluster_livetag_machines{version,enabled}`, `smon_cluster_peer_version_machines{version}`,
//!   `smon_cluster_app_machines{app,state}`, and the histograms `smon_cluster_overhead_copies`
//!   (package copies before a machine's peer ran: the paper's Table II) and
//!   `smon_cluster_logins`;
//! - the answering peer, labelled `machine`: `smon_peer_view_age_seconds`,
//!   `smon_peer_gossip_sent_bytes_total`, `smon_peer_gossip_received_bytes_total`,
//!   `smon_peer_login_attempts_total`, `smon_peer_login_failures_total`,
//!   `smon_peer_deploy_attempts_total`, `smon_peer_deploy_failures_total`, and its listener's
//!   door (`smon_proto::door`): `smon_peer_door_refused_total{reason}` (full, handshakes,
//!   source, rate), `smon_peer_door_admitted_total`, `smon_peer_door_handshake_failures_total`,
//!   `smon_peer_door_handshake_timeouts_total`, `smon_peer_door_open_connections`;
//! - the console's exporter only: `smon_exporter_connected`, `smon_exporter_disconnects_total`.

mod http;
mod render;

pub use http::{MetricsError, MetricsServer, Scrape};
pub use render::{Exporter, Format, HISTOGRAM_BOUNDS, render};
