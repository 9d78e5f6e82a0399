//! `smon-peer start`: start the installed peer detached (it outlives the installer and the
//! deployer's login), and wait until it runs or fails. Idempotent.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use smon_login::layout::{self, PEER_BINARY};

use super::{
    DaemonError,
    store::{Store, keys},
};
use crate::core::PersistentState;
use smon_proto::BadReason;

use super::clock::now_ms;

const START_TIMEOUT: Duration = Duration::from_secs(10);

pub fn start(root: &Path, rollback: bool) -> Result<(), DaemonError> {
    if layout::running_pid(root).is_some() {
        return Ok(());
    }
    if rollback {
        roll_back(root)?;
    }
    let binary = root.join("current").join(PEER_BINARY);
    let mut command = Command::new(&binary);
    command
        .arg("run")
        .arg("--root")
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // A session of its own: the peer survives the end of the installer, of the login session
    // and of the deployer.
    smon_login::detach::new_session(&mut command);
    let mut child = command.spawn().map_err(|source| DaemonError::Spawn {
        binary: binary.clone(),
        source,
    })?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if layout::running_pid(root).is_some() {
            // Reap the child later is not needed: it is a session leader we do not wait for.
            std::mem::forget(child);
            return Ok(());
        }
        let exited = child.try_wait().map_err(|source| DaemonError::Spawn {
            binary: binary.clone(),
            source,
        })?;
        if let Some(status) = exited {
            if layout::running_pid(root).is_some() {
                return Ok(()); // another instance won
            }
            return Err(DaemonError::NotStarted {
                binary,
                why: format!(
                    "exited at once ({status}); see {}",
                    root.join("peer.log").display()
                ),
            });
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(DaemonError::NotStarted {
                binary,
                why: format!("did not come up within {START_TIMEOUT:?}"),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Why the version rolled back from failed: its `start`'s exit code, as the restart script
/// passed it ([`layout::ROLLBACK_EXIT_ENV`]).
fn rollback_reason() -> BadReason {
    match std::env::var(layout::ROLLBACK_EXIT_ENV)
        .ok()
        .map(|v| v.trim().parse::<i32>())
    {
        Some(Ok(code)) if (1..=255).contains(&code) => BadReason::Exited { code },
        _ => BadReason::NotStarted,
    }
}

/// Make `previous` current again and never take the failed version back.
fn roll_back(root: &Path) -> Result<(), DaemonError> {
    let bad = layout::linked_version(root, "current");
    let good = layout::linked_version(root, "previous").ok_or(DaemonError::NoPrevious)?;
    let mut store = Store::open(&root.join("state.db"))?;
    if let Some(bad) = bad.filter(|b| *b != good) {
        let mut state: PersistentState = store
            .get(keys::STATE)?
            .unwrap_or_else(|| PersistentState::new(good));
        let reason = rollback_reason();
        super::upgrade::note_bad_version(&mut state, bad, reason, now_ms());
        state.version = good;
        store.put(keys::STATE, &state)?;
        tracing::warn!("rolled back from {bad} to {good}: {bad} {reason}");
    }
    store.delete(keys::TRIAL)?;
    Ok(layout::set_link(root, "current", good)?)
}
