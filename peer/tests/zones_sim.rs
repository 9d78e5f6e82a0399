//! The zoned cluster view in the simulator (issue 11): every peer's root aggregate equals a
//! brute-force recount of the machines' own records once the cluster is quiet, also after
//! membership changes; a zone whose representatives all crash converges again; a partitioned
//! subtree's rows age outside it and are refreshed after the heal; and runs are deterministic.

use std::sync::Arc;

use proptest::prelude::*;
use smon_peer::{
    core::{Core, Input},
    sim::{self, Options, Scenario, SimParams, World, deployed_world, machine_name},
};
use smon_proto::{
    Aggregate, AppState, AppStatus, BadMark, BadReason, BadVersion, DesiredState, Membership,
    Version, ZoneIdx, ZoneRow,
};

/// The additive parts of an aggregate: what must be exact once the cluster is quiet.
type Counts = (
    u32,
    [u32; 8],
    Vec<(Version, u32)>,
    Vec<(u64, bool, u32)>,
    Vec<(u32, u32)>,
    Vec<(u32, u32)>,
    Vec<(String, [u32; 6])>,
    u64,
    Vec<(Version, u32)>,
);

fn counts(a: &Aggregate) -> Counts {
    (
        a.machines,
        a.states,
        a.versions.clone(),
        a.livetags
            .iter()
            .map(|(t, n)| (t.version, t.enabled, *n))
            .collect(),
        a.overhead.clone(),
        a.logins.clone(),
        a.apps.iter().map(|c| (c.name.clone(), c.states)).collect(),
        a.load.sum,
        a.bad_versions.clone(),
    )
}

/// The truth: every listed machine's own record, as its running peer holds it.
fn recount(w: &World) -> Aggregate {
    let mut truth = Aggregate {
        machines: w.membership.len() as u32,
        ..Aggregate::default()
    };
    for (_, core) in w.running() {
        let listed = core.membership().version == w.membership.version;
        if let Some(me) = w.membership.index_of(core.me())
            && listed
            && let Some(own) = core.view().get(me)
        {
            truth.add_record(own, 1);
        }
    }
    truth
}

/// Peers whose root aggregate differs from the recount.
fn disagreeing(w: &World) -> Vec<String> {
    let truth = counts(&recount(w));
    w.running()
        .filter(|(_, c)| c.membership().version == w.membership.version)
        .filter(|(_, c)| counts(&c.view().root().agg) != truth)
        .map(|(_, c)| c.me().to_string())
        .collect()
}

/// Run round by round until every peer's root equals the recount (or `rounds` have passed);
/// returns the rounds it took.
fn settle(w: &mut World, rounds: u64) -> Option<u64> {
    let interval = w.params.interval_ms;
    for r in 0..=rounds {
        if disagreeing(w).is_empty() {
            return Some(r);
        }
        let next = w.now + interval;
        w.run_until(next);
    }
    None
}

fn app(state: AppState) -> Vec<AppStatus> {
    vec![AppStatus {
        name: "web".into(),
        version: Version::new(1, 0, 0),
        desired: DesiredState::Online,
        state,
        restarts: 0,
        reason: None,
    }]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Random cluster sizes (one zone to three levels), random application states and a
    /// random membership change: the counts end exact at every peer.
    #[test]
    fn aggregates_equal_a_recount_after_quiescence(
        n in 20usize..700,
        seed in 0u64..1000,
        stopped_share in 0.0f64..0.5,
        removed in 0usize..5,
        added in 0usize..5,
    ) {
        let (mut w, _) = deployed_world(SimParams::new(n, seed), added);
        let peers: Vec<usize> = w.running().map(|(m, _)| m).collect();
        for (i, &m) in peers.iter().enumerate() {
            let stopped = (i as f64) < stopped_share * peers.len() as f64;
            let state = if stopped { AppState::Stopped } else { AppState::Running };
            w.input(m, Input::AppStates(app(state)));
        }
        let took = settle(&mut w, 40);
        prop_assert!(took.is_some(), "n {n}: {:?} disagree", disagreeing(&w));

        // A membership change: `removed` machines leave (not machine 0), `added` join.
        let listed: Vec<_> = (0..n + added)
            .filter(|&i| i == 0 || i > removed)
            .map(machine_name)
            .collect();
        w.set_membership(0, Arc::new(Membership::new(2, listed)));
        let took = settle(&mut w, 60);
        let on_new = w.running().filter(|(_, c)| c.membership().version == 2).count();
        prop_assert!(
            took.is_some(),
            "n {n} -{removed} +{added}: {:?} disagree ({on_new} peers on the new list)",
            disagreeing(&w)
        );
        let root = recount(&w);
        prop_assert_eq!(root.machines as usize, n + added - removed);
        prop_assert_eq!(root.up() as usize, n + added - removed, "every listed machine runs");
    }
}

