//! A cluster directory and an in-process agent on 127.0.0.1:0, for the tests and the benchmark.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use smon_agent::{
    key::KeySource,
    limits::Rate,
    server::{Agent, Settings, load_cluster},
};
use smon_proto::{
    AgentServiceClient, ClusterConfig, ClusterFiles, ClusterKey, MachineId, Membership,
    OperatorKey, transport,
};

pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Write cluster.json, cluster.key and membership.blob for `machines` into `dir`.
pub fn cluster_dir(dir: &Path, machines: &[&str]) {
    let files = ClusterFiles::new(dir);
    let config = ClusterConfig {
        port: 4700,
        local_salt: 1,
        local_root: files.local_root(),
        interval_ms: 5000,
        ping_timeout_ms: 2000,
        release_key: String::new(),
        agent: None,
        removed_exit_after_ms: 60000,
        disabled_exit_after_ms: None,
        rejoin_within_ms: 60000,
        ssh_trust_on_first_use: false,
        metrics: None,
        take_over: false,
        unresponsive_grace_ms: None,
    };
    config.save(dir).unwrap();
    ClusterKey::create(&files.cluster_key()).unwrap();
    let list: Vec<MachineId> = machines.iter().map(|m| m.parse().unwrap()).collect();
    std::fs::write(files.membership_blob(), Membership::new(1, list).encode()).unwrap();
}

/// Make `public` the cluster's release key and give the directory an operator key, as
/// `smon-console init --key` does; the operator key.
pub fn adopt_release_key(dir: &Path, public: &russh::keys::ssh_key::PublicKey) -> OperatorKey {
    let mut config = ClusterConfig::load(dir).unwrap();
    config.release_key = public.to_openssh().unwrap();
    config.save(dir).unwrap();
    OperatorKey::create(&ClusterFiles::new(dir).operator_key()).unwrap()
}

/// Is ssh-keygen installed? If not, say in one line what to install; the caller skips its
/// test (scripts/test.sh, the README's test command, installs it).
pub fn have_ssh_keygen() -> bool {
    let found = Command::new("ssh-keygen").arg("-?").output().is_ok();
    if !found {
        eprintln!(
            "skipped: needs ssh-keygen (apt-get install openssh-client, or run scripts/test.sh)"
        );
    }
    found
}

/// An OpenSSH key made by ssh-keygen: `kind` is "ed25519" or "rsa".
pub fn keygen(dir: &Path, kind: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(format!("id_{kind}"));
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", passphrase, "-C", "smon-test", "-f"])
        .arg(&path);
    if kind == "rsa" {
        cmd.args(["-b", "3072"]);
    }
    let out = cmd.output().expect("ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

pub fn settings(dir: &Path, per_peer: f64, burst: f64) -> Settings {
    Settings {
        cluster_dir: dir.to_owned(),
        audit_path: ClusterFiles::new(dir).agent_audit(),
        per_peer: Rate {
            per_second: per_peer,
            burst,
        },
        global: Rate {
            per_second: 1e9,
            burst: 1e9,
        },
        default_user: "nobody".into(),
    }
}

/// Start an agent with `key` in this runtime; its address.
pub async fn start_agent(dir: &Path, key: KeySource, settings: Settings) -> (Agent, String) {
    let (_, cluster_key) = load_cluster(dir).unwrap();
    let agent = Agent::new(key, settings).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(agent.clone().serve(listener, cluster_key));
    (agent, addr)
}

pub async fn client(dir: &Path, addr: &str) -> AgentServiceClient {
    let key = ClusterKey::load(&ClusterFiles::new(dir).cluster_key()).unwrap();
    transport::agent_client(addr, &key, TIMEOUT).await.unwrap()
}

/// Poll `cond` every 20 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_for`] for a condition that awaits (each poll may ask the agent), polled every
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
