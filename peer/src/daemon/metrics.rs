//! `/metrics` served by the peer itself, when the cluster's settings opt in
//! (`ClusterConfig::metrics`): each scrape asks the actor for the view (no records) and
//! renders it in the scraper's thread, so that the actor only copies the view.

use smon_metrics::{MetricsServer, Scrape, render};
use smon_proto::{ClusterConfig, MachineId, Membership};
use tokio::sync::{mpsc, oneshot};

use super::actor::Msg;

/// Serve `/metrics` where the settings say, if they do. A port that cannot be bound is
/// logged and left: the peer's work does not depend on it.
pub fn serve(
    config: &ClusterConfig,
    me: &MachineId,
    membership: &Membership,
    tx: mpsc::Sender<Msg>,
) {
    let Some(addr) = config.metrics_address(me, membership) else {
        return;
    };
    let server = match MetricsServer::bind(&addr) {
        Ok(server) => server,
        Err(e) => {
            tracing::warn!("{e}; this peer serves no metrics");
            return;
        }
    };
    tracing::info!("serving metrics at http://{}/metrics", server.local_addr());
    server.spawn(move |format| {
        let (reply, answer) = oneshot::channel();
        // `since` past every record: the counts, the zones and no records.
        if tx.blocking_send(Msg::View(u64::MAX, reply)).is_err() {
            return Scrape::Unavailable("the peer is shutting down".into());
        }
        match answer.blocking_recv() {
            Ok(view) => Scrape::Text(render(&view, None, format)),
            Err(_) => Scrape::Unavailable("the peer is shutting down".into()),
        }
    });
}
