//! The one message a supervisor sends its peer: an application's observed status. A narrow
//! sender, so that supervisors know nothing of the actor's mailbox.

use std::{future::Future, pin::Pin, sync::Arc};

use smon_proto::AppStatus;
use tokio::sync::mpsc;

type SendFn = dyn Fn(AppStatus) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// Sends [`AppStatus`]es into a channel of some other message type (the actor's `Msg`),
/// wrapped by the function given at construction. Cheap to clone.
#[derive(Clone)]
pub struct StatusSender(Arc<SendFn>);

impl StatusSender {
    /// Statuses go into `tx` as `wrap(status)`.
    pub fn new<M: Send + 'static>(tx: mpsc::Sender<M>, wrap: fn(AppStatus) -> M) -> Self {
        Self(Arc::new(move |status| {
            let tx = tx.clone();
            Box::pin(async move {
                // A closed channel: the peer is shutting down, and nobody needs the status.
                let _ = tx.send(wrap(status)).await;
            })
        }))
    }

    /// Send one status; waits while the channel is full, as the actor's mailbox does.
    pub async fn send(&self, status: AppStatus) {
        (self.0)(status).await;
    }
}
