//! End to end on real processes: local machines (directories with their own loopback
//! addresses), real peers, real SQLite files.

mod harness;

use std::time::Duration;

use harness::{Cluster, wait_for};

#[test]
fn thirty_machines_deploy_recover_upgrade_disable_enable_and_shut_down() {
    let c = Cluster::deployed(30);
    let status = c.status();
    assert_eq!(status["deployed"], 30);
    for name in &c.names {
        assert!(c.pid(name).is_some(), "{name} runs no peer");
    }

    // kill -9 five peers: all come back.
    let victims: Vec<_> = c.names[5..10].to_vec();
    let old: Vec<_> = victims.iter().map(|n| c.kill9(n)).collect();
    wait_for(
        Duration::from_secs(90),
        "the killed peers to be restarted",
        || {
            victims
                .iter()
                .all(|n| c.pid(n).is_some_and(|p| !old.contains(&p)))
        },
    );

    // A machine whose smon directory is gone gets deployed again.
    let wiped = &c.names[12];
    c.kill9(wiped);
    std::fs::remove_dir_all(c.root(wiped)).unwrap();
    std::fs::create_dir_all(c.root(wiped)).unwrap();
    wait_for(
        Duration::from_secs(90),
        "the wiped machine to be redeployed",
        || c.pid(wiped).is_some(),
    );

    // Upgrade one peer: all follow, the previous version is kept, no old process is left.
    let package = c.tmp.path().join("smon-peer-0.2.0");
    c.ok(&[
        "package",
        "--version",
        "0.2.0",
        "--out",
        package.to_str().unwrap(),
    ]);
    c.ok(&["upgrade", package.to_str().unwrap()]);
    c.ok(&["wait", "--version", "0.2.0", "--timeout", "120s"]);
    for name in &c.names {
        let root = c.root(name);
        assert_eq!(
            std::fs::read_link(root.join("current")).unwrap().to_str(),
            Some("versions/0.2.0"),
            "{name}"
        );
        assert!(
            root.join("previous/smon-peer").exists(),
            "{name} lost its previous version"
        );
    }
    wait_for(
        Duration::from_secs(30),
        "one peer per machine, all on 0.2.0",
        || {
            let procs = c.processes();
            procs.len() == 30
                && procs.iter().all(|pid| {
                    std::fs::read_link(format!("/proc/{pid}/exe"))
                        .is_ok_and(|exe| exe.to_string_lossy().contains("versions/0.2.0"))
                })
        },
    );

    c.ok(&["disable"]);
    c.ok(&["wait", "--disabled", "--timeout", "60s"]);
    c.ok(&["enable"]);
    c.ok(&["wait", "--enabled", "--timeout", "60s"]);

    c.ok(&["shutdown", "--timeout", "60s"]);
    assert!(
        c.processes().is_empty(),
        "left after shutdown: {}",
        harness::describe(&c.processes())
    );
}

