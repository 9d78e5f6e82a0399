//! How the actor ends: exit or shut down, or switch version and re-execute (an upgrade, or
//! the rollback of a version that did not rejoin the cluster in time).

use std::{os::unix::process::CommandExt, path::Path};

use smon_login::layout;
use smon_proto::{BadReason, BadVersion, Version, note_bad};

use crate::core::PersistentState;

use super::{
    DaemonError,
    actor::{Actor, Ending},
    clock::now_ms,
    store::{json, keys},
};

impl Actor {
    /// End: remove the pid file; for an upgrade or a rollback, commit the switch of version
    /// and replace this process with that version's peer (this returns only if that fails).
    pub(super) fn finish(self, ending: Ending) -> Result<(), DaemonError> {
        let _ = std::fs::remove_file(self.root.join("peer.pid"));
        match ending {
            Ending::Exit(reason) => {
                tracing::info!("exiting: {reason:?}");
                Ok(())
            }
            Ending::Shutdown { .. } => {
                tracing::info!("shut down");
                Ok(())
            }
            Ending::Upgrade(version) => {
                layout::switch_to(&self.root, version)?;
                let mut store = self.store;
                // On trial: it must rejoin the cluster in time, or it is rolled back.
                store.put(keys::TRIAL, &(version, now_ms()))?;
                tracing::info!("upgrading to {version}");
                Err(reexec(&self.root))
            }
            Ending::Rebind(addr) => {
                tracing::info!(
                    "the membership moves this peer from {} to {addr}",
                    self.listen
                );
                Err(reexec(&self.root))
            }
            Ending::Rollback => {
                let version = self.core.version();
                tracing::warn!("version {version} did not rejoin the cluster: rolling back");
                let previous = layout::linked_version(&self.root, "previous")
                    .ok_or(DaemonError::NoPrevious)?;
                let mut state = self.core.persistent().clone();
                let reason = BadReason::NotRejoined {
                    within_ms: self.config.rejoin_within_ms,
                };
                note_bad_version(&mut state, version, reason, now_ms());
                state.version = previous;
                let mut store = self.store;
                store.put_all(&[(keys::STATE, json(&state))])?;
                store.delete(keys::TRIAL)?;
                layout::set_link(&self.root, "current", previous)?;
                Err(reexec(&self.root))
            }
        }
    }
}

/// Replace this process with the current version's peer (same pid, so the pid file holds).
/// Returns only if that failed.
fn reexec(root: &Path) -> DaemonError {
    let binary = root.join("current").join(layout::PEER_BINARY);
    let source = std::process::Command::new(&binary)
        .arg("run")
        .arg("--root")
        .arg(root)
        .exec();
    DaemonError::Reexec { binary, source }
}

/// Note in the persistent state that `version` failed here, for `reason`, at `at_ms`: it is
/// never fetched again, and the machine's record tells the cluster why (the peer that next
/// runs reads it at start).
pub(super) fn note_bad_version(
    state: &mut PersistentState,
    version: Version,
    reason: BadReason,
    at_ms: u64,
) {
    if !state.bad_versions.contains(&version) {
        state.bad_versions.push(version);
    }
    let mark = BadVersion {
        version,
        reason,
        at_ms,
    };
    note_bad(&mut state.bad_marks, mark);
}
