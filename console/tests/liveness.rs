//! Issue 15, kind 1: liveness judged by answers, not by a process existing. A peer stopped
//! with `kill -STOP` (its process stays, it answers nothing) on a real local cluster.

mod harness;

use std::{path::Path, process::Command, time::Duration, time::Instant};

use harness::{Cluster, holds_for, is_alive, wait_for};

/// Sends SIGCONT to a process this test stopped when dropped, whatever path the test takes
/// (the cluster's own guard then kills it with the rest).
struct Stopped(i32);

impl Stopped {
    fn stop(pid: i32) -> Self {
        signal("-STOP", pid);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if is_alive(self.0) {
            signal("-CONT", self.0);
        }
    }
}

fn signal(sig: &str, pid: i32) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok || !is_alive(pid), "kill {sig} {pid} failed");
}

/// Live peers (`smon-peer run`) of the machine whose smon directory is `root`; not the
/// short-lived `smon-peer start` of a restart, which exits once a peer runs.
fn peer_processes(root: &Path) -> Vec<i32> {
    harness::processes_mentioning(root)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
                args.first().is_some_and(|a| a.ends_with(b"smon-peer"))
                    && args.get(1) == Some(&&b"run"[..])
            })
        })
        .collect()
}

/// The row of `machine` in `status --json`.
fn row(status: &serde_json::Value, machine: &str) -> serde_json::Value {
    status["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["machine"] == machine)
        .cloned()
        .unwrap_or_else(|| panic!("no row for {machine} in {status}"))
}

#[test]
fn a_stopped_peer_is_unresponsive_not_counted_then_killed_and_restarted_once() {
    let n = 12;
    let c = Cluster::new_with(n, "1s", |_| {
        vec!["--unresponsive-grace".into(), "15s".into()]
    });
    c.ok(&["deploy"]);
    c.ok(&["wait", "--deployed", "all", "--timeout", "120s"]);
    let victim = "m005";
    let machine = format!("local:{victim}");
    let frozen = c.pid(victim).expect("the victim runs a peer");
    let stopped = Stopped::stop(frozen);

    // Shown unresponsive, with why, and not counted as deployed.
    let mut shown = serde_json::Value::Null;
    wait_for(
        Duration::from_secs(40),
        "status to show the stopped peer unresponsive",
        || {
            let status = c.status();
            let unresponsive = row(&status, &machine)["state"] == "unresponsive";
            if unresponsive {
                shown = status;
            }
            unresponsive
        },
    );
    assert!(
        c.pid(victim) == Some(frozen),
        "already replaced when first shown unresponsive"
    );
    assert_eq!(shown["unresponsive"], 1, "{shown}");
    assert_eq!(shown["deployed"], n - 1, "{shown}");
    let reason = row(&shown, &machine)["reason"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(reason.contains("does not answer"), "reason: {reason:?}");
    // `wait` does not count it (the grace period has not passed yet: it is still stopped).
    let out = c.run(&["wait", "--deployed", "all", "--timeout", "2s"]);
    assert!(
        !out.status.success(),
        "wait --deployed all counted the stopped peer"
    );
    assert!(is_alive(frozen), "killed before the grace period");
    // Some peer said so in its log.
    let logged = c.names.iter().any(|name| {
        std::fs::read_to_string(c.machine(name, |f| f.log()))
            .is_ok_and(|log| log.contains(&format!("UNRESPONSIVE: the peer of {machine}")))
    });
    assert!(logged, "no peer logged the unresponsive peer");

    // After the grace period: killed, restarted by the usual path, one peer process.
    wait_for(
        Duration::from_secs(90),
        "the stopped peer to be killed and replaced",
        || !is_alive(frozen) && c.pid(victim).is_some_and(|p| p != frozen),
    );
    drop(stopped);
    let root = c.root(victim);
    holds_for(
        Duration::from_secs(5),
        "exactly one peer process on the machine",
        || {
            let peers = peer_processes(&root);
            assert!(peers.len() <= 1, "peers: {}", harness::describe(&peers));
            peers.len() == 1
        },
    );
    c.ok(&["wait", "--deployed", "all", "--timeout", "60s"]);
    wait_for(
        Duration::from_secs(30),
        "status to show it running again, without a reason",
        || {
            let r = row(&c.status(), &machine);
            r["state"] == "running" && r["reason"].is_null()
        },
    );
    assert_eq!(peer_processes(&root).len(), 1, "a second peer on {machine}");

    // `shutdown` with a stopped peer finishes promptly, and says what it did about it.
    let second = "m009";
    let pid = c.pid(second).expect("runs a peer");
    let _stopped = Stopped::stop(pid);
    let began = Instant::now();
    let out = c.run(&["shutdown", "--timeout", "60s"]);
    let took = began.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "shutdown failed: {stdout}{stderr}");
    assert!(
        took < Duration::from_secs(40),
        "shutdown took {took:?}: {stdout}{stderr}"
    );
    assert!(
        stdout.contains(&format!(
            "local:{second}: its peer (pid {pid}) runs but did not answer; killed it"
        )),
        "{stdout}"
    );
    assert!(!is_alive(pid), "the stopped peer was left");
    assert!(c.processes().is_empty(), "left: {:?}", c.processes());
}

/// The same kind in the console's own checks: a stopped agent (`kill -STOP`) has a live pid;
/// `agent status` says it does not answer, `agent start` says so instead of "already runs",
/// and `agent stop` ends it at once (its SIGTERM comes with a SIGCONT).
#[test]
fn a_stopped_agent_is_told_apart_and_stopped() {
    if !harness::have("ssh-keygen", "openssh-client") {
        return;
    }
    let c = Cluster::new_with(1, "1s", |tmp| {
        let key = tmp.join("agent-key");
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ssh-keygen");
        vec!["--key".into(), key.to_str().unwrap().into()]
    });
    c.ok(&["agent", "start"]);
    let pid: i32 = std::fs::read_to_string(c.files().agent_pid())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stopped = Stopped::stop(pid);
    let status: serde_json::Value =
        serde_json::from_str(&c.ok(&["agent", "status", "--json"])).unwrap();
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["answers"], false, "{status}");
    let err = c.fails(&["agent", "start"]);
    assert!(
        err.contains(&format!("the agent (pid {pid}) runs but does not answer")),
        "{err}"
    );
    let began = Instant::now();
    c.ok(&["agent", "stop"]);
    assert!(!is_alive(pid), "the stopped agent is still there");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "agent stop took {:?}",
        began.elapsed()
    );
    drop(stopped);
}

