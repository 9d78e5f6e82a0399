//! Reaching the cluster: any peer will do, since every peer holds the whole cluster view.

use std::time::Duration;

use anyhow::{Context, bail};
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

/// Which machine's peer `client` is (it says so in its view).
async fn answering_machine(client: &PeerServiceClient) -> anyhow::Result<MachineId> {
    let view = client
        .cluster_view(ctx(Duration::from_secs(5)), u64::MAX)
        .await
        .context("asking the peer who it is")?;
    Ok(view.answered_by)
}

/// A client of `machine`'s own peer: connected at its address, and checked to be that
/// machine's (another machine's peer there means two entries share an address and port:
/// what it says would be taken for `machine`'s).
pub async fn peer_of(dir: &ClusterDir, machine: &MachineId) -> anyhow::Result<PeerServiceClient> {
    let addr = dir.peer_address(machine);
    let client = transport::peer_client(addr.as_str(), &dir.key, CONNECT_TIMEOUT)
        .await
        .with_context(|| format!("the peer of {machine} ({addr}) does not answer"))?;
    let who = answering_machine(&client)
        .await
        .with_context(|| format!("{machine} ({addr})"))?;
    if who != *machine {
        bail!(
            "CONFLICT: {machine}'s address {addr} is answered by the peer of {who}: two \
             machines share that address and port"
        );
    }
    Ok(client)
}

/// Connect to the first peer that answers, trying machines in membership order (only the
/// `--via` machine, checked to be its own peer, when one is given); the machine that answered.
pub async fn any_peer(dir: &ClusterDir) -> anyhow::Result<(MachineId, PeerServiceClient)> {
    if let Some(via) = &dir.via {
        let client = peer_of(dir, via)
            .await
            .with_context(|| format!("--via {via}"))?;
        return Ok((via.clone(), client));
    }
    let mut last_error = None;
    for (machine, addr) in dir.peers_to_ask() {
        match transport::peer_client(addr.as_str(), &dir.key, CONNECT_TIMEOUT).await {
            // Any peer will do; it is named by what it says it is.
            Ok(client) => {
                let who = answering_machine(&client).await.unwrap_or(machine);
                return Ok((who, client));
            }
            Err(e @ smon_proto::ProtoError::WrongKey { .. }) => {
                bail!(
                    "{machine} ({addr}) refused the cluster key of {}: {e}",
                    dir.path.display()
                )
            }
            Err(e) => last_error = Some(e),
        }
    }
    match last_error {
        Some(e) => bail!(
            "no peer of {} answers ({} machines tried; last error: {e})",
            dir.path.display(),
            dir.membership.len()
        ),
        None => bail!("{}: the membership list is empty", dir.path.display()),
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
/// so their own word is the one to trust). `None` where no peer answers, or another
/// machine's peer does.
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
                // Another machine's peer at this address: not this machine's word.
                (view.answered_by == machine).then_some(view.livetag)
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
