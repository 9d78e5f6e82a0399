//! A local cluster of real processes for tests: each test gets its own directory, loopback
//! addresses and port; on drop every process whose command line names the directory (or
//! whose working directory is under it: applications) is killed by pid, and the test fails if
//! any was still running.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use smon_proto::{ClusterFiles, MachineFiles};

pub fn console_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_smon-console"))
}

pub fn peer_bin() -> PathBuf {
    let path = console_bin().with_file_name("smon-peer");
    assert!(
        path.exists(),
        "{} is missing: build the workspace (cargo test --workspace)",
        path.display()
    );
    path
}

/// Is `tool` installed? If not, say in one line what to install; the caller skips its test
/// (scripts/test.sh, the README's test command, installs every tool the tests need).
/// The release key of the cluster directory `dir` (`DIR/release.key`, made by `init`).
pub fn release_key(dir: &Path) -> smon_proto::ReleasePrivateKey {
    let path = smon_proto::ClusterFiles::new(dir).release_key();
    let text = std::fs::read_to_string(&path).unwrap();
    smon_proto::ReleasePrivateKey::from_openssh(text).unwrap()
}

/// `tag` signed with `key`, as the console signs the livetag.
pub fn signed_livetag(
    key: &smon_proto::ReleasePrivateKey,
    tag: smon_proto::LiveTag,
) -> smon_proto::SignedLiveTag {
    let bytes = smon_proto::SignedLiveTag::signing_bytes(&tag);
    let signature =
        smon_proto::release::sign_bytes(smon_proto::CONTROL_NAMESPACE, &bytes, key).unwrap();
    smon_proto::SignedLiveTag { tag, signature }
}

pub fn have(tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .any(|dir| dir.join(tool).is_file())
    });
    if !found {
        eprintln!(
            "skipped: needs {tool} (apt-get install {package}, or run scripts/test.sh, which \
             installs what the tests need)"
        );
    }
    found
}

pub struct Cluster {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub names: Vec<String>,
}

impl Cluster {
    /// `init` a cluster of `n` local machines (not deployed yet).
    pub fn new(n: usize, interval: &str) -> Self {
        Self::new_with(n, interval, |_| Vec::new())
    }

    /// A cluster of `n` local machines (round: 1 s), deployed: every machine runs a peer.
    pub fn deployed(n: usize) -> Self {
        let cluster = Self::new(n, "1s");
        cluster.ok(&["deploy"]);
        let timeout = format!("{}s", 60 + 3 * n);
        cluster.ok(&["wait", "--deployed", "all", "--timeout", &timeout]);
        cluster
    }

