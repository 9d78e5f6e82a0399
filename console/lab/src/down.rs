//! `down`: remove everything a lab made (processes, namespaces, links, users, cgroups,
//! files), from its record alone. Safe to run twice, and after `up` or the lab crashed: what
//! is already gone is skipped. The record is removed last, so an interrupted `down` can be run
//! again.

use std::{path::Path, time::Duration};

use crate::{
    cgroup,
    error::{LabError, Result},
    layout::LabState,
    net, procs, users,
};

/// What `down` found and removed.
#[derive(Debug, Default, serde::Serialize)]
pub struct DownReport {
    /// The lab's run id, None when DIR held no lab.
    pub id: Option<String>,
    pub processes_killed: usize,
    pub machines: usize,
    pub users: usize,
}

/// Remove the lab recorded in `dir`, and `dir` itself.
pub fn down(dir: &Path) -> Result<DownReport> {
    let mut lab = match LabState::load(dir) {
        Ok(lab) => lab,
        Err(LabError::NoLab { .. }) => return Ok(DownReport::default()),
        Err(e) => return Err(e),
    };
    // DIR may have been given by another path than the one recorded.
    lab.dir = dir.to_owned();
    let mut report = DownReport {
        id: Some(lab.id.clone()),
        machines: lab.hosts,
        users: lab.hosts * lab.users_per_machine,
        ..DownReport::default()
    };
    report.processes_killed = crate::lab::all_places(&lab).kill_all()?;
    for host in lab.host_indices() {
        net::remove_machine(&lab, host)?;
    }
    net::remove_bridge(&lab)?;
    wait_links_gone(&lab)?;
    for user in lab.users() {
        users::delete(&user)?;
    }
    if let Some(cg) = &lab.cgroup {
        cgroup::remove(cg)?;
    }
    remove_files(dir)?;
    Ok(report)
}

/// The kernel frees a namespace's veth once its last process is gone, asynchronously.
fn wait_links_gone(lab: &LabState) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = links_of(&lab.id);
        if left.is_empty() {
            return Ok(());
        }
        for link in &left {
            let _ = crate::run::ip(&["link", "del", link]);
        }
        if std::time::Instant::now() > deadline {
            return Err(LabError::Timeout {
                what: format!("links {left:?} to go"),
                seconds: 20,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Everything in `dir`, the record last, then `dir`.
fn remove_files(dir: &Path) -> Result<()> {
    let record = LabState::record_path(dir);
    for entry in std::fs::read_dir(dir).map_err(LabError::io(dir))?.flatten() {
        let path = entry.path();
        if path == record {
            continue;
        }
        let gone = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        gone.map_err(LabError::io(&path))?;
    }
    std::fs::remove_file(&record).map_err(LabError::io(&record))?;
    std::fs::remove_dir(dir).map_err(LabError::io(dir))
}

/// Host links of lab `id` (its bridge and veths).
fn links_of(id: &str) -> Vec<String> {
    let prefix = format!("sl{id}");
    std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// What of lab `id` still exists on this host: namespaces, links, users, cgroups, processes.
/// Empty after a successful `down`.
pub fn leftovers(id: &str) -> Vec<String> {
    let mut left: Vec<String> = Vec::new();
    let ns_prefix = format!("smon-lab-{id}-");
    for entry in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&ns_prefix) {
            left.push(format!("netns {name}"));
        }
    }
    left.extend(links_of(id).into_iter().map(|l| format!("link {l}")));
    let users = users::left_of(id);
    let uids: Vec<u32> = users.iter().filter_map(|u| procs::uid_of(u)).collect();
    left.extend(
        procs::owned_by(&uids)
            .into_iter()
            .map(|p| format!("process {p}")),
    );
    left.extend(users.into_iter().map(|u| format!("user {u}")));
    if let Some(cg) = cgroup::mount_point().map(|m| m.join(format!("smon-lab-{id}")))
        && cg.exists()
    {
        left.push(format!("cgroup {}", cg.display()));
    }
    left
}