/// The row of the zone holding `machine`, as `core` holds it (the child of the lowest zone
/// the two share): None if `core` is in the same leaf zone.
fn row_of(core: &Core, machine: u32) -> Option<(ZoneIdx, Arc<ZoneRow>)> {
    let tree = core.view().tree();
    core.view()
        .rows()
        .find(|(_, child, _)| tree.contains(*child, machine) && !core.view().is_own(*child))
        .and_then(|(_, child, row)| row.map(|r| (child, r.clone())))
}

#[test]
fn a_zone_whose_representatives_all_crash_converges_again() {
    let n = 500;
    let (mut w, _) = deployed_world(SimParams::new(n, 7), 0);
    assert!(
        settle(&mut w, 40).is_some(),
        "{:?} disagree",
        disagreeing(&w)
    );
    // The representatives of the last machine's zone, as machine 0 knows them: its row's
    // sample of machines running a peer. All of them crash, with half the rest of the zone.
    let last = w.membership.index_of(&machine_name(n - 1)).unwrap();
    let (zone, row) = row_of(w.machines[0].peer.as_ref().unwrap(), last).expect("a row");
    assert!(!row.agg.up_sample.is_empty());
    let tree = w.machines[0].peer.as_ref().unwrap().view().tree().clone();
    let mut crashed: Vec<u32> = row.agg.up_sample.clone();
    crashed.extend(tree.machines(zone).iter().step_by(2));
    crashed.sort_unstable();
    crashed.dedup();
    for &m in &crashed {
        let world_index = w.index(w.membership.get(m).unwrap()).unwrap();
        w.stop_peer(world_index);
    }
    let took = settle(&mut w, 80);
    assert!(took.is_some(), "{:?} disagree", disagreeing(&w));
    assert_eq!(
        recount(&w).up() as usize,
        n,
        "every crashed peer was redeployed"
    );
    // The zone's rows name representatives that run.
    let (_, row) = row_of(w.machines[0].peer.as_ref().unwrap(), last).unwrap();
    for m in &row.agg.up_sample {
        let id = w.membership.get(*m).unwrap();
        assert!(w.machines[w.index(id).unwrap()].peer.is_some());
    }
}

#[test]
fn a_partitioned_subtree_ages_outside_and_is_refreshed_after_the_heal() {
    let n = 600;
    let (mut w, _) = deployed_world(SimParams::new(n, 3), 0);
    assert!(settle(&mut w, 40).is_some());
    let interval = w.params.interval_ms;
    let last = w.membership.index_of(&machine_name(n - 1)).unwrap();
    let tree = w.machines[0].peer.as_ref().unwrap().view().tree().clone();
    let leaf = tree.leaf_of(last).unwrap();
    let inside: Vec<usize> = tree
        .machines(leaf)
        .iter()
        .map(|&m| w.index(w.membership.get(m).unwrap()).unwrap())
        .collect();
    // Age of the subtree's row at every peer outside it: (youngest, p99, oldest), in rounds.
    let ages = |w: &World| {
        let mut ages = Vec::new();
        for (m, core) in w.running() {
            if inside.contains(&m) {
                continue;
            }
            let (_, row) = row_of(core, last).expect("a row of the subtree");
            ages.push(w.now.saturating_sub(row.order.as_of_ms) / interval);
        }
        ages.sort_unstable();
        let p99 = ages[(ages.len() * 99).div_ceil(100) - 1];
        (ages[0], p99, ages[ages.len() - 1])
    };
    // Issue 11's freshness goal: p99 ≤ 8 rounds (at 1,000 machines). Over seeds 1-8 this
    // p99 is 3-7 and the oldest copy 4-9 rounds: bounding the oldest by 6, as this test did,
    // passed or failed by the seed's luck.
    let (_, before, _) = ages(&w);
    assert!(
        before <= 8,
        "rows {before} rounds old (p99) before the partition"
    );

    for &m in &inside {
        w.machines[m].side = 1;
    }
    let apart = 20;
    w.run_until(w.now + apart * interval);
    let (youngest, _, _) = ages(&w);
    assert!(
        youngest + 2 >= apart,
        "youngest row {youngest} rounds old after {apart} apart"
    );
    // The whole cluster's row is as old as its oldest part.
    for (m, core) in w.running() {
        if !inside.contains(&m) {
            let age = (w.now - core.view().root().order.as_of_ms) / interval;
            assert!(age + 2 >= apart, "root {age} rounds old");
        }
    }

    for m in &mut w.machines {
        m.side = 0;
    }
    w.run_until(w.now + 10 * interval);
    let (_, p99, _) = ages(&w);
    assert!(
        p99 <= 8,
        "rows {p99} rounds old (p99) 10 rounds after the heal"
    );
    assert!(settle(&mut w, 10).is_some(), "{:?}", disagreeing(&w));
}