    /// Like [`Cluster::new`], with more `init` arguments, made knowing the temporary directory.
    pub fn new_with(n: usize, interval: &str, extra: impl FnOnce(&Path) -> Vec<String>) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let extra = extra(tmp.path());
        let names: Vec<String> = (1..=n).map(|i| format!("m{i:03}")).collect();
        let list: String = names.iter().map(|n| format!("local:{n}\n")).collect();
        std::fs::write(tmp.path().join("machines"), list).unwrap();
        let dir = tmp.path().join("cluster");
        let cluster = Self { tmp, dir, names };
        cluster.ok(&[
            "init",
            cluster.dir.to_str().unwrap(),
            "--machines",
            cluster.tmp.path().join("machines").to_str().unwrap(),
            "--interval",
            interval,
            "--peer-binary",
            peer_bin().to_str().unwrap(),
        ]
        .into_iter()
        .chain(extra.iter().map(String::as_str))
        .collect::<Vec<_>>());
        cluster
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(console_bin())
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("smon-console runs")
    }

    /// Run a console command that must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "smon-console {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run a console command that must fail; its standard error.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "smon-console {args:?} should have failed"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The names of the cluster directory's files.
    pub fn files(&self) -> ClusterFiles<'_> {
        ClusterFiles::new(&self.dir)
    }

    /// The cluster's settings (cluster.json).
    pub fn config(&self) -> smon_proto::ClusterConfig {
        smon_proto::ClusterConfig::load(&self.dir).expect("cluster.json")
    }

    /// The smon directory of the local machine `name`.
    pub fn root(&self, name: &str) -> PathBuf {
        self.files().local_root().join(name)
    }

    /// A file of the smon directory of `name`: `c.machine(name, |f| f.log())`.
    pub fn machine(&self, name: &str, file: impl FnOnce(MachineFiles) -> PathBuf) -> PathBuf {
        file(MachineFiles::new(&self.root(name)))
    }

    /// The last `lines` lines of every machine's peer log, each under its machine's name: for
    /// the message of a wait that timed out.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for name in &self.names {
            let log = std::fs::read_to_string(self.machine(name, |f| f.log())).unwrap_or_default();
            let all: Vec<&str> = log.lines().collect();
            out.push_str(&format!("--- {name} peer.log (last {lines} lines)\n"));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status JSON")
    }

    /// The pid of a machine's peer, if it runs: the holder of its lock, as the peers and the
    /// console judge it (a pid file can name a pid the kernel has reused).
    pub fn pid(&self, name: &str) -> Option<i32> {
        smon_login::layout::running_pid(&self.root(name))
    }

    pub fn kill9(&self, name: &str) -> i32 {
        let pid = self
            .pid(name)
            .unwrap_or_else(|| panic!("{name} has no running peer"));
        kill(pid);
        wait_for(
            Duration::from_secs(10),
            &format!("pid {pid} to die"),
            || !is_alive(pid),
        );
        pid
    }

    /// A client of the peer of `name`, straight over RPC (no console in between).
    pub async fn client(&self, name: &str) -> smon_proto::PeerServiceClient {
        peer_client(&self.dir, &smon_proto::MachineId::local(name)).await
    }

    /// Send `action` to the peer of `name` over RPC, bypassing the console's own checks; the
    /// peer must refuse it, and this is its refusal.
    pub fn refusal(&self, name: &str, action: smon_proto::ControlAction) -> String {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let client = self.client(name).await;
            match client
                .control(smon_proto::tarpc::context::current(), action)
                .await
                .unwrap()
            {
                Ok(answer) => panic!("accepted: {answer}"),
                Err(refusal) => refusal.to_string(),
            }
        })
    }

    /// Every live process whose command line mentions this cluster.
    pub fn processes(&self) -> Vec<i32> {
        processes_mentioning(&self.dir)
    }

    /// `shutdown`, then check that no process of the cluster is left (peers, applications).
    pub fn shutdown_leaves_nothing(&self) {
        self.ok(&["shutdown"]);
        let left = self.processes();
        assert!(left.is_empty(), "left running: {}", describe(&left));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let gone = kill_until_gone(|| self.processes());
        if !std::thread::panicking() {
            assert!(
                gone,
                "processes left behind: {}",
                describe(&self.processes())
            );
        }
    }
}

/// A client of the peer of `machine` of the cluster in `dir`, straight over RPC.
pub async fn peer_client(
    dir: &Path,
    machine: &smon_proto::MachineId,
) -> smon_proto::PeerServiceClient {
    let dir = smon_console::cluster_dir::ClusterDir::open(dir).unwrap();
    let addr = dir.peer_address(machine);
    smon_proto::transport::peer_client(addr.as_str(), &dir.key, Duration::from_secs(5))
        .await
        .unwrap()
}

/// `pid: command line` for each pid, for failure messages.
pub fn describe(pids: &[i32]) -> String {
    pids.iter()
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// SIGKILL `pid` (quietly: it may have ended meanwhile).
/// Kill -9 what `processes` lists, again and again until it lists nothing (peers restart each
/// other, so one pass can leave a fresh one behind); false if some survive 20 s of it.
pub fn kill_until_gone(processes: impl Fn() -> Vec<i32>) -> bool {
    wait_until(Duration::from_secs(20), || {
        let left = processes();
        left.iter().for_each(|&pid| kill(pid));
        left.is_empty()
    })
}

pub fn kill(pid: i32) {
    let _ = Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Alive and not a zombie.
pub fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

pub fn processes_mentioning(path: &Path) -> Vec<i32> {
    let needle = path.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let mentions = std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&needle));
        // Application processes run in their installed directory under the cluster.
        let works_here =
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(path));
        if (mentions || works_here) && is_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Check `cond` all through `window`, polling as [`wait_until`] does: for what must *not*
/// happen (a second copy, a file over its bound), which no event announces. Panics naming
/// `what` at the first poll where it does not hold.
pub fn holds_for(window: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let broke = wait_until(window, || !cond());
    assert!(!broke, "no longer true within {window:?}: {what}");
}

pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`wait_until`] for a condition that awaits (each poll may ask a peer), polled every
/// `every`: false when `timeout` passed first.
pub async fn wait_until_async(
    timeout: Duration,
    every: Duration,
    mut cond: impl AsyncFnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

pub fn wait_for(timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
    assert!(
        wait_until(timeout, cond),
        "timed out after {timeout:?} waiting for {what}"
    );
}
