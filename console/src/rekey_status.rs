//! Where a key rotation stands (issue 14, item 2), for `status`: the cluster directory's key
//! epoch, how many machines' peers are on it (each asked directly for a handshake with that
//! key alone: a peer that has not taken the rotation refuses it), and the time left of the
//! grace period. Asked only once the cluster has rotated (epoch above 0).

use std::time::Duration;

use serde::Serialize;
use smon_proto::{Keyring, ProtoError, keyring::unix_now_ms, transport};

use crate::{
    cluster_dir::ClusterDir,
    fan_out::{self, Asked},
};

/// How long one peer may take to complete the handshake.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// The `rekey` line of `status`, and the `rekey` field of `status --json`.
#[derive(Clone, Debug, Serialize)]
pub struct RekeyStatus {
    /// The key epoch of the cluster directory (the newest rotation made from it).
    pub epoch: u32,
    /// Machines whose peer completed a handshake with that epoch's key alone.
    pub on_epoch: usize,
    /// Machines in the membership list.
    pub machines: usize,
    /// Milliseconds left of the grace period (the previous key still accepted); 0: over.
    pub grace_left_ms: u64,
}

impl RekeyStatus {
    /// One line: `rekey: epoch E, N of M machines on it, grace ends in T` (or `grace over`).
    pub fn human(&self) -> String {
        let grace = match self.grace_left_ms {
            0 => "grace over".to_owned(),
            _ => format!("grace ends in {}", self.grace_left()),
        };
        format!(
            "rekey: epoch {}, {} of {} machines on it, {grace}\n",
            self.epoch, self.on_epoch, self.machines
        )
    }

    /// The same in a narrow panel (the TUI's): `rekey epoch E: N/M on it, grace T` (or
    /// `grace over`).
    pub fn short(&self) -> String {
        let grace = match self.grace_left_ms {
            0 => "over".to_owned(),
            _ => self.grace_left(),
        };
        format!(
            "rekey epoch {}: {}/{} on it, grace {grace}",
            self.epoch, self.on_epoch, self.machines
        )
    }

    /// The grace period's time left, in whole seconds (`1m 30s`).
    fn grace_left(&self) -> String {
        humantime::format_duration(Duration::from_secs(self.grace_left_ms.div_ceil(1000)))
            .to_string()
    }
}

/// Ask every machine's peer whether it is on the directory's key epoch; `None` before the
/// first rotation.
pub async fn rekey_status(dir: &ClusterDir) -> Option<RekeyStatus> {
    let ring = dir.key.get();
    if ring.epoch() == 0 {
        return None;
    }
    let grace_left_ms = ring
        .previous()
        .map_or(0, |p| p.grace_until_ms.saturating_sub(unix_now_ms()));
    let current_only = Keyring::new(ring.epoch(), ring.current().clone());
    let key = &current_only;
    let answers = fan_out::ask_all(dir.addresses(), |(_, addr)| async move {
        match transport::peer_client(addr.as_str(), key, HANDSHAKE).await {
            Ok(_) => Asked::Answered(true),
            Err(ProtoError::WrongKey { .. }) => Asked::Answered(false),
            Err(e) => Asked::from_error(&e),
        }
    })
    .await;
    let on_epoch = answers
        .iter()
        .filter(|(_, a)| matches!(a, Asked::Answered(true)))
        .count();
    Some(RekeyStatus {
        epoch: ring.epoch(),
        on_epoch,
        machines: answers.len(),
        grace_left_ms,
    })
}