#[test]
fn the_same_seed_gives_the_same_views_and_report() {
    let run = || {
        let mut r = sim::run(
            Scenario::AppState,
            SimParams::new(300, 11),
            &Options::default(),
        );
        r.wall_ms = 0;
        serde_json::to_string(&r).unwrap()
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    assert!(a.contains("\"view_rounds_p99\":"));
    let world = |seed| {
        let (mut w, t0) = deployed_world(SimParams::new(300, seed), 0);
        w.run_until(t0 + 10 * w.params.interval_ms);
        w.running()
            .map(|(_, c)| format!("{:?}", c.view().root()))
            .collect::<Vec<_>>()
    };
    assert_eq!(world(5), world(5));
}

/// Issue 16: a version rolled back on one machine is told to every peer by the zone
/// aggregates: the root counts it, and its sample says on which machine, why and when; every
/// peer then refuses it. After a membership change the sample still names that machine (by
/// its new index), and the same seed gives the same views.
#[test]
fn a_version_marked_bad_on_one_machine_reaches_every_peers_root() {
    let run = |seed| {
        let n = 400;
        let (mut w, _) = deployed_world(SimParams::new(n, seed), 0);
        assert!(settle(&mut w, 40).is_some(), "{:?}", disagreeing(&w));
        let bad_version = Version::new(0, 5, 0);
        let bad = BadVersion {
            version: bad_version,
            reason: BadReason::Exited { code: 3 },
            at_ms: w.now,
        };
        let victim = machine_name(n - 1);
        w.input(w.index(&victim).unwrap(), Input::MarkBad(bad));
        let took = settle(&mut w, 40);
        assert!(took.is_some(), "{:?} disagree", disagreeing(&w));
        let check = |w: &World| {
            let at = w.membership.index_of(&victim).unwrap();
            for (_, core) in w.running() {
                let root = &core.view().root().agg;
                assert_eq!(root.bad_versions, [(bad_version, 1)], "at {}", core.me());
                assert_eq!(root.bad_sample, [BadMark { machine: at, bad }]);
                assert!(core.is_marked_bad(bad_version));
                assert!(!core.is_marked_bad(Version::new(0, 6, 0)));
            }
        };
        check(&w);
        // Machine 1 leaves the list: every index after it moves down by one.
        let listed: Vec<_> = (0..n).filter(|&i| i != 1).map(machine_name).collect();
        w.set_membership(0, Arc::new(Membership::new(2, listed)));
        assert!(settle(&mut w, 60).is_some(), "{:?}", disagreeing(&w));
        check(&w);
        (
            took,
            format!("{:?}", w.machines[0].peer.as_ref().unwrap().view().root()),
        )
    };
    let (took, root) = run(9);
    assert!(took.unwrap() <= 15, "took {took:?} rounds");
    assert_eq!(run(9).1, root, "same seed, same view");
}

/// Issue 15, kind 6: two operators, one on each side of a split, each set another list with
/// the same version. After the heal every peer keeps the same list (the greater by
/// `Membership::order`), no record crossed between the two lists (each record still names the
/// machine whose application it reports), and the same seed gives the same end.
#[test]
fn two_lists_of_one_version_converge_and_never_mix_records() {
    let run = |seed| {
        let n = 60;
        let (mut w, _) = deployed_world(SimParams::new(n, seed), 0);
        assert!(settle(&mut w, 40).is_some(), "{:?}", disagreeing(&w));
        // Each machine reports an application named after it: a record that crossed lists
        // would carry another machine's name.
        for m in 0..n {
            let mut apps = app(AppState::Running);
            apps[0].name = format!("app-of-{m}");
            w.input(m, Input::AppStates(apps));
        }
        let interval = w.params.interval_ms;
        w.run_until(w.now + 5 * interval);
        for m in n / 2..n {
            w.machines[m].side = 1;
        }
        // Side 0 drops the last machine, side 1 the second: indexes shift differently.
        let a: Vec<_> = (0..n - 1).map(machine_name).collect();
        let b: Vec<_> = (0..n).filter(|&i| i != 1).map(machine_name).collect();
        let signed = |list: Vec<_>| {
            let mut list = Membership::new(2, list);
            list.set_signature(smon_peer::core::FlagSignatures::SIGNED.to_vec());
            Arc::new(list)
        };
        let (a, b) = (signed(a), signed(b));
        assert_ne!(a.digest(), b.digest());
        w.input(0, Input::SetMembership(a.clone()));
        w.input(n - 1, Input::SetMembership(b.clone()));
        w.run_until(w.now + 20 * interval);
        for m in &mut w.machines {
            m.side = 0;
        }
        let winner = if a.order() > b.order() { a } else { b };
        let mut took = None;
        for round in 0..60 {
            let lists: Vec<_> = w.running().map(|(_, c)| c.membership().order()).collect();
            if lists.iter().all(|l| *l == winner.order()) {
                took = Some(round);
                break;
            }
            w.run_until(w.now + interval);
        }
        assert!(took.is_some(), "the two lists never converged");
        w.run_until(w.now + 10 * interval);
        for (_, core) in w.running() {
            for (record, _) in core.view().records() {
                let id = core.membership().get(record.machine).unwrap();
                let m = w.index(id).unwrap();
                for app in &record.apps {
                    assert_eq!(app.name, format!("app-of-{m}"), "at {}", core.me());
                }
            }
        }
        let peer = w
            .running()
            .next()
            .map(|(_, c)| format!("{:?}", c.view().root()));
        (winner.order(), peer)
    };
    assert_eq!(run(4), run(4), "same seed, same end");
}
