//! Reaching the cluster: any peer will do, since every peer holds the whole cluster view.

use std::time::Duration;

use anyhow::bail;
use smon_proto::{
    ClusterView, ControlAction, MachineId, PeerServiceClient, tarpc::context, transport,
};

use crate::cluster_dir::ClusterDir;

pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

pub fn ctx(timeout: Duration) -> context::Context {
    let mut ctx = context::current();
    ctx.deadline = std::time::Instant::now() + timeout;
    ctx
}

/// Connect to the first peer that answers, trying machines in membership order (only the
/// `--via` machine when one is given).
pub async fn any_peer(dir: &ClusterDir) -> anyhow::Result<(MachineId, PeerServiceClient)> {
    let mut last_error = None;
    for (machine, addr) in dir.peers_to_ask() {
        match transport::peer_client(addr.as_str(), &dir.key, CONNECT_TIMEOUT).await {
            Ok(client) => return Ok((machine, client)),
            Err(e @ smon_proto::ProtoError::WrongKey { .. }) => {
                bail!(
                    "{machine} ({addr}) refused the cluster key of {}: {e}",
                    dir.path.display()
                )
            }
            Err(e) => last_error = Some(e),
        }
    }
    match (last_error, &dir.via) {
        (Some(e), Some(via)) => bail!("--via {via}: its peer does not answer: {e}"),
        (Some(e), None) => bail!(
            "no peer of {} answers ({} machines tried; last error: {e})",
            dir.path.display(),
            dir.membership.len()
        ),
        (None, _) => bail!("{}: the membership list is empty", dir.path.display()),
    }
}

/// The cluster view from any peer.
pub async fn view(dir: &ClusterDir) -> anyhow::Result<ClusterView> {
    let (machine, client) = any_peer(dir).await?;
    client
        .cluster_view(ctx(Duration::from_secs(10)), 0)
        .await
        .map_err(|e| anyhow::anyhow!("{machine}: {e}"))
}

/// Send an operator action to one peer.
pub async fn control(dir: &ClusterDir, action: ControlAction) -> anyhow::Result<String> {
    let (machine, client) = any_peer(dir).await?;
    control_one(&machine, &client, action).await
}

pub async fn control_one(
    machine: &MachineId,
    client: &PeerServiceClient,
    action: ControlAction,
) -> anyhow::Result<String> {
    client
        .control(ctx(Duration::from_secs(30)), action)
        .await
        .map_err(|e| anyhow::anyhow!("{machine}: {e}"))?
        .map_err(|refusal| anyhow::anyhow!("{machine} refused: {refusal}"))
}

/// Each machine's own livetag, asked of every peer directly (disabled peers no longer gossip,
/// so their own word is the one to trust). `None` where no peer answers.
pub async fn livetags(dir: &ClusterDir) -> Vec<(MachineId, Option<smon_proto::LiveTag>)> {
    let mut tasks = Vec::new();
    for (machine, addr) in dir.addresses() {
        let key = dir.key.clone();
        tasks.push(tokio::spawn(async move {
            let tag = async {
                let client = transport::peer_client(addr.as_str(), &key, CONNECT_TIMEOUT)
                    .await
                    .ok()?;
                let view = client
                    .cluster_view(ctx(Duration::from_secs(5)), u64::MAX)
                    .await
                    .ok()?;
                Some(view.livetag)
            }
            .await;
            (machine, tag)
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        if let Ok(result) = task.await {
            out.push(result);
        }
    }
    out
}