/// Issue 16, part 3, as a new user meets it: 6 local machines, a release whose binary exits 3.
/// It is rolled back on its first peer and never spreads, and the operator is told: `upgrade`
/// fails with where and why (exit 5) instead of claiming the others follow; `status`, `status
/// --json`, `events` and `wait --version` show it; the release is refused if offered again.
#[test]
fn a_version_that_cannot_start_is_rolled_back_not_spread_and_reported() {
    let c = Cluster::deployed(6);
    let broken = c.tmp.path().join("broken.sh");
    std::fs::write(
        &broken,
        "#!/bin/sh\necho 'this version crashes at start' >&2\nexit 3\n",
    )
    .unwrap();
    let package = c.tmp.path().join("smon-peer-9.0.0");
    c.ok(&[
        "package",
        "--version",
        "9.0.0",
        "--out",
        package.to_str().unwrap(),
        "--binary",
        broken.to_str().unwrap(),
    ]);
    let status = c.status();
    let first = status["answered_by"]
        .as_str()
        .unwrap()
        .trim_start_matches("local:")
        .to_string();
    // The upgraded peer dies; another peer restarts it, and the restart rolls it back and
    // marks 9.0.0 bad, with the exit code. `upgrade` watches and says so.
    let out = c.run(&["upgrade", package.to_str().unwrap(), "--watch", "120s"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(5), "{stdout}{stderr}");
    assert!(!stdout.contains("follow"), "{stdout}");
    let mark = format!("version 9.0.0 marked bad on local:{first} at ");
    assert!(
        stderr.contains(&mark) && stderr.contains("exited with code 3 at start"),
        "{stderr}"
    );
    let log = || std::fs::read_to_string(c.machine(&first, |f| f.log())).unwrap_or_default();
    wait_for(
        Duration::from_secs(90),
        "the broken version to be rolled back",
        || {
            log().contains("rolled back from 9.0.0")
                && std::fs::read_link(c.root(&first).join("current"))
                    .is_ok_and(|l| l.to_str() == Some("versions/0.1.0"))
                && c.pid(&first).is_some()
        },
    );
    // Not spread: no other machine ever got 9.0.0, and the versions stay 0.1.0.
    for name in &c.names {
        if *name != first {
            assert!(
                !c.root(name).join("versions/9.0.0").exists(),
                "9.0.0 spread to {name}"
            );
        }
    }
    c.ok(&["wait", "--version", "0.1.0", "--timeout", "60s"]);

    // Every view tells it: the JSON through every peer (the gossip carried the mark)...
    for name in &c.names {
        wait_for(
            Duration::from_secs(30),
            &format!("{name}'s view to carry the mark"),
            || {
                let out = c.ok(&["--via", &format!("local:{name}"), "status", "--json"]);
                let s: serde_json::Value = serde_json::from_str(&out).unwrap();
                let bad = &s["bad_versions"];
                bad.as_array().is_some_and(|b| b.len() == 1)
                    && bad[0]["version"] == "9.0.0"
                    && bad[0]["machine"] == format!("local:{first}")
                    && bad[0]["exit_code"] == 3
                    && bad[0]["reason"] == "exited with code 3 at start"
                    && bad[0]["at"].as_str().is_some_and(|t| t.ends_with('Z'))
            },
        );
    }
    // ... the text of `status` ...
    let text = c.ok(&["status"]);
    assert!(text.contains(&format!("BAD VERSION: {mark}")), "{text}");
    // ... `events`, one line per mark with its source and time ...
    let events = c.ok(&["events", "--json"]);
    let line = events
        .lines()
        .find(|l| l.contains("version_marked_bad"))
        .unwrap_or_else(|| panic!("no version_marked_bad event in:\n{events}"));
    let e: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(e["machine"], format!("local:{first}"));
    assert_eq!(
        (e["version"].as_str(), e["exit_code"].as_i64()),
        (Some("9.0.0"), Some(3))
    );
    assert!(
        e["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{line}"
    );
    let plain = c.ok(&["events"]);
    assert!(
        plain.contains("version 9.0.0 marked bad: exited with code 3"),
        "{plain}"
    );
    // ... and `wait --version 9.0.0` fails at once, with its own exit code.
    let started = std::time::Instant::now();
    let out = c.run(&["wait", "--version", "9.0.0", "--timeout", "60s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "not at once");
    assert!(stderr.contains(&mark), "{stderr}");

    // Refused if offered again, saying why.
    let again = c.fails(&["upgrade", package.to_str().unwrap()]);
    assert!(again.contains("9.0.0 is marked bad"), "{again}");
    c.ok(&["shutdown"]);
}

#[test]
fn membership_changes_retire_removed_machines_and_deploy_added_ones() {
    let c = Cluster::new(15, "1s");
    // Start with the first 10 only.
    let first10: String = c.names[..10]
        .iter()
        .map(|n| format!("local:{n}\n"))
        .collect();
    let list = c.tmp.path().join("ten");
    std::fs::write(&list, &first10).unwrap();
    c.ok(&["deploy"]);
    c.ok(&["membership", "set", list.to_str().unwrap()]);
    c.ok(&["wait", "--deployed", "10", "--timeout", "90s"]);
    wait_for(Duration::from_secs(90), "the first ten to run", || {
        c.names[..10].iter().all(|n| c.pid(n).is_some())
    });
    // The same list again makes no new version (issue 15, kind 6).
    let version = c.status()["membership_version"].clone();
    let again = c.ok(&["membership", "set", list.to_str().unwrap()]);
    assert!(again.contains("membership unchanged"), "{again}");
    assert_eq!(c.status()["membership_version"], version);

    // Remove five: their peers exit. Add the five never listed: they get deployed.
    let next: String = c.names[..5]
        .iter()
        .chain(&c.names[10..])
        .map(|n| format!("local:{n}\n"))
        .collect();
    std::fs::write(&list, &next).unwrap();
    c.ok(&["membership", "set", list.to_str().unwrap()]);
    wait_for(
        Duration::from_secs(120),
        "removed peers to exit and added ones to run",
        || {
            c.names[5..10].iter().all(|n| c.pid(n).is_none())
                && c.names[10..].iter().all(|n| c.pid(n).is_some())
        },
    );
    let status = c.status();
    assert_eq!(status["machines"], 10);
    c.ok(&["shutdown"]);
}

#[test]
fn a_wrong_key_and_bad_packages_are_refused() {
    let c = Cluster::deployed(4);

    // A corrupted package: refused, nothing changes.
    let good = c.tmp.path().join("good");
    c.ok(&[
        "package",
        "--version",
        "0.3.0",
        "--out",
        good.to_str().unwrap(),
    ]);
    let mut bytes = std::fs::read(&good).unwrap();
    bytes[1000] ^= 0xff;
    let corrupted = c.tmp.path().join("corrupted");
    std::fs::write(&corrupted, &bytes).unwrap();
    let err = c.fails(&["upgrade", corrupted.to_str().unwrap()]);
    assert!(err.contains("SHA-256"), "{err}");

    // Signed by another key: refused by the console and, pushed directly, by the peer.
    let other = Cluster::new(1, "1s");
    let foreign = c.tmp.path().join("foreign");
    other.ok(&[
        "package",
        "--version",
        "0.3.0",
        "--out",
        foreign.to_str().unwrap(),
    ]);
    let err = c.fails(&["upgrade", foreign.to_str().unwrap()]);
    assert!(err.contains("does not verify"), "{err}");
    let refusal = push_directly(&c, &std::fs::read(&foreign).unwrap());
    assert!(refusal.contains("does not verify"), "{refusal}");
    let refusal = push_directly(&c, &bytes);
    assert!(refusal.contains("SHA-256"), "{refusal}");
    assert_eq!(c.status()["versions"]["0.1.0"], 4, "nothing changed");
    for name in &c.names {
        assert!(!c.root(name).join("versions/0.3.0").exists());
    }

    // A console with another cluster's key is refused during the handshake.
    std::fs::copy(other.files().cluster_key(), c.files().cluster_key()).unwrap();
    let err = c.fails(&["status"]);
    assert!(err.contains("refused the cluster key"), "{err}");
    drop(other);
    kill_all(&c);
}

/// Push a package to the first peer over RPC, bypassing the console's own check; the refusal.
fn push_directly(c: &Cluster, package: &[u8]) -> String {
    c.refusal(
        &c.names[0],
        smon_proto::ControlAction::PushRelease {
            offset: 0,
            total: package.len() as u64,
            data: package.to_vec(),
        },
    )
}

fn kill_all(c: &Cluster) {
    for pid in c.processes() {
        harness::kill(pid);
    }
}

#[test]
fn kill_9_in_the_middle_of_state_writes_loses_nothing_committed() {
    let c = Cluster::new(1, "1s");
    c.ok(&["deploy"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let release_key = harness::release_key(&c.dir);
    let acked = runtime.block_on(async {
        let client = c.client(&c.names[0]).await;
        let pid = c.pid(&c.names[0]).unwrap();
        let mut acked = 0u64;
        for i in 0..10_000u64 {
            if i == 40 {
                // Kill while writes keep coming: the next calls fail, nothing else.
                harness::kill(pid);
            }
            // Each a version above the last, signed as the console signs it.
            let tag = smon_proto::LiveTag {
                enabled: i % 2 == 0,
                version: i + 1,
            };
            let action = smon_proto::ControlAction::SetLiveTag {
                tag: harness::signed_livetag(&release_key, tag),
            };
            match client
                .control(smon_proto::tarpc::context::current(), action)
                .await
            {
                Ok(Ok(answer)) => {
                    let version: u64 = answer
                        .rsplit("version ")
                        .next()
                        .unwrap()
                        .trim_end_matches(')')
                        .parse()
                        .unwrap();
                    acked = acked.max(version);
                }
                _ => break,
            }
        }
        acked
    });
    assert!(acked >= 40, "only {acked} writes acknowledged");
    wait_for(Duration::from_secs(10), "the peer to die", || {
        c.pid(&c.names[0]).is_none()
    });
    // Restart it and read the livetag it came back with.
    let out = std::process::Command::new(c.machine(&c.names[0], |f| f.current_binary()))
        .args(["start", "--root", c.root(&c.names[0]).to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = c.status();
    let version = status["livetag"]["version"].as_u64().unwrap();
    assert!(
        version >= acked,
        "acknowledged livetag version {acked}, found {version} after kill -9"
    );
    kill_all(&c);
}

/// A dead peer's pid file can name a live process: the kernel reuses pids (`pid_max` is
/// 32,768 here), and on a busy host the next owner may be another machine's peer. Nobody may
/// take that for the dead peer: it is restarted, and `shutdown` leaves the other alone.
#[test]
fn a_dead_peer_whose_pid_now_names_another_peer_is_restarted() {
    let c = Cluster::deployed(3);
    let (victim, other) = (&c.names[1], &c.names[2]);
    // Disabled while the pid is faked, so that no peer restarts the victim before.
    c.ok(&["disable"]);
    c.ok(&["wait", "--disabled", "--timeout", "60s"]);
    let dead = c.kill9(victim);
    let foreign = c.pid(other).expect("the other peer runs");
    let pid_file = c.machine(victim, |f| f.pid());
    std::fs::write(&pid_file, foreign.to_string()).unwrap();
    assert_eq!(c.pid(victim), None, "a pid file is not a running peer");
    c.ok(&["enable"]);
    wait_for(
        Duration::from_secs(90),
        "the dead peer to be restarted",
        || c.pid(victim).is_some_and(|p| p != dead && p != foreign),
    );
    assert_eq!(c.pid(other), Some(foreign), "the other peer is untouched");
    c.ok(&["shutdown", "--timeout", "60s"]);
    assert!(
        c.processes().is_empty(),
        "left after shutdown: {}",
        harness::describe(&c.processes())
    );
}

#[test]
fn a_second_peer_on_the_same_machine_exits_at_once() {
    let c = Cluster::new(1, "1s");
    c.ok(&["deploy"]);
    let first = c.pid(&c.names[0]).expect("the first peer runs");
    let root = c.root(&c.names[0]);
    let out = std::process::Command::new(c.machine(&c.names[0], |f| f.current_binary()))
        .args(["run", "--root", root.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already runs"));
    assert_eq!(
        c.pid(&c.names[0]),
        Some(first),
        "the first peer is untouched"
    );
    c.ok(&["shutdown"]);
}

#[test]
fn bad_input_gives_a_one_line_error_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let machines = tmp.path().join("machines");
    std::fs::write(&machines, "local:a\n# comment\nlocal:b c\n").unwrap();
    let dir = tmp.path().join("c");
    let out = std::process::Command::new(harness::console_bin())
        .args([
            "init",
            dir.to_str().unwrap(),
            "--machines",
            machines.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&format!("{}:3", machines.display())), "{err}");
    assert!(!dir.exists(), "a half-written cluster dir was left");
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().count() == 1,
        "stray files left"
    );

    let out = std::process::Command::new(harness::console_bin())
        .args(["-C", tmp.path().join("nowhere").to_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nowhere") && err.contains("not a cluster directory"),
        "{err}"
    );

    // A cluster with no peer running: the error says so.
    let c = Cluster::new(3, "1s");
    // The TUI and the demo refuse to start without a terminal, pointing at batch mode.
    for args in [&["tui"][..], &["demo"][..]] {
        let err = c.fails(args);
        assert!(
            err.contains("needs a terminal") && err.contains("status --json"),
            "{err}"
        );
    }
    let err = c.fails(&["status"]);
    assert!(err.contains("no peer") && err.contains("answers"), "{err}");
    let err = c.fails(&["wait", "--deployed", "all", "--timeout", "1s"]);
    assert!(err.contains("timed out"), "{err}");
}
