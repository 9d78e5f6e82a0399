//! Reaching the cluster: any peer will do, since every peer holds the whole cluster view.

use std::time::Duration;

use anyhow::{Context, bail};
use smon_proto::{
    ClusterView, ControlAction, KeyringHandle, MachineId, PeerServiceClient, ProtoError,
    tarpc::context, transport,
};

use crate::{
    cluster_dir::ClusterDir,
    fan_out::{self, Asked},
};

pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

pub fn ctx(timeout: Duration) -> context::Context {
    let mut ctx = context::current();
    ctx.deadline = std::time::Instant::now() + timeout;
    ctx
}

/// A client of the peer at `addr`, trying again for up to a second while this process is out
/// of descriptors (see [`fan_out::retrying`]).
pub async fn client_at(addr: &str, key: &KeyringHandle) -> Result<PeerServiceClient, ProtoError> {
    let connect = || transport::peer_client(addr, key, CONNECT_TIMEOUT);
    fan_out::retrying(connect, |r| matches!(r, Err(e) if e.is_local_exhaustion())).await
}

/// Which machine's peer `client` is (it says so in its view).
async fn answering_machine(client: &PeerServiceClient) -> anyhow::Result<MachineId> {
    let view = client
        .cluster_view(ctx(Duration::from_secs(5)), u64::MAX)
        .await
        .context("asking the peer who it is")?;
    Ok(view.answered_by)
}

/// Which machine's peer answers at `machine`'s address, if any does within the connect and
/// call timeouts: `machine` itself, or another machine when two entries reach one peer.
pub async fn who_answers_at(dir: &ClusterDir, machine: &MachineId) -> Option<MachineId> {
    let client = client_at(&dir.peer_address(machine), &dir.key).await.ok()?;
    answering_machine(&client).await.ok()
}

/// A client of `machine`'s own peer: connected at its address, and checked to be that
/// machine's (another machine's peer there means two entries share an address and port:
/// what it says would be taken for `machine`'s).
pub async fn peer_of(dir: &ClusterDir, machine: &MachineId) -> anyhow::Result<PeerServiceClient> {
    let addr = dir.peer_address(machine);
    let client = client_at(&addr, &dir.key)
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
        match client_at(&addr, &dir.key).await {
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
            // Our own exhaustion says nothing of the peers: trying the next would only
            // blame them.
            Err(e) if e.is_local_exhaustion() => {
                bail!(
                    "cannot connect to {machine} ({addr}) from here: {e} ({})",
                    fan_out::descriptor_limit_text()
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
/// so their own word is the one to trust), a bounded number at a time. `NoAnswer` where no
/// peer answers, or another machine's peer does; `NotAsked` where this process could not try.
pub async fn livetags(dir: &ClusterDir) -> Vec<(MachineId, Asked<smon_proto::LiveTag>)> {
    let key = &dir.key;
    fan_out::ask_all(dir.addresses(), |(machine, addr)| async move {
        let client = match client_at(&addr, key).await {
            Ok(client) => client,
            Err(e) => return Asked::from_error(&e),
        };
        match client
            .cluster_view(ctx(Duration::from_secs(5)), u64::MAX)
            .await
        {
            // Another machine's peer at this address: not this machine's word.
            Ok(view) if view.answered_by != machine => {
                Asked::NoAnswer(format!("{addr} is answered by {}", view.answered_by))
            }
            Ok(view) => Asked::Answered(view.livetag),
            Err(e) => Asked::NoAnswer(e.to_string()),
        }
    })
    .await
    .into_iter()
    .map(|((machine, _), asked)| (machine, asked))
    .collect()
}
