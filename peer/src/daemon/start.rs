//! `smon-peer start`: start the installed peer detached (it outlives the installer and the
//! deployer's login), and wait until it runs or fails. Idempotent.

use std::{
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::{
    DaemonError,
    layout::{self, PEER_BINARY},
    store::{Store, keys},
};
use crate::core::PersistentState;

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
    // SAFETY: setsid is async-signal-safe; the child gets its own session, so it survives the
    // end of the installer, of the login session and of the deployer.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| DaemonError::Start(format!("{}: {e}", binary.display())))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if layout::running_pid(root).is_some() {
            // Reap the child later is not needed: it is a session leader we do not wait for.
            std::mem::forget(child);
            return Ok(());
        }
        if let Some(status) = child
            .try_wait()
            .map_err(|e| DaemonError::Start(e.to_string()))?
        {
            if layout::running_pid(root).is_some() {
                return Ok(()); // another instance won
            }
            return Err(DaemonError::Start(format!(
                "{} exited at once ({status}); see {}",
                binary.display(),
                root.join("peer.log").display()
            )));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(DaemonError::Start(format!(
                "{} did not come up within {START_TIMEOUT:?}",
                binary.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Make `previous` current again and never take the failed version back.
fn roll_back(root: &Path) -> Result<(), DaemonError> {
    let bad = layout::linked_version(root, "current");
    let good = layout::linked_version(root, "previous")
        .ok_or_else(|| DaemonError::Start("no previous version to roll back to".into()))?;
    let mut store = Store::open(&root.join("state.db"))?;
    if let Some(bad) = bad.filter(|b| *b != good) {
        let mut state: PersistentState = store
            .get(keys::STATE)?
            .unwrap_or_else(|| PersistentState::new(good));
        if !state.bad_versions.contains(&bad) {
            state.bad_versions.push(bad);
        }
        state.version = good;
        store.put(keys::STATE, &state)?;
        tracing::warn!("rolled back from {bad} to {good}");
    }
    store.delete(keys::TRIAL)?;
    layout::set_link(root, "current", good)
}
