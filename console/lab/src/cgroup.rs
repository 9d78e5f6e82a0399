//! One cgroup v2 per lab machine: every process of the machine (its sshd and all it starts,
//! however they detach) is in it, so that a crash kills them all at once (`cgroup.kill`), and
//! the CPU the machine used is read from its `cpu.stat`. Hosts without a writable cgroup2
//! mount fall back to the network namespace's process list (`crate::procs`).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use crate::error::{LabError, Result};

/// The mount point of the host's cgroup2 hierarchy, if any (`/sys/fs/cgroup` on pure v2
/// systems, `/sys/fs/cgroup/unified` on hybrid ones).
pub fn mount_point() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        // "… mount-point options … - cgroup2 source super-options"
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// Make the lab's cgroup `<mount>/smon-lab-<id>`; None when the host has no writable cgroup2.
pub fn create_lab(id: &str) -> Option<PathBuf> {
    let dir = mount_point()?.join(format!("smon-lab-{id}"));
    match std::fs::create_dir(&dir) {
        Ok(()) => Some(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Some(dir),
        Err(_) => None,
    }
}

/// Make a machine's cgroup under the lab's.
pub fn create(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(LabError::io(dir)(e)),
        _ => Ok(()),
    }
}

/// The pids in `dir` (none when it does not exist).
pub fn pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// SIGKILL every process in `dir` at once (the kernel does it, forks included).
pub fn kill_all(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let kill = dir.join("cgroup.kill");
    std::fs::write(&kill, "1").map_err(LabError::io(&kill))
}

/// Total CPU time used by the processes of `dir`, living and dead (`cpu.stat` usage_usec).
pub fn cpu_used(dir: &Path) -> Option<Duration> {
    let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_micros)
}

/// Remove `dir` and the cgroups under it, once they are empty (waits up to 10 s for dying
/// processes to leave).
pub fn remove(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(LabError::io(dir))?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove(&entry.path())?;
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if std::time::Instant::now() > deadline => return Err(LabError::io(dir)(e)),
            Err(_) => {
                let _ = kill_all(dir);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Put the calling process into the cgroup `procs` (a `cgroup.procs` path as a C string).
/// For `pre_exec`: only async-signal-safe calls.
///
/// # Safety
/// Call only between fork and exec.
pub unsafe fn join_in_child(procs: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: open/write/close are async-signal-safe; the buffer is a static string.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let written = libc::write(fd, b"0".as_ptr().cast(), 1);
        libc::close(fd);
        if written != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
