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

thread_local! {
    /// What the last check of a wait saw, for [`Fleet::wait`]'s failure message.
    static SAID: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}
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
        let tmp = tempfile::Builder::new()
            .prefix("smon-fleet")
            .tempdir()
            .unwrap();
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
            // Where the peers in the namespaces reach the agent: the host's end of the
            // bridge, on a port the agent picks when it starts.
            "--agent",
            &format!("{}:0", s.host_address),
        ]);
        let fleet = Fleet {
            cluster,
            lab,
            _tmp: tmp,
        };
        fleet.run(&["agent", "start"]);
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
        let pid: i32 = std::fs::read_to_string(
            smon_proto::MachineFiles::new(&home.join(smon_proto::SSH_ROOT_IN_HOME)).pid(),
        )
        .ok()?
        .trim()
        .parse()
        .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (is_alive(pid) && String::from_utf8_lossy(&cmdline).contains("smon-peer")).then_some(pid)
    }

    fn running(&self, entries: impl IntoIterator<Item = usize>) -> usize {
        entries
            .into_iter()
            .filter(|&e| self.pid(e).is_some())
            .count()
    }

    /// Deploy, and wait until every peer of `entries` runs; the rounds it took.
    fn deploy_all(&self, entries: std::ops::RangeInclusive<usize>) -> f64 {
        let start = Instant::now();
        self.run(&["deploy"]);
        let n = entries.clone().count();
        wait_for(
            Duration::from_secs(180),
            &format!("{n} peers running"),
            || self.running(entries.clone()) == n,
        );
        rounds(start.elapsed())
    }

    fn home(&self, entry: usize) -> PathBuf {
        self.lab.home(entry).unwrap()
    }

    /// Wait for `cond`; on timeout, fail with the state of `entries`: whether each peer runs,
    /// and the end of its log.
    fn wait(&self, what: &str, timeout: Duration, entries: &[usize], cond: impl FnMut() -> bool) {
        SAID.with(|s| s.borrow_mut().clear());
        if wait_until(timeout, cond) {
            return;
        }
        let mut report = String::new();
        for &e in entries {
            if let Some(pid) = self.pid(e) {
                report += &format!("\nmachine {e}: peer {pid} runs");
                continue;
            }
            let log = std::fs::read_to_string(
                smon_proto::MachineFiles::new(&self.home(e).join(smon_proto::SSH_ROOT_IN_HOME))
                    .log(),
            )
            .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            report += &format!(
                "\n--- machine {e}: peer {:?}, processes {:?}\n{}",
                self.pid(e),
                self.lab.processes(e).unwrap_or_default(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let said = SAID.with(|s| s.borrow().clone());
        panic!("timed out after {timeout:?} waiting for {what}{report}\n{said}");
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // The agent and anything else started for the cluster directory, by pid; then the lab
        // (its guard kills every machine's processes and checks nothing is left).
        let gone = kill_until_gone(|| processes_mentioning(&self.cluster));
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
        assert!(
            fleet.lab.crash(e).unwrap() >= 2,
            "machine {e}: sshd and peer"
        );
    }
    fleet.lab.reboot(13).unwrap();
    fleet.lab.wipe(14).unwrap();
    assert!(!fleet.home(14).join(smon_proto::SSH_ROOT_IN_HOME).exists());
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
    assert!(
        smon_proto::MachineFiles::new(&fleet.home(14).join(smon_proto::SSH_ROOT_IN_HOME))
            .current_binary()
            .exists()
    );
    let status: serde_json::Value =
        serde_json::from_str(&fleet.run(&["status", "--json"])).unwrap();
    assert_eq!(status["machines"], 16, "{status}");
    wait_for(
        Duration::from_secs(60),
        "the view to show 16 running",
        || {
            let s: serde_json::Value =
                serde_json::from_str(&fleet.run(&["status", "--json"])).unwrap();
            s["running"] == 16
        },
    );
    fleet.run(&["agent", "stop"]);
}

/// What one peer says of itself: its version, livetag and membership version (None when it
/// does not answer). Asked of the peer directly, whichever side of a partition it is on.
type OwnState = (Option<smon_proto::Version>, smon_proto::LiveTag, u64);

fn own_states(fleet: &Fleet, entries: &[usize]) -> Vec<Option<OwnState>> {
    let dir = smon_console::cluster_dir::ClusterDir::open(&fleet.cluster).unwrap();
    let machines = fleet.lab.entries();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut out = Vec::new();
        for &e in entries {
            let machine: smon_proto::MachineId = machines[e - 1].parse().unwrap();
            let addr = dir.peer_address(&machine);
            let state = async {
                let client = smon_proto::transport::peer_client(
                    addr.as_str(),
                    &dir.key,
                    Duration::from_secs(2),
                )
                .await
                .ok()?;
                let view = client
                    .cluster_view(smon_console::connect::ctx(Duration::from_secs(5)), 0)
                    .await
                    .ok()?;
                if view.answered_by != machine {
                    return None;
                }
                let version = view
                    .records
                    .iter()
                    .find(|(m, _)| *m == machine)
                    .and_then(|(_, r)| r.peer_version);
                Some((version, view.livetag, view.membership_version))
            }
            .await;
            out.push(state);
        }
        out
    })
}