/// The `age_ms` of `machine`'s row in `status`, if known.
fn age_of(status: &serde_json::Value, machine: &str) -> Option<u64> {
    row(status, machine)["age_ms"].as_u64()
}

/// Kind 1, "gossiped records age": a record nobody refreshes grows old in the view. Self-
/// management off (so nobody restarts it), a peer is killed: its row's `age_ms` grows past
/// several heartbeats while the live peers' own records stay fresh, and text `status` says
/// of that row only how long ago it was seen.
#[test]
fn a_record_nobody_refreshes_ages_and_is_shown_stale() {
    let c = Cluster::deployed(4);
    c.ok(&["disable"]);
    // Every peer disabled before the kill: one not yet told would restart the victim (seen
    // under load in CI).
    c.ok(&["wait", "--disabled", "--timeout", "60s"]);
    let victim = "local:m003";
    c.kill9("m003");
    // Round 1 s, a heartbeat every 4 rounds: 3 heartbeats are 12 s.
    let stale_ms = 3 * 4 * 1_000;
    let mut last = serde_json::Value::Null;
    let aged = harness::wait_until(Duration::from_secs(120), || {
        last = c.status();
        age_of(&last, victim).is_some_and(|age| age > stale_ms + 3_000)
    });
    assert!(aged, "the dead peer's record never aged: {last}");
    for name in ["local:m001", "local:m002", "local:m004"] {
        let age = age_of(&last, name).unwrap_or_else(|| panic!("no age for {name}: {last}"));
        assert!(age < stale_ms, "{name}'s record is {age} ms old: {last}");
    }
    // It keeps growing: nobody re-issues it.
    let before = age_of(&last, victim).unwrap();
    wait_for(Duration::from_secs(60), "the age to grow further", || {
        age_of(&c.status(), victim).is_some_and(|age| age >= before + 5_000)
    });
    let text = c.ok(&["status"]);
    let line = |m: &str| {
        text.lines()
            .find(|l| l.starts_with(m))
            .unwrap_or_else(|| panic!("no row for {m}: {text}"))
            .to_owned()
    };
    let stale = line(victim);
    assert!(
        stale.contains("(seen ") && stale.ends_with("s ago)"),
        "{stale}"
    );
    for name in ["local:m001", "local:m002", "local:m004"] {
        assert!(!line(name).contains("(seen "), "{}", line(name));
    }
    c.ok(&["shutdown"]);
    assert!(c.processes().is_empty(), "left: {:?}", c.processes());
}
