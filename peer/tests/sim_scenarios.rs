//! Simulator scenarios: the real core of every peer, in virtual time.

use std::{process::Command, sync::Arc};

use smon_peer::{
    core::Strategy,
    sim::{self, FIRST_VERSION, Options, Scenario, SimParams, deployed_world, machine_name},
};
use smon_proto::{Membership, PeerState};

fn params(n: usize, seed: u64) -> SimParams {
    SimParams::new(n, seed)
}

#[test]
fn partition_then_heal_converges_on_version_livetag_and_membership() {
    for seed in 0..3 {
        let report = sim::run(Scenario::Partition, params(117, seed), &Options::default());
        assert!(report.converged, "seed {seed}: {}", report.human());
        assert!(report.rounds_after_heal.is_some());
    }
}

/// Issue 15, kind 4: a peer that cannot open connections (descriptors exhausted) takes its
/// own failure for nobody's: it marks no machine unreachable, whether self-management is on
/// (a failed ping leads to a login) or off (a failed ping is only reported), and goes on as
/// before once it can call again.
#[test]
fn a_peer_out_of_descriptors_blames_nobody() {
    let (mut w, t0) = deployed_world(params(40, 7), 0);
    let round = w.params.interval_ms;
    let blamed = |w: &sim::World| {
        w.running()
            .map(|(_, c)| c.view().root().agg.count(PeerState::Unreachable))
            .max()
            .unwrap_or(0)
    };
    let mut now = t0;
    let mut run_rounds = |w: &mut sim::World, rounds: u64, what: &str| {
        for _ in 0..rounds {
            now += round;
            w.run_until(now);
            assert_eq!(blamed(w), 0, "{what}: a view counts a machine unreachable");
        }
    };
    w.machines[3].exhausted = true;
    run_rounds(&mut w, 20, "enabled, one peer out of descriptors");
    w.set_livetag(0, false);
    run_rounds(&mut w, 20, "disabled, one peer out of descriptors");
    w.machines[3].exhausted = false;
    run_rounds(&mut w, 10, "after");
    assert_eq!(w.running().count(), 40, "every peer still runs");
}

#[test]
fn thirty_percent_crash_recovers() {
    for strategy in [Strategy::Smon, Strategy::Informed] {
        let mut p = params(117, 4);
        p.strategy = strategy;
        let options = Options {
            crash_share: 0.3,
            ..Options::default()
        };
        let report = sim::run(Scenario::Churn, p, &options);
        assert!(report.converged, "{strategy:?}: {}", report.human());
        assert_eq!(report.deployed, 117);
    }
}

#[test]
fn an_upgrade_reaches_every_peer_and_a_disable_every_peer() {
    for scenario in [Scenario::Upgrade, Scenario::Disable] {
        for strategy in [Strategy::Smon, Strategy::Informed] {
            let mut p = params(200, 9);
            p.strategy = strategy;
            let report = sim::run(scenario, p, &Options::default());
            assert!(
                report.converged,
                "{scenario:?} {strategy:?}: {}",
                report.human()
            );
        }
    }
}

#[test]
fn deployment_reaches_every_reachable_machine_despite_loss_and_dead_machines() {
    let mut p = params(300, 2);
    p.loss = 0.05;
    p.unreachable_share = 0.05;
    let report = sim::run(Scenario::Deploy, p, &Options::default());
    assert!(report.converged, "{}", report.human());
    assert!(report.reachable < 300, "some machines are unreachable");
    assert_eq!(report.deployed, report.reachable);
}

#[test]
fn of_simultaneous_installers_exactly_one_wins() {
    // The paper's mode copies several packages to some machines in the same instant.
    let mut p = params(500, 11).paper_analysis();
    p.strategy = Strategy::Smon;
    let mut w = sim::World::new(p, 0);
    w.install(0, FIRST_VERSION);
    w.start_peer(0, None);
    w.run_until(40 * w.params.interval_ms);
    let contested = w.machines.iter().filter(|m| m.copies > 1).count();
    assert!(
        contested > 10,
        "only {contested} machines got several copies"
    );
    for m in &w.machines[1..] {
        assert!(m.peer.is_some(), "{} not deployed", m.id);
        assert_eq!(
            m.installs, 1,
            "{}: {} copies, {} installs",
            m.id, m.copies, m.installs
        );
    }
}

#[test]
fn membership_changes_deploy_added_machines_and_retire_removed_ones() {
    let n = 60;
    let (mut w, t0) = deployed_world(params(n, 5), 2);
    let removed = 10;
    let listed: Vec<_> = (0..n + 2)
        .filter(|&i| i != removed)
        .map(machine_name)
        .collect();
    w.set_membership(0, Arc::new(Membership::new(2, listed)));
    let removed_copies = w.machines[removed].copies;
    w.run_until(t0 + 40 * w.params.interval_ms);
    for (i, m) in w.machines.iter().enumerate() {
        if i == removed {
            assert!(m.peer.is_none(), "the removed peer still runs");
            assert_eq!(
                m.copies, removed_copies,
                "the removed machine was deployed again"
            );
        } else {
            let core = m
                .peer
                .as_ref()
                .unwrap_or_else(|| panic!("{} not running", m.id));
            assert_eq!(core.membership().version, 2, "{}", m.id);
        }
    }
}