/// `status --json` through the peer of machines-file line `entry`.
fn status_via(fleet: &Fleet, entry: usize) -> serde_json::Value {
    let machine = fleet.lab.entries()[entry - 1].clone();
    serde_json::from_str(&fleet.run(&["--via", &machine, "status", "--json"])).unwrap()
}

/// The lines of `entries` as a machines file.
fn machines_file(fleet: &Fleet, entries: impl IntoIterator<Item = usize>, name: &str) -> PathBuf {
    let all = fleet.lab.entries();
    let text: String = entries
        .into_iter()
        .map(|e| all[e - 1].clone() + "\n")
        .collect();
    let path = fleet.cluster.with_file_name(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Addresses that logged in to machine `entry` as its user, by sshd's log.
fn logins_from(fleet: &Fleet, entry: usize) -> Vec<String> {
    let host = fleet.lab.host_of(entry).unwrap();
    let log = std::fs::read_to_string(fleet.lab.dir().join(format!("m{host}/sshd.log")))
        .unwrap_or_default();
    log.lines()
        .filter_map(|l| {
            l.split_once("Accepted publickey for ")?
                .1
                .split(" from ")
                .nth(1)
        })
        .filter_map(|rest| rest.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn fleet_partitioned_in_halves_manages_each_side_then_agrees_after_heal() {
    let _serial = serial();
    // 17 lab machines; the cluster starts with 16, the 17th is added on side A.
    let Some(mut fleet) = Fleet::new(17, 1, Some(16)) else {
        return;
    };
    fleet.deploy_all(1..=16);
    let side_a: Vec<usize> = (1..=8).chain([17]).collect();
    let side_b: Vec<usize> = (9..=16).collect();
    let machines = fleet.lab.entries();
    let via = |e: usize| machines[e - 1].clone();
    let package = fleet.cluster.with_file_name("peer-0.2.0");
    fleet.run(&[
        "package",
        "--version",
        "0.2.0",
        "--out",
        package.to_str().unwrap(),
    ]);
    let before = own_states(&fleet, &[1])[0].unwrap();

    fleet
        .lab
        .partition(&[side_a.clone(), side_b.clone()])
        .unwrap();
    let cut = Instant::now();
    // Side A: an upgrade and a new machine (the 17th, on side A). Side B: disable, enable.
    fleet.run(&["--via", &via(1), "upgrade", package.to_str().unwrap()]);
    let seventeen = machines_file(&fleet, 1..=17, "machines-17");
    fleet.run(&[
        "--via",
        &via(2),
        "membership",
        "set",
        seventeen.to_str().unwrap(),
    ]);
    fleet.run(&["--via", &via(9), "disable"]);
    // Each side restarts its own killed peer, with no help from the other.
    let (killed_a, killed_b) = (fleet.pid(3).unwrap(), fleet.pid(12).unwrap());
    kill(killed_a);
    kill(killed_b);
    // Enabled again through another peer of side B, once every peer there is disabled.
    wait_for(Duration::from_secs(60), "side B disabled", || {
        own_states(&fleet, &side_b)
            .iter()
            .all(|s| s.is_none_or(|(_, tag, _)| !tag.enabled))
    });
    fleet.run(&["--via", &via(10), "enable"]);
    fleet.wait(
        "side A upgraded, 17 deployed, both killed peers back",
        Duration::from_secs(120),
        &[3, 12, 17],
        || {
            let a = own_states(&fleet, &side_a);
            let done = a.iter().all(|s| {
                s.is_some_and(|(v, _, m)| v == Some("0.2.0".parse().unwrap()) && m == before.2 + 1)
            }) && fleet.pid(3).is_some_and(|p| p != killed_a)
                && fleet.pid(12).is_some_and(|p| p != killed_b);
            SAID.with(|s| {
                *s.borrow_mut() = format!("killed {killed_a} (3), {killed_b} (12); said {a:?}")
            });
            done
        },
    );
    // Ten rounds of partition in all (the fault's length in the scenario, as in the SMON
    // paper's experiments); all through them, nothing of side A's crosses to side B.
    if let Some(left) = (10 * ROUND).checked_sub(cut.elapsed()) {
        holds_for(left, "side B holds none of side A's changes", || {
            own_states(&fleet, &side_b)
                .iter()
                .flatten()
                .all(|(v, _, m)| *v == before.0 && *m == before.2)
        });
    }
    let side_addr = |side: &[usize]| -> Vec<String> {
        side.iter()
            .map(|&e| fleet.lab.address(e).unwrap().to_string())
            .collect()
    };
    for (entry, own) in [(3, side_addr(&side_a)), (12, side_addr(&side_b))] {
        let from = logins_from(&fleet, entry);
        assert!(!from.is_empty());
        let last = from.last().unwrap();
        assert!(
            own.contains(last),
            "machine {entry} restarted from {last}, not its side {own:?}"
        );
    }
    // Side B saw none of side A's changes; its livetag went off and on again (a peer its side
    // restarted late in the 10 rounds may still be hearing of it: a few rounds more, still
    // partitioned).
    let mut b = own_states(&fleet, &side_b);
    wait_until(5 * ROUND, || {
        b = own_states(&fleet, &side_b);
        b.iter().all(|s| {
            s.is_some_and(|(_, tag, _)| tag.enabled && tag.version >= before.1.version + 2)
        })
    });
    for (e, s) in side_b.iter().zip(&b) {
        let (v, tag, m) = s.unwrap_or_else(|| panic!("machine {e} does not answer"));
        assert_eq!(v, before.0, "machine {e}");
        assert_eq!(m, before.2, "machine {e}");
        assert!(
            tag.enabled && tag.version >= before.1.version + 2,
            "machine {e}: {tag:?}"
        );
    }
    let b_tag = b[0].unwrap().1;
    // The console's view from either side shows every machine of that side's list.
    for (e, n) in [(1, 17), (9, 16)] {
        let seen = wait_until(Duration::from_secs(60), || {
            let s = status_via(&fleet, e);
            s["machines"] == n && s["records"].as_array().unwrap().len() == n
        });
        assert!(
            seen,
            "machine {e}'s view never showed {n} machines within 60 s; its last status:\n{}",
            fleet.run(&["--via", &via(e), "status"])
        );
    }
    fleet.lab.heal().unwrap();
    let healed = Instant::now();
    let all: Vec<usize> = (1..=17).collect();
    let want = (Some("0.2.0".parse().unwrap()), b_tag, before.2 + 1);
    fleet.wait(
        "every peer to agree after heal",
        Duration::from_secs(120),
        &all,
        || {
            let states = own_states(&fleet, &all);
            SAID.with(|s| *s.borrow_mut() = format!("wanted {want:?}; said {states:?}"));
            states.iter().all(|s| *s == Some(want))
        },
    );
    let agree = rounds(healed.elapsed());
    let bound = 2.0 * (17f64).log2();
    eprintln!(
        "fleet: after heal, 17 peers agree on version, livetag and membership in {agree:.1} rounds (bound {bound:.1})"
    );
    assert!(
        agree <= bound,
        "{agree:.1} rounds to agree after heal, over 2·log2(17) = {bound:.1}"
    );
    for e in [1, 9] {
        wait_for(
            Duration::from_secs(30),
            &format!("machine {e}'s view of 17 deployed"),
            || {
                let s = status_via(&fleet, e);
                s["machines"] == 17 && s["deployed"] == 17
            },
        );
    }
    fleet.run(&["agent", "stop"]);
}

#[test]
fn fleet_two_accounts_on_one_machine_are_two_machines_both_deployed() {
    let _serial = serial();
    // 4 lab machines with 2 SSH accounts each: 8 machines, two per address.
    let Some(fleet) = Fleet::new(4, 2, None) else {
        return;
    };
    fleet.deploy_all(1..=8);
    let all: Vec<usize> = (1..=8).collect();
    for pair in all.chunks(2) {
        let (a, b) = (pair[0], pair[1]);
        assert_eq!(fleet.lab.address(a).unwrap(), fleet.lab.address(b).unwrap());
        assert_ne!(fleet.pid(a), fleet.pid(b));
    }
    // Each answers for itself, at its own address and port.
    let states = own_states(&fleet, &all);
    for (e, s) in all.iter().zip(&states) {
        assert!(
            s.is_some(),
            "machine {e}'s own peer does not answer at its address"
        );
    }
    wait_for(
        Duration::from_secs(30),
        "the view to show 8 running",
        || fleet.run(&["status", "--json"]).contains("\"running\": 8"),
    );
    fleet.run(&["agent", "stop"]);
}

#[test]
fn fleet_machine_on_a_1mbit_link_is_deployed_without_stalling_the_others() {
    let _serial = serial();
    let Some(mut fleet) = Fleet::new(16, 1, None) else {
        return;
    };
    // A run without the slow link, then every machine wiped, then the same with machine 16
    // at 1 Mbit/s (both ways).
    let baseline = fleet.deploy_all(1..=16);
    // Every machine down first (no peer left to redeploy the wiped), then reinstalled.
    for e in 1..=16 {
        fleet.lab.crash(e).unwrap();
    }
    for e in 1..=16 {
        fleet.lab.wipe(e).unwrap();
    }
    assert_eq!(fleet.running(1..=16), 0);
    fleet.lab.slow(16, "1mbit").unwrap();
    let start = Instant::now();
    fleet.run(&["deploy"]);
    fleet.wait(
        "the 15 others deployed",
        Duration::from_secs(180),
        &[16],
        || fleet.running(1..=15) == 15,
    );
    let others = rounds(start.elapsed());
    fleet.wait(
        "the slow machine deployed",
        Duration::from_secs(240),
        &[16],
        || fleet.pid(16).is_some(),
    );
    let slow = rounds(start.elapsed());
    eprintln!(
        "fleet: 16 deployed in {baseline:.1} rounds; with machine 16 at 1 Mbit/s, the 15 others \
         in {others:.1} rounds, the slow one in {slow:.1}"
    );
    assert!(
        others <= (1.5 * baseline).max(baseline + 5.0),
        "the others took {others:.1} rounds with a slow machine, {baseline:.1} without"
    );
    fleet.run(&["agent", "stop"]);
}
