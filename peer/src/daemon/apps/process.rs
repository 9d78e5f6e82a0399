//! Application processes. Each command of an application runs under `smon-peer app-run`
//! (`runner.rs`), started as the leader of a session (and so a process group) of its own,
//! whose id is the runner's pid: the runner writes the command's output to the bounded
//! `app.log` and, as a child subreaper, keeps every process the command leaves behind (double
//! fork, `setsid`) among its descendants, and lives while any of them does. So the application
//! is up while its group's leader lives; stopping it signals every process of the application
//! ([`app_pids`]: the leader's descendants, its group, and what carries the application's
//! `SMON_APP_DIR` marker), so that nothing is left behind whatever session or group it moved to.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use smon_proto::LogBound;

use super::runner;

/// What an application's commands get in their environment, besides the spec's own.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The installed version's directory: the commands' working directory.
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    /// `app.log`, and its bound.
    pub log: PathBuf,
    pub bound: LogBound,
}

/// The environment variable that marks every process of an application (inherited by its
/// children), so that a restarted peer finds its applications' processes again.
pub const DIR_VAR: &str = "SMON_APP_DIR";

/// `smon-peer app-run … COMMAND` with the launch's directory and environment. The program is
/// this very binary (`/proc/self/exe`, which still works after an upgrade replaced the file).
fn runner_command(command: &str, launch: &Launch) -> Command {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("smon-peer")
        .arg(runner::SUBCOMMAND)
        .arg("--log")
        .arg(&launch.log)
        .arg("--max-bytes")
        .arg(launch.bound.max_bytes.to_string())
        .arg("--backups")
        .arg(launch.bound.backups.to_string())
        .arg("--")
        .arg(command)
        .current_dir(&launch.dir)
        .env(DIR_VAR, &launch.dir)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Start `command` as the leader of a new session; returns its pid (= the group id).
pub fn spawn_group(command: &str, launch: &Launch) -> std::io::Result<i32> {
    let mut cmd = runner_command(command, launch);
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

/// Run a short command (stop, status) in the application's directory, in a group of its
/// own that is killed if it outlives `timeout`; its output goes to the application's log.
/// Whether it exited with status 0.
pub async fn run_command(
    command: &str,
    launch: &Launch,
    extra: &[(&str, String)],
    timeout: Duration,
) -> bool {
    let mut cmd = tokio::process::Command::from(runner_command(command, launch));
    cmd.envs(extra.iter().map(|(k, v)| (*k, v)))
        .process_group(0)
        .kill_on_drop(true);
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    let pgid = child.id().map_or(0, |p| p as i32);
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        _ => {
            for pid in instance_pids(pgid) {
                signal(pid, libc::SIGKILL);
            }
            signal_group(pgid, libc::SIGKILL);
            let _ = child.wait().await;
            false
        }
    }
}

/// One live (not zombie) process of the machine, from `/proc/PID/stat`.
#[derive(Clone, Copy, Debug)]
struct ProcEntry {
    pid: i32,
    ppid: i32,
    pgid: i32,
}

/// Every live process (zombies left out), but this one.
fn processes() -> Vec<ProcEntry> {
    let me = std::process::id() as i32;
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(stat)
        .collect()
}

/// A process's parent and group, unless it is a zombie (or gone).
fn stat(pid: i32) -> Option<ProcEntry> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    (state != "Z" && state != "X").then_some(ProcEntry { pid, ppid, pgid })
}

/// The version directory in `pid`'s `SMON_APP_DIR`, if it is under `base`.
fn marker_under(pid: i32, base: &Path) -> Option<PathBuf> {
    let mut prefix = format!("{DIR_VAR}={}", base.display()).into_bytes();
    if !prefix.ends_with(b"/") {
        prefix.push(b'/');
    }
    let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let var = environ
        .split(|&b| b == 0)
        .find(|v| v.starts_with(&prefix))?;
    Some(PathBuf::from(
        String::from_utf8_lossy(&var[DIR_VAR.len() + 1..]).into_owned(),
    ))
}

/// The processes of the instance led by `leader`: its group, and the descendants of the
/// group's members (the runner adopts what its command leaves behind, whatever its group).
fn instance_of(table: &[ProcEntry], leader: i32) -> BTreeSet<i32> {
    let mut members: BTreeSet<i32> = table
        .iter()
        .filter(|p| leader > 1 && (p.pgid == leader || p.pid == leader))
        .map(|p| p.pid)
        .collect();
    loop {
        let before = members.len();
        for p in table {
            if members.contains(&p.ppid) {
                members.insert(p.pid);
            }
        }
        if members.len() == before {
            return members;
        }
    }
}