fn sim_bin(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_smon-sim"))
        .args(args)
        .output()
        .expect("smon-sim runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn the_same_seed_gives_byte_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    let run = |curve: &std::path::Path, seed: &str| {
        sim_bin(&[
            "deploy",
            "--machines",
            "300",
            "--seed",
            seed,
            "--json",
            "--no-wall-clock",
            "--curve",
            curve.to_str().unwrap(),
            "--loss",
            "0.02",
        ])
        .stdout
    };
    let first = run(&a, "42");
    let second = run(&b, "42");
    assert_eq!(first, second);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let json: serde_json::Value = serde_json::from_slice(&first).unwrap();
    for key in [
        "machines",
        "deployed",
        "rounds_to_all",
        "p50_rounds",
        "p90_rounds",
        "overhead_mean",
        "overhead_max",
        "overhead_histogram",
        "logins_mean",
        "bytes_per_peer_per_round",
        "wall_ms",
        "first_to_last_start_s",
        "install_times_to_all",
        "ceil_log2_machines",
        "slowest_deploy_s",
    ] {
        assert!(json.get(key).is_some(), "JSON lacks {key}");
    }
    assert_ne!(first, run(&a, "43"), "another seed, another run");
}

#[test]
fn bad_arguments_are_refused_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_smon-sim"))
        .args(["deploy", "--loss", "1.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--loss") && err.contains("[0, 1)"), "{err}");
}

/// Issue 14's goal row: control actions a K_E-only process can make spread: 0 (livetag,
/// membership, application state), through the same core path that takes signed state (a
/// signed disable afterwards reaches every peer). Deterministic: the same seed, the same run.
#[test]
fn a_k_e_only_forger_spreads_nothing_and_a_signed_disable_still_spreads() {
    let run = |seed| {
        let mut p = params(150, seed);
        p.loss = 0.01;
        let mut report = sim::run(Scenario::Forged, p, &Options::default());
        report.wall_ms = 0;
        report
    };
    for seed in [3, 8] {
        let report = run(seed);
        let forged = report.forged.clone().expect("the forged outcome");
        assert_eq!(
            (
                forged.disabled,
                forged.membership_changed,
                forged.app_offline
            ),
            (0, 0, 0),
            "seed {seed}: {forged:?}"
        );
        assert!(forged.refused > 0, "seed {seed}: nothing was even refused");
        assert_eq!(forged.peers, 149);
        assert!(
            forged.signed_disable_rounds.is_some_and(|r| r <= 20),
            "seed {seed}: {forged:?}"
        );
        assert!(report.converged);
        let again = serde_json::to_string(&run(seed)).unwrap();
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            again,
            "seed {seed}"
        );
    }
}

/// Issue 15, kind 1: a peer whose process stays but answers nothing (`kill -STOP`) is shown
/// unresponsive within a few rounds, no view counts it as running meanwhile, and after the
/// grace period it is killed and restarted by the restart path (no new copy of the package,
/// one process); deterministic by seed.
#[test]
fn a_frozen_peer_is_shown_unresponsive_then_killed_and_restarted() {
    let n = 12;
    let (mut w, t0) = deployed_world(params(n, 5), 0);
    let round = w.params.interval_ms;
    let victim = 4;
    let index = w.membership.index_of(&machine_name(victim)).unwrap();
    let copies = w.machines[victim].copies;
    let frozen_inc = w.freeze(victim);
    let state_in_views = |w: &sim::World| -> Vec<Option<PeerState>> {
        w.running()
            .map(|(_, c)| c.view().get(index).map(|r| r.state))
            .collect()
    };
    let mut now = t0;
    let mut shown_at = None;
    for r in 1..=40u64 {
        now += round;
        w.run_until(now);
        let replaced = w.machines[victim].inc > frozen_inc && w.machines[victim].peer.is_some();
        if replaced {
            assert!(
                shown_at.is_some(),
                "restarted before it was shown unresponsive"
            );
            break;
        }
        let states = state_in_views(&w);
        if shown_at.is_none() && states.contains(&Some(PeerState::Unresponsive)) {
            shown_at = Some(r);
        }
        if shown_at.is_some() {
            for (_, c) in w.running() {
                if c.view().get(index).map(|r| r.state) == Some(PeerState::Unresponsive) {
                    assert!(
                        (c.view().root().agg.up() as usize) < n,
                        "a view shows it unresponsive yet counts it as up"
                    );
                }
            }
        }
    }
    let shown_at = shown_at.expect("never shown unresponsive");
    assert!(
        shown_at <= 6,
        "shown unresponsive only after {shown_at} rounds"
    );
    let grace = w.params.core_config().unresponsive_grace_ms;
    assert!(w.now - t0 >= grace, "killed before the grace period");
    assert!(
        w.machines[victim].inc > frozen_inc && !w.machines[victim].frozen,
        "the frozen peer was not replaced within 40 rounds"
    );
    assert_eq!(
        w.machines[victim].copies, copies,
        "restarted, not deployed anew"
    );
    // The new peer runs, answers, and every view counts every machine as running again.
    for _ in 0..10 {
        now += round;
        w.run_until(now);
    }
    assert_eq!(w.running().count(), n);
    for (m, c) in w.running() {
        assert_eq!(c.view().root().agg.up() as usize, n, "view of {m}");
        assert_eq!(
            c.view().get(index).map(|r| r.state),
            Some(PeerState::Running)
        );
    }
    // Deterministic by seed.
    let one = sim::run(Scenario::Freeze, params(n, 9), &Options::default());
    let two = sim::run(Scenario::Freeze, params(n, 9), &Options::default());
    assert!(one.converged, "{}", one.human());
    assert!(one.unresponsive_rounds.is_some());
    assert_eq!(
        (
            one.curve.clone(),
            one.unresponsive_rounds,
            one.messages,
            one.events
        ),
        (two.curve, two.unresponsive_rounds, two.messages, two.events)
    );
}
