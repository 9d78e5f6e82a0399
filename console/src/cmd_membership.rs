//! `membership show [--json]`: the membership list the answering peer holds (fetched over
//! `retrieve_member`, decoded and checked by `smon_proto::Membership::decode`), with its
//! version and the directory's own version beside it, so that an operator sees whether a
//! `membership set` has reached that peer.

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use smon_proto::Membership;

use crate::{
    cluster_dir::ClusterDir,
    connect::{any_peer, ctx},
};

/// What `membership show` prints (`--json`: this object).
#[derive(Debug, Serialize)]
pub struct MembershipShow {
    /// The machine whose peer answered.
    pub answered_by: String,
    /// The version of the list that peer holds.
    pub version: u64,
    /// The version of the list in the cluster directory (the operator's last `set`).
    pub directory_version: u64,
    /// Machines with a pinned SSH host key.
    pub pinned: usize,
    /// The machines, in the list's canonical order (`[user@]host[:port]` or `local:NAME`).
    pub machines: Vec<String>,
}

/// Ask any peer (or `--via`'s) for its membership list.
pub async fn show(dir: &ClusterDir) -> anyhow::Result<MembershipShow> {
    let (machine, client) = any_peer(dir).await?;
    let blob = client
        .retrieve_member(ctx(Duration::from_secs(10)))
        .await
        .with_context(|| format!("{machine}: asking for its membership list"))?;
    anyhow::ensure!(!blob.is_empty(), "{machine} holds no membership list");
    let list = Membership::decode(&blob)
        .with_context(|| format!("{machine}: its membership list does not decode"))?;
    Ok(MembershipShow {
        answered_by: machine.to_string(),
        version: list.version,
        directory_version: dir.membership.version,
        pinned: list
            .machines()
            .iter()
            .filter(|m| list.host_key(m).is_some())
            .count(),
        machines: list.machines().iter().map(ToString::to_string).collect(),
    })
}

impl MembershipShow {
    /// The text form: a header line, then one machine per line.
    pub fn human(&self) -> String {
        let mut out = format!(
            "membership version {} ({} machines, {} pinned) held by {}",
            self.version,
            self.machines.len(),
            self.pinned,
            self.answered_by
        );
        if self.directory_version != self.version {
            out += &format!(
                "; the cluster directory has version {}",
                self.directory_version
            );
        }
        for m in &self.machines {
            out += "\n";
            out += m;
        }
        out
    }
}