/// The live processes of the instance led by `leader` (see [`instance_of`]).
pub fn instance_pids(leader: i32) -> BTreeSet<i32> {
    instance_of(&processes(), leader)
}

/// Every live process of an application whose directory of versions is `base`: the instance
/// led by `leader` and any process carrying the application's marker (left by a runner that
/// was killed, or by a peer that crashed between a start and its record).
pub fn app_pids(leader: Option<i32>, base: &Path) -> BTreeSet<i32> {
    let table = processes();
    let mut pids = leader.map_or_else(BTreeSet::new, |l| instance_of(&table, l));
    pids.extend(
        table
            .iter()
            .filter(|p| marker_under(p.pid, base).is_some())
            .map(|p| p.pid),
    );
    pids
}

/// The marked processes of the application that are not of the instance led by `leader`.
pub fn strays(leader: Option<i32>, base: &Path) -> BTreeSet<i32> {
    let mut all = app_pids(None, base);
    if let Some(l) = leader {
        for pid in instance_pids(l) {
            all.remove(&pid);
        }
    }
    all
}

/// The process groups whose members carry `SMON_APP_DIR` under `base` (an application's
/// directory of versions): group id → the version directory of one member.
pub fn marked_groups(base: &Path) -> BTreeMap<i32, PathBuf> {
    let mut groups = BTreeMap::new();
    for p in processes() {
        if let Some(dir) = marker_under(p.pid, base) {
            groups.entry(p.pgid).or_insert(dir);
        }
    }
    groups
}

fn signal(pid: i32, sig: i32) {
    if pid > 1 {
        // SAFETY: sending a signal to a process is memory-safe.
        unsafe { libc::kill(pid, sig) };
        // Reap it if it is our child (an orphan of a killed runner may be): a zombie would
        // look alive to `kill(pid, 0)`.
        // SAFETY: waitpid with WNOHANG on one pid.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    }
}

/// Send `sig` to every process of the application: the leader's group, the rest of its
/// instance and the marked ones, the leader last (its descendants stay found while it lives).
fn signal_app(leader: Option<i32>, base: &Path, sig: i32) {
    for pid in app_pids(leader, base) {
        if Some(pid) != leader {
            signal(pid, sig);
        }
    }
    if let Some(l) = leader {
        signal_group(l, sig);
    }
}

/// The processes of the application still alive (the leader reaped if it ended).
fn left(leader: Option<i32>, base: &Path) -> BTreeSet<i32> {
    let mut left = app_pids(leader, base);
    if let Some(l) = leader.filter(|&l| group_alive(l)) {
        left.insert(l);
    }
    left
}

/// Stop every process of the application (see [`app_pids`]): SIGTERM to each (and SIGCONT,
/// so that a stopped one acts on it), then SIGKILL to what is left after `grace`, again until none is left or 5 s passed. Returns the
/// processes that could not be ended (none: the application is gone).
pub async fn terminate_app(leader: Option<i32>, base: &Path, grace: Duration) -> BTreeSet<i32> {
    if left(leader, base).is_empty() {
        return BTreeSet::new();
    }
    signal_app(leader, base, libc::SIGTERM);
    // A stopped process (`kill -STOP`) exists but acts on nothing until continued: continue
    // it, so that it gets the SIGTERM and exits within its grace (as systemd does), rather
    // than being killed outright after it (issue 15, kind 1).
    signal_app(leader, base, libc::SIGCONT);
    let deadline = Instant::now() + grace;
    loop {
        if left(leader, base).is_empty() {
            return BTreeSet::new();
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        signal_app(leader, base, libc::SIGKILL);
        tokio::time::sleep(Duration::from_millis(25)).await;
        let left = left(leader, base);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
    }
}

/// SIGKILL the application's marked processes that are not of the instance led by `leader`
/// (all of them when there is none), with their groups unless a group holds a process of the
/// instance. Returns those that would not end.
pub async fn kill_strays(leader: Option<i32>, base: &Path) -> BTreeSet<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let strays = strays(leader, base);
        if strays.is_empty() || Instant::now() >= deadline {
            return strays;
        }
        let instance = leader.map(instance_pids).unwrap_or_default();
        let table = processes();
        for &pid in &strays {
            signal(pid, libc::SIGKILL);
            if let Some(p) = table.iter().find(|p| p.pid == pid)
                && !table
                    .iter()
                    .any(|q| q.pgid == p.pgid && instance.contains(&q.pid))
            {
                signal_group(p.pgid, libc::SIGKILL);
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Processes of group `pgid` (for reports and tests).
pub fn group_members(pgid: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|p| p.pgid == pgid)
        .map(|p| p.pid)
        .collect()
}
