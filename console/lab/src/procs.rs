//! The processes of a lab machine, found by pid, and killing them all.
//!
//! A machine's processes are those in its cgroup, in its network namespace, or owned by one
//! of its users: the three agree unless something escaped, and the union catches it.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use crate::{
    cgroup,
    error::{LabError, Result},
};

/// Alive and not a zombie.
pub fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// The inode of network namespace `netns` (None when it does not exist).
fn netns_inode(netns: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(std::path::Path::new("/run/netns").join(netns))
        .ok()
        .map(|m| m.ino())
}

/// The uid and primary gid of `user` from /etc/passwd, if it exists.
pub fn ids_of(user: &str) -> Option<(u32, u32)> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
}

/// The uid of `user`, if it exists.
pub fn uid_of(user: &str) -> Option<u32> {
    ids_of(user).map(|(uid, _)| uid)
}

/// Pids whose real uid is one of `uids` or whose network namespace is one of `netns` (by
/// inode), in one pass over /proc.
fn scan(uids: &[u32], netns: &[u64]) -> Vec<i32> {
    if uids.is_empty() && netns.is_empty() {
        return Vec::new();
    }
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let in_netns = std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|l| {
            let l = l.to_string_lossy();
            l.strip_prefix("net:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|ino| netns.contains(&ino))
        });
        if in_netns || owner(pid).is_some_and(|u| uids.contains(&u)) {
            pids.push(pid);
        }
    }
    pids
}

/// The real uid of `pid`.
fn owner(pid: i32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
}

/// Pids owned by one of `uids`.
pub fn owned_by(uids: &[u32]) -> Vec<i32> {
    scan(uids, &[])
}

/// Where a machine's processes may be.
#[derive(Default)]
pub struct Places {
    pub cgroups: Vec<PathBuf>,
    pub netns: Vec<String>,
    pub users: Vec<String>,
}

impl Places {
    /// Every live process of the machine.
    pub fn pids(&self) -> Vec<i32> {
        let uids: Vec<u32> = self.users.iter().filter_map(|u| uid_of(u)).collect();
        let inodes: Vec<u64> = self.netns.iter().filter_map(|n| netns_inode(n)).collect();
        let mut all: BTreeSet<i32> = self.cgroups.iter().flat_map(|c| cgroup::pids(c)).collect();
        all.extend(scan(&uids, &inodes));
        all.retain(|&p| p != std::process::id() as i32 && is_alive(p));
        all.into_iter().collect()
    }

    /// Kill every process of the machine at once (cgroup.kill; otherwise stop them all, then
    /// kill them), until none is left; how many there were.
    pub fn kill_all(&self) -> Result<usize> {
        let first = self.pids();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            for cg in &self.cgroups {
                cgroup::kill_all(cg)?;
            }
            let left = self.pids();
            if left.is_empty() {
                return Ok(first.len());
            }
            // Stopped first, so that none forks or restarts another while we kill.
            for sig in [libc::SIGSTOP, libc::SIGKILL] {
                for &pid in &left {
                    // SAFETY: kill(2) on a pid of this machine.
                    unsafe {
                        libc::kill(pid, sig);
                    }
                }
            }
            if std::time::Instant::now() > deadline {
                return Err(LabError::Timeout {
                    what: format!("processes {left:?} of {} to die", self.netns.join(", ")),
                    seconds: 15,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
