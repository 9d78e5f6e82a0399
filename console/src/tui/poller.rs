//! The data side: keeps a connection to some peer and sends the cluster view as it changes.
//! On a lost connection it reports, backs off and fails over to another known peer; it never
//! gives up. The TUI and `smon-console events` (`cmd_events.rs`) both watch through it.

use std::time::{Duration, Instant};

use smon_proto::{KeyringHandle, PeerServiceClient, transport};
use tokio::sync::mpsc;

use super::model::DataMsg;
use crate::connect::ctx;

pub struct Poller {
    /// Addresses to try, in order (the cluster's machines, or the one `--peer`).
    pub candidates: Vec<String>,
    pub key: KeyringHandle,
    pub every: Duration,
    pub started: Instant,
}

impl Poller {
    /// Watch until the receiver of `tx` is gone; `T`: the receiver's message (the TUI's
    /// `Action`, or `DataMsg` itself).
    pub async fn run<T: From<DataMsg> + Send>(self, tx: mpsc::Sender<T>) {
        let mut next = 0usize;
        let mut backoff = Duration::from_millis(250);
        loop {
            let addr = self.candidates[next % self.candidates.len().max(1)].clone();
            next += 1;
            let connected =
                transport::peer_client(addr.as_str(), &self.key, Duration::from_secs(2)).await;
            let error = match connected {
                Ok(client) => {
                    backoff = Duration::from_millis(250);
                    self.watch(&client, &tx).await
                }
                Err(e) => e.to_string(),
            };
            if tx.is_closed() {
                return;
            }
            let at = self.started.elapsed().as_secs_f64();
            let _ = tx.send(DataMsg::Disconnected { at, error }.into()).await;
            // Try the next peer at once; back off only after a full tour of the list.
            if next.is_multiple_of(self.candidates.len().max(1)) {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }

    /// Poll one peer until it fails; returns the error.
    async fn watch<T: From<DataMsg> + Send>(
        &self,
        client: &PeerServiceClient,
        tx: &mpsc::Sender<T>,
    ) -> String {
        let mut since = 0u64;
        loop {
            match client
                .cluster_view(ctx(Duration::from_secs(5)), since)
                .await
            {
                Ok(view) => {
                    let full = since == 0;
                    since = view.seq;
                    let at = self.started.elapsed().as_secs_f64();
                    if tx
                        .send(
                            DataMsg::View {
                                at,
                                full,
                                view: Box::new(view),
                            }
                            .into(),
                        )
                        .await
                        .is_err()
                    {
                        return "the watcher ended".into();
                    }
                }
                Err(e) => return e.to_string(),
            }
            tokio::time::sleep(self.every).await;
        }
    }
}
