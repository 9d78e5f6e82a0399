//! Application processes: each runs `sh -c COMMAND` in a session (and so a process group) of
//! its own, whose id is the leader's pid. The application is up while any process of that
//! group lives; stopping it signals the whole group, so no stray child is left behind.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// What an application's commands get in their environment, besides the spec's own.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The installed version's directory: the commands' working directory.
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
}

/// The environment variable that marks every process of an application (inherited by its
/// children), so that a restarted peer finds its applications' processes again.
pub const DIR_VAR: &str = "SMON_APP_DIR";

/// Rotate the log when it is above this size at a start.
const MAX_LOG: u64 = 8 << 20;

fn open_log(log: &Path) -> std::io::Result<fs::File> {
    if fs::metadata(log).is_ok_and(|m| m.len() > MAX_LOG) {
        let _ = fs::rename(log, log.with_extension("log.1"));
    }
    fs::OpenOptions::new().create(true).append(true).open(log)
}

/// Start `command` as the leader of a new session; returns its pid (= the group id).
pub fn spawn_group(command: &str, launch: &Launch) -> std::io::Result<i32> {
    let log = open_log(&launch.log)?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(&launch.dir)
        .env(DIR_VAR, &launch.dir)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // A session and process group of its own: signals to the peer do not reach the
    // application, and it can be stopped as a whole.
    let child = smon_login::detach::new_session(&mut cmd).spawn()?;
    // Not waited for through `Child`: `group_alive` reaps the leader (also after this peer
    // re-executed itself into a new version, when no `Child` exists any more).
    Ok(child.id() as i32)
}

/// Reap the group's exited members that are our children (the leader, if we started it).
fn reap(pgid: i32) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with WNOHANG on our own process group's children.
        let r = unsafe { libc::waitpid(-pgid, &mut status, libc::WNOHANG) };
        if r <= 0 {
            break;
        }
    }
}

/// Does any process of group `pgid` still live (not counting zombies we could reap)?
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    reap(pgid);
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(-pgid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: sending a signal to a process group is memory-safe.
        unsafe { libc::kill(-pgid, signal) };
    }
}

/// Wait until the group is gone, at most `timeout`.
pub async fn wait_gone(pgid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// SIGTERM the group, then SIGKILL it if it is still there after `grace`.
pub async fn terminate_group(pgid: i32, grace: Duration) {
    if !group_alive(pgid) {
        return;
    }
    signal_group(pgid, libc::SIGTERM);
    if wait_gone(pgid, grace).await {
        return;
    }
    signal_group(pgid, libc::SIGKILL);
    wait_gone(pgid, Duration::from_secs(5)).await;
}

/// Run a short command (stop, status) in the application's directory, in a group of its
/// own that is killed if it outlives `timeout`. Whether it exited with status 0.
pub async fn run_command(
    command: &str,
    launch: &Launch,
    extra: &[(&str, String)],
    timeout: Duration,
) -> bool {
    let log = match open_log(&launch.log) {
        Ok(log) => log,
        Err(_) => return false,
    };
    let (Ok(out), err) = (log.try_clone(), log) else {
        return false;
    };
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(&launch.dir)
        .env(DIR_VAR, &launch.dir)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .envs(extra.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(true);
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    let pgid = child.id().map_or(0, |p| p as i32);
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        _ => {
            signal_group(pgid, libc::SIGKILL);
            let _ = child.wait().await;
            false
        }
    }
}

/// The process groups whose members carry `SMON_APP_DIR` under `base` (an application's
/// directory of versions): group id → the version directory of one member.
pub fn marked_groups(base: &Path) -> BTreeMap<i32, PathBuf> {
    let mut prefix = format!("{DIR_VAR}={}", base.display()).into_bytes();
    if !prefix.ends_with(b"/") {
        prefix.push(b'/');
    }
    let me = std::process::id() as i32;
    let mut groups = BTreeMap::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let Some(var) = environ.split(|&b| b == 0).find(|v| v.starts_with(&prefix)) else {
            continue;
        };
        let Some((pgid, zombie)) = stat_pgid(pid) else {
            continue;
        };
        if zombie {
            continue;
        }
        let dir = PathBuf::from(String::from_utf8_lossy(&var[DIR_VAR.len() + 1..]).into_owned());
        groups.entry(pgid).or_insert(dir);
    }
    groups
}

/// A process's group id, and whether it is a zombie.
fn stat_pgid(pid: i32) -> Option<(i32, bool)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let _ppid = fields.next()?;
    let pgrp: i32 = fields.next()?.parse().ok()?;
    Some((pgrp, state == "Z" || state == "X"))
}

/// Processes of group `pgid` (for reports and tests).
pub fn group_members(pgid: i32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if stat_pgid(pid).is_some_and(|(g, zombie)| g == pgid && !zombie) {
            pids.push(pid);
        }
    }
    pids
}
