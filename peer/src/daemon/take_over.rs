//! A machine that holds another cluster's install (issue 15 kind 11): a peer of a cluster
//! made by another `init` (another release key, or another cluster id:
//! [`smon_proto::ClusterConfig::is_same_cluster`]).
//! The installer says what is there and what to do; under the new cluster's `take_over`
//! setting (`smon-console init --take-over`) it stops that peer and its applications and
//! clears its state, so that this cluster installs as on a new machine.

use std::{
    fs,
    path::Path,
    time::{Duration, Instant},
};

use smon_proto::{ClusterConfig, MachineFiles, MachineId};

use super::apps::{install::app_base, process, runfile::RunFile};
use smon_login::{installed_cluster::InstalledCluster, layout};

/// How long a stopped process may take before it is killed.
const GRACE: Duration = Duration::from_secs(10);

/// What the other cluster left on this machine, in one line for the deployer's error: the
/// text every login that finds it gives too ([`InstalledCluster::describe`]).
pub fn describe(root: &Path, installed: &ClusterConfig, me: Option<MachineId>) -> String {
    let cluster = InstalledCluster {
        release_key: installed.release_key.clone(),
        cluster_id: Some(installed.cluster_id()),
        machine: me.map(|m| m.to_string()),
        key_epoch: None,
    };
    let pid = layout::running_pid(root).map(i64::from);
    cluster.describe(&root.display().to_string(), pid)
}

/// Stop the other cluster's peer and applications, and remove its state, versions and
/// applications (logs and counters stay). Errors: a file that cannot be removed.
pub fn take_over(root: &Path) -> std::io::Result<()> {
    if let Some(pid) = layout::running_pid(root) {
        tracing::warn!("taking over: stopping the other cluster's peer (pid {pid})");
        stop(pid, false, || layout::running_pid(root) == Some(pid));
    }
    let apps = root.join("apps");
    if let Ok(entries) = fs::read_dir(&apps) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let run = RunFile::load(&app_base(root, &name).join("run.json"));
            if let Some(proc) = run.proc {
                tracing::warn!("taking over: stopping {name} (process group {})", proc.pgid);
                stop(proc.pgid, true, || process::group_alive(proc.pgid));
            }
        }
    }
    let files = MachineFiles::new(root);
    for path in [
        files.state_db(),
        root.join("state.db-wal"),
        root.join("state.db-shm"),
        root.join("current"),
        root.join("previous"),
        files.pid(),
        files.known_hosts(),
        files.cluster(),
    ] {
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    for dir in [root.join("versions"), apps] {
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// SIGTERM `pid` (a process group if `group`), SIGKILL after [`GRACE`] while `alive` (for a
/// peer: it still holds its lock, so a pid reused since is never signalled again).
fn stop(pid: i32, group: bool, alive: impl Fn() -> bool) {
    let signal = |s| {
        if group {
            process::signal_group(pid, s)
        } else {
            // SAFETY: kill(2) of the pid that holds the other cluster's peer lock.
            unsafe { libc::kill(pid, s) };
        }
    };
    signal(libc::SIGTERM);
    let deadline = Instant::now() + GRACE;
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive() {
        signal(libc::SIGKILL);
    }
}
