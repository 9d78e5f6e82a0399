//! Which process holds a lock file: the one true answer to "does the peer (or the agent) of
//! this directory run, and which pid is it?".
//!
//! A pid file is not that answer. The kernel hands a dead process's pid to the next process
//! (`pid_max` is often 32,768, and a busy host wraps it in minutes), so a stale `peer.pid` can
//! name another machine's peer, an application's runner, or anything else. The flock a peer
//! holds on `ROOT/peer.lock` for its whole life is released by the kernel when it dies, so its
//! holder, read from `/proc/locks` and confirmed in `/proc/PID/fd`, cannot be stale.

use std::{fs, os::unix::fs::MetadataExt, path::Path};

/// The pid of the process holding an flock on `path`, if any (Linux: `/proc/locks`).
///
/// `/proc/locks` names a lock's file by device and inode; some filesystems (btrfs, overlayfs)
/// report another device through `stat` than there, so the inode is matched and the holder
/// confirmed by an open descriptor of its on `path`. Reads only: taking the lock to test it
/// would make a peer starting at that moment think another runs.
pub fn lock_holder(path: &Path) -> Option<i32> {
    let inode = fs::metadata(path).ok()?.ino();
    let target = fs::canonicalize(path).ok()?;
    let locks = fs::read_to_string("/proc/locks").ok()?;
    flock_pids(&locks, inode)
        .into_iter()
        .find(|&pid| holds_open(pid, &target))
}

/// The pids of the flocks on inode `inode` in `/proc/locks` text. A line reads
/// `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF` (a waiter's has `->` after the number).
fn flock_pids(locks: &str, inode: u64) -> Vec<i32> {
    let suffix = format!(":{inode}");
    locks
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (kind, pid, file) = (fields.get(1)?, fields.get(4)?, fields.get(5)?);
            (*kind == "FLOCK" && file.ends_with(&suffix)).then(|| pid.parse().ok())?
        })
        .collect()
}

/// Does process `pid` have `target` (a canonical path) open?
fn holds_open(pid: i32, target: &Path) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|p| p == target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines_are_read_by_inode_and_waiters_are_skipped() {
        let text = "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 99 08:01:5678 0 EOF\n\
                    2: POSIX  ADVISORY  WRITE 77 08:01:5678 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 4321 00:2c:15678 0 EOF\n\
                    garbage\n";
        assert_eq!(flock_pids(text, 5678), vec![1234]);
        assert_eq!(flock_pids(text, 15678), vec![4321]);
        assert!(flock_pids(text, 678).is_empty());
    }

    #[test]
    fn the_holder_is_found_while_the_lock_is_held_and_not_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer.lock");
        let file = fs::File::create(&path).unwrap();
        assert_eq!(lock_holder(&path), None, "open but not locked");
        file.lock().unwrap(); // flock(2) on Linux, as the peer's own lock
        assert_eq!(lock_holder(&path), Some(std::process::id() as i32));
        drop(file);
        assert_eq!(lock_holder(&path), None, "released with the descriptor");
        assert_eq!(lock_holder(&dir.path().join("absent")), None);
    }
}
