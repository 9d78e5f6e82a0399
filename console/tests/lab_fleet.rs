//! smon on the fleet lab (`smon-lab`): machines that are network namespaces on one bridge, each
//! with its own sshd, address and home. The console deploys the first peer through the agent,
//! which listens on the host's end of the lab bridge; the peers deploy the rest over SSH, across
//! a real network boundary. Scenarios: recovery from kill -9, crashes, a reboot and a wipe; a
//! partition into halves with changes on each side, then heal; two SSH accounts on one lab
//! machine; a machine on a 1 Mbit/s link. Each lab is taken down by a guard (nothing left, or
//! the test fails). Needs root, iproute2 and openssh-server; skipped with a message otherwise.

mod harness;

use std::{
    path::PathBuf,
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use harness::*;
use smon_lab::{LabGuard, UpOptions};

/// One fleet at a time: each is 16+ peers and sshds on the 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());
const ROUND: Duration = Duration::from_secs(1);

struct Fleet {
    cluster: PathBuf,
    lab: LabGuard,
    _tmp: tempfile::TempDir,
}

impl Fleet {
    /// A lab of `hosts` machines with `accounts` SSH accounts each, and a cluster of its
    /// `machines` first lines (all when None), its host keys pinned and the lab's key held by
    /// the agent, which listens on the lab bridge. Not deployed yet. None when the host cannot
    /// run a lab.
    fn new(hosts: usize, accounts: usize, machines: Option<usize>) -> Option<Self> {
        if let Some(why) = smon_lab::unavailable() {
            eprintln!("skipped: {why}");
            return None;
        }
        let tmp = tempfile::Builder::new().prefix("smon-fleet").tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let options = UpOptions {
            machines: hosts,
            users_per_machine: accounts,
        };
        let lab = LabGuard::up(&tmp.path().join("lab"), &options).unwrap();
        let s = lab.summary();
        let list = tmp.path().join("machines");
        let take = machines.unwrap_or(s.machines.len());
        std::fs::write(&list, s.machines[..take].join("\n") + "\n").unwrap();
        let cluster = tmp.path().join("cluster");
        console(&[
            "init",
            cluster.to_str().unwrap(),
            "--machines",
            list.to_str().unwrap(),
            "--known-hosts",
            s.known_hosts.to_str().unwrap(),
            "--key",
            s.key.to_str().unwrap(),
            "--interval",
            &humantime::format_duration(ROUND).to_string(),
            "--peer-binary",
            peer_bin().to_str().unwrap(),
        ]);
        let port = std::net::TcpListener::bind((s.host_address, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let fleet = Fleet {
            cluster,
            lab,
            _tmp: tmp,
        };
        fleet.run(&["agent", "start", "--listen", &format!("{}:{port}", s.host_address)]);
        Some(fleet)
    }

    /// `smon-console -C CLUSTER ARGS…`, which must succeed; its output.
    fn run(&self, args: &[&str]) -> String {
        let mut all = vec!["-C", self.cluster.to_str().unwrap()];
        all.extend_from_slice(args);
        console(&all)
    }

    /// The live peer of machines-file line `entry`, read on the machine itself.
    fn pid(&self, entry: usize) -> Option<i32> {
        let home = self.lab.home(entry).ok()?;
        let pid: i32 = std::fs::read_to_string(home.join(".smon/peer.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (is_alive(pid) && String::from_utf8_lossy(&cmdline).contains("smon-peer")).then_some(pid)
    }

    fn running(&self, entries: impl IntoIterator<Item = usize>) -> usize {
        entries.into_iter().filter(|&e| self.pid(e).is_some()).count()
    }

    /// Deploy, and wait until every peer of `entries` runs; the rounds it took.
    fn deploy_all(&self, entries: std::ops::RangeInclusive<usize>) -> f64 {
        let start = Instant::now();
        self.run(&["deploy"]);
        let n = entries.clone().count();
        wait_for(Duration::from_secs(180), &format!("{n} peers running"), || {
            self.running(entries.clone()) == n
        });
        rounds(start.elapsed())
    }

    fn home(&self, entry: usize) -> PathBuf {
        self.lab.home(entry).unwrap()
    }

    /// Wait for `cond`; on timeout, fail with the state of `entries`: whether each peer runs,
    /// and the end of its log.
    fn wait(&self, what: &str, timeout: Duration, entries: &[usize], cond: impl FnMut() -> bool) {
        if wait_until(timeout, cond) {
            return;
        }
        let mut report = String::new();
        for &e in entries {
            if let Some(pid) = self.pid(e) {
                report += &format!("\nmachine {e}: peer {pid} runs");
                continue;
            }
            let log = std::fs::read_to_string(self.home(e).join(".smon/peer.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            report += &format!(
                "\n--- machine {e}: peer {:?}, processes {:?}\n{}",
                self.pid(e),
                self.lab.processes(e).unwrap_or_default(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        panic!("timed out after {timeout:?} waiting for {what}{report}");
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // The agent and anything else started for the cluster directory, by pid; then the lab
        // (its guard kills every machine's processes and checks nothing is left).
        let left = processes_mentioning(&self.cluster);
        for &pid in &left {
            kill(pid);
        }
        let gone = wait_until(Duration::from_secs(10), || {
            processes_mentioning(&self.cluster).is_empty()
        });
        if !std::thread::panicking() {
            assert!(
                gone,
                "left behind: {}",
                describe(&processes_mentioning(&self.cluster))
            );
        }
    }
}

fn console(args: &[&str]) -> String {
    let out = Command::new(console_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "smon-console {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rounds(d: Duration) -> f64 {
    d.as_secs_f64() / ROUND.as_secs_f64()
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The median of `values`.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

#[test]
fn fleet_of_16_deploys_over_ssh_and_comes_back_from_kills_crashes_a_reboot_and_a_wipe() {
    let _serial = serial();
    let Some(fleet) = Fleet::new(16, 1, None) else {
        return;
    };
    let deploy = fleet.deploy_all(1..=16);
    eprintln!("fleet: 16 machines deployed over SSH in {deploy:.1} rounds");

    // kill -9 of 5 peers, crash of 2 machines, reboot of 1, wipe of 1, all at once.
    let before: Vec<Option<i32>> = (1..=16).map(|e| fleet.pid(e)).collect();
    for e in [1, 3, 5, 7, 9] {
        kill(fleet.pid(e).unwrap());
    }
    for e in [11, 12] {
        assert!(fleet.lab.crash(e).unwrap() >= 2, "machine {e}: sshd and peer");
    }
    fleet.lab.reboot(13).unwrap();
    fleet.lab.wipe(14).unwrap();
    assert!(!fleet.home(14).join(".smon").exists());
    let hit = Instant::now();
    // Crashed machines stay down for three rounds, then boot (sshd only: the peers must
    // bring their peer back).
    let mut booted = None;
    let mut back = std::collections::BTreeMap::new();
    let all: Vec<usize> = (1..=16).collect();
    fleet.wait("every peer back", Duration::from_secs(120), &all, || {
        if booted.is_none() && hit.elapsed() >= 3 * ROUND {
            for e in [11, 12] {
                fleet.lab.boot(e).unwrap();
            }
            booted = Some(Instant::now());
        }
        for e in [1, 3, 5, 7, 9, 11, 12, 13, 14] {
            if !back.contains_key(&e)
                && let Some(pid) = fleet.pid(e)
                && Some(pid) != before[e - 1]
            {
                back.insert(e, Instant::now());
            }
        }
        back.len() == 9 && fleet.running(1..=16) == 16
    });
    let booted = booted.unwrap();
    let since = |e: usize| {
        let from = if [11, 12].contains(&e) { booted } else { hit };
        rounds(back[&e].duration_since(from))
    };
    let killed: Vec<f64> = [1, 3, 5, 7, 9].iter().map(|&e| since(e)).collect();
    let machines: Vec<f64> = [11, 12, 13, 14].iter().map(|&e| since(e)).collect();
    eprintln!(
        "fleet: back after kill -9 {killed:.1?} rounds (median {:.1}); crashed (from boot) / \
         rebooted / wiped {machines:.1?} rounds (median {:.1})",
        median(killed.clone()),
        median(machines.clone())
    );
    // The wiped machine got a fresh install; the others kept theirs.
    assert!(fleet.home(14).join(".smon/current/smon-peer").exists());
    let status: serde_json::Value = serde_json::from_str(&fleet.run(&["status", "--json"])).unwrap();
    assert_eq!(status["machines"], 16, "{status}");
    wait_for(Duration::from_secs(60), "the view to show 16 running", || {
        let s: serde_json::Value =
            serde_json::from_str(&fleet.run(&["status", "--json"])).unwrap();
        s["running"] == 16
    });
    fleet.run(&["agent", "stop"]);
}
