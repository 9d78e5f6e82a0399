//! The scenarios of `smon-sim`: each builds a world, perturbs it, runs it round by round and
//! reports how long the cluster took to reach the scenario's goal.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use rand::{RngExt, seq::SliceRandom};
use smon_proto::{
    Aggregate, AppDecl, AppState, AppStatus, DesiredState, Membership, PeerState, Version,
};

use super::{
    params::SimParams,
    report::Report,
    view_watch::{ViewWatch, rows_per_peer},
    world::{FIRST_VERSION, M, World},
};
use crate::core::{Core, Input, Millis, SpreadHint};

pub const NEXT_VERSION: Version = Version::new(2, 0, 0);

/// Rounds of gossip before a perturbation in scenarios that start from a deployed cluster.
const WARM_UP_ROUNDS: u64 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Deploy,
    Disable,
    Upgrade,
    Partition,
    Churn,
    /// An application installed on one peer: rounds until every peer has it.
    AppInstall,
    /// An application's state changes on one peer: rounds until every other peer's view
    /// shows it (what `app status` asked of any peer answers).
    AppState,
    /// A process holding only K_E sends forged control state to every peer for a number of
    /// rounds: none of it may spread (issue 14); a signed disable still does.
    Forged,
    /// One peer freezes (`kill -STOP`: its process stays, it answers nothing): rounds until
    /// it was killed and restarted and every view counts it as running again.
    Freeze,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Partition: rounds the halves stay apart.
    pub partition_rounds: u64,
    /// Churn: share of peers crashed at once.
    pub crash_share: f64,
    /// Forged: rounds the K_E-only forger runs.
    pub forged_rounds: u64,
    /// App-state: every peer's own record also changes every round (a new load average),
    /// as on real machines, so the change competes with that many other rumors.
    pub load_churn: bool,
    /// App-state: rounds between the cluster-wide start of the application (every machine's
    /// record changes at once) and the change measured.
    pub settle_rounds: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            partition_rounds: 10,
            crash_share: 0.3,
            load_churn: true,
            settle_rounds: 60,
            forged_rounds: 10,
        }
    }
}

pub fn run(scenario: Scenario, params: SimParams, options: &Options) -> Report {
    let wall = Instant::now();
    let mut report = match scenario {
        Scenario::Deploy => deploy(params),
        Scenario::Disable => disable(params),
        Scenario::Upgrade => upgrade(params),
        Scenario::Partition => partition(params, options.partition_rounds),
        Scenario::Churn => churn(params, options.crash_share),
        Scenario::AppInstall => app_install(params),
        Scenario::AppState => app_state(params, options.load_churn, options.settle_rounds),
        Scenario::Forged => forged(params, options.forged_rounds),
        Scenario::Freeze => freeze(params),
    };
    report.wall_ms = wall.elapsed().as_millis() as u64;
    report
}

/// Where in a round the goal is checked: at its end. With synchronous rounds the actions of
/// round r happen just after r × interval, so the end is the instant before the next round.
fn check_offset(w: &World) -> Millis {
    if w.params.synchronous {
        w.params.interval_ms - 1
    } else {
        0
    }
}

/// What a scenario watches, round by round from its change.
struct Watch<'a> {
    scenario: &'static str,
    /// The share of the goal reached (1.0: done).
    progress: Box<dyn Fn(&World) -> f64 + 'a>,
    /// Whether a peer's cluster view (its root aggregate) shows the goal.
    reflects: Box<dyn Fn(&Core) -> bool + 'a>,
    /// Called before each round (e.g. new load figures on every machine).
    before_round: Box<dyn FnMut(&mut World) + 'a>,
}

impl<'a> Watch<'a> {
    fn new(
        scenario: &'static str,
        progress: impl Fn(&World) -> f64 + 'a,
        reflects: impl Fn(&Core) -> bool + 'a,
    ) -> Self {
        Self {
            scenario,
            progress: Box::new(progress),
            reflects: Box::new(reflects),
            before_round: Box::new(|_| {}),
        }
    }

    fn before_round(mut self, f: impl FnMut(&mut World) + 'a) -> Self {
        self.before_round = Box::new(f);
        self
    }
}

/// Run round by round from `t0` until the goal holds (checked at each round's end), then on
/// until every peer's view shows it too (or `max_rounds`). The report's figures are those of
/// the round the goal was reached in; the view's are added.
fn run_watched(w: &mut World, t0: Millis, mut watch: Watch) -> Report {
    let interval = w.params.interval_ms;
    let offset = check_offset(w);
    let mut view = ViewWatch::new(w);
    view.observe(w, 0, &watch.reflects);
    let mut curve = vec![(watch.progress)(w)];
    let mut report = None;
    for round in 1..=w.params.max_rounds {
        (watch.before_round)(w);
        w.run_until(t0 + round * interval + offset);
        view.observe(w, round, &watch.reflects);
        if report.is_none() {
            let p = (watch.progress)(w);
            curve.push(p);
            if p >= 1.0 {
                report = Some(base_report(w, watch.scenario, curve.clone(), Some(round)));
            }
        }
        if report.is_some() && view.all(w) {
            break;
        }
    }
    let mut report = report.unwrap_or_else(|| base_report(w, watch.scenario, curve, None));
    let rounds = view.rounds(w);
    report.view_rounds_p50 = rounds.p50;
    report.view_rounds_p99 = rounds.p99;
    report.view_rounds_max = rounds.max;
    (report.rows_per_peer_mean, report.rows_per_peer_max) = rows_per_peer(w);
    report
}

fn first_round_at(curve: &[f64], fraction: f64) -> Option<u64> {
    curve.iter().position(|&p| p >= fraction).map(|r| r as u64)
}

fn reachable(w: &World) -> Vec<M> {
    (0..w.params.machines)
        .filter(|&m| !w.machines[m].unreachable)
        .collect()
}

/// The goal of every `targets` machine meeting `done` (the share of them that do), seen
/// in a peer's view when its root aggregate counts them all as running a peer.
fn every_reachable_up<'a>(
    scenario: &'static str,
    targets: &'a [M],
    done: impl Fn(&super::world::Machine) -> bool + 'a,
) -> Watch<'a> {
    let total = targets.len();
    Watch::new(
        scenario,
        move |w| targets.iter().filter(|&&m| done(&w.machines[m])).count() as f64 / total as f64,
        move |c| c.view().root().agg.up() as usize == total,
    )
}

fn base_report(w: &World, scenario: &'static str, curve: Vec<f64>, done: Option<u64>) -> Report {
    let listed = w.params.machines;
    let reachable = reachable(w);
    let deployed = (0..listed)
        .filter(|&m| w.machines[m].peer.is_some())
        .count();
    let mut histogram = BTreeMap::new();
    let mut copies_total = 0u64;
    let mut copies_max = 0;
    let mut with_copies = 0usize;
    for machine in &w.machines[..listed] {
        if machine.copies > 0 {
            *histogram.entry(machine.copies).or_insert(0) += 1;
            copies_total += u64::from(machine.copies);
            copies_max = copies_max.max(machine.copies);
            with_copies += 1;
        }
    }
    let logins: u64 = w.machines[..listed]
        .iter()
        .map(|m| u64::from(m.logins))
        .sum();
    let interval = w.params.interval_ms;
    Report {
        scenario,
        machines: listed,
        seed: w.params.seed,
        strategy: w.params.strategy,
        synchronous: w.params.synchronous,
        interval_ms: interval,
        deploy_time_ms: w.params.deploy_time_ms,
        converged: done.is_some(),
        deployed,
        reachable: reachable.len(),
        rounds_to_all: done,
        seconds_to_all: done.map(|r| (r * interval) as f64 / 1000.0),
        p50_rounds: first_round_at(&curve, 0.5),
        p90_rounds: first_round_at(&curve, 0.9),
        rounds_after_heal: None,
        unresponsive_rounds: None,
        first_to_last_start_s: None,
        install_times_to_all: None,
        ceil_log2_machines: None,
        slowest_deploy_s: None,
        overhead_mean: copies_total as f64 / with_copies.max(1) as f64,
        overhead_max: copies_max,
        overhead_histogram: histogram,
        logins_mean: logins as f64 / listed.max(1) as f64,
        bytes_per_peer_per_round: w.bytes as f64 / w.peer_rounds().max(1.0),
        view_rounds_p50: None,
        view_rounds_p99: None,
        view_rounds_max: None,
        rows_per_peer_mean: 0.0,
        rows_per_peer_max: 0,
        messages: w.messages,
        events: w.events,
        wall_ms: 0,
        forged: None,
        curve,
    }
}

/// Self-deployment from one peer (the paper's Fig. 6, Tables II and III).
pub fn deploy(params: SimParams) -> Report {
    let mut w = World::new(params, 0);
    w.install(0, FIRST_VERSION);
    // As the console deploys the first peer: at the root of the spreading tree.
    let root = SpreadHint {
        origin: 0,
        membership_version: w.membership.version,
    };
    w.start_peer(0, Some(root));
    let targets = reachable(&w);
    let watch = every_reachable_up("deploy", &targets, |m: &super::world::Machine| {
        m.first_started.is_some()
    });
    let mut report = run_watched(&mut w, 0, watch);
    add_spread_times(&w, &targets, &mut report);
    report
}

/// The deploy scenario's times: first to last peer start, in seconds and in install-times,
/// beside ⌈log2 N⌉ and the slowest single deployment.
fn add_spread_times(w: &World, targets: &[M], report: &mut Report) {
    let seconds = |ms: Millis| ms as f64 / 1000.0;
    let starts: Vec<Millis> = targets
        .iter()
        .filter_map(|&m| w.machines[m].first_started)
        .collect();
    if report.converged
        && let (Some(first), Some(last)) = (starts.iter().min(), starts.iter().max())
    {
        let span = seconds(last - first);
        report.first_to_last_start_s = Some(span);
        report.install_times_to_all =
            (w.params.deploy_time_ms > 0).then(|| span / seconds(w.params.deploy_time_ms));
    }
    report.ceil_log2_machines = Some((w.params.machines.max(1) as f64).log2().ceil() as u32);
    report.slowest_deploy_s = targets
        .iter()
        .filter_map(|&m| w.machines[m].deploy_took)
        .max()
        .map(seconds);
}

/// A world where every reachable machine already runs a peer, after a few rounds of gossip.
pub fn deployed_world(params: SimParams, spare: usize) -> (World, Millis) {
    let mut w = World::new(params, spare);
    for m in reachable(&w) {
        w.install(m, FIRST_VERSION);
        w.start_peer(m, None);
    }
    let t0 = WARM_UP_ROUNDS * w.params.interval_ms;
    w.run_until(t0);
    (w, t0)
}

fn share_of_running(w: &World, pred: impl Fn(&crate::core::Core) -> bool) -> f64 {
    let (mut yes, mut all) = (0usize, 0usize);
    for (_, core) in w.running() {
        all += 1;
        yes += usize::from(pred(core));
    }
    if all == 0 {
        0.0
    } else {
        yes as f64 / all as f64
    }
}

/// Livetag set to false on one peer: rounds until every peer is disabled (Fig. 6, right).
pub fn disable(params: SimParams) -> Report {
    let (mut w, t0) = deployed_world(params, 0);
    let peers = w.running().count() as u32;
    w.set_livetag(0, false);
    let watch = Watch::new(
        "disable",
        |w| share_of_running(w, |c| !c.livetag().enabled),
        |c| c.view().root().agg.count(PeerState::Disabled) == peers,
    );
    run_watched(&mut w, t0, watch)
}

fn upgrade_one(w: &mut World, m: M, version: Version) {
    w.install(m, version);
    w.machines[m].copies -= 1; // an operator's upgrade is not a deployment copy
    w.stop_peer(m);
    w.start_peer(m, None);
}

/// One peer gets a newer version: rounds until every peer runs it.
pub fn upgrade(params: SimParams) -> Report {
    let (mut w, t0) = deployed_world(params, 0);
    let peers = w.running().count() as u32;
    upgrade_one(&mut w, 0, NEXT_VERSION);
    let watch = Watch::new(
        "upgrade",
        |w| share_of_running(w, |c| c.version() == NEXT_VERSION),
        |c| c.view().root().agg.versions == [(NEXT_VERSION, peers)],
    );
    run_watched(&mut w, t0, watch)
}

/// Halves apart for `apart` rounds, each side changing something (an upgrade on one, a
/// livetag flip and a membership change on the other); then the network heals.
pub fn partition(params: SimParams, apart: u64) -> Report {
    let n = params.machines;
    let (mut w, t0) = deployed_world(params, 1);
    for m in n / 2..n + 1 {
        w.machines[m].side = 1;
    }
    upgrade_one(&mut w, 0, NEXT_VERSION);
    let last = n - 1;
    w.set_livetag(last, false);
    w.set_livetag(last, true);
    let grown: Vec<_> = (0..=n).map(super::world::machine_name).collect();
    w.set_membership(last, Arc::new(Membership::new(2, grown)));
    let heal_at = t0 + apart * w.params.interval_ms;
    // The tag the operator set last (its version is the operator's choice, see
    // `World::set_livetag`).
    let goal = w.livetag_of(last).expect("the operator's peer runs");
    assert!(goal.enabled);
    w.run_until(heal_at);
    for machine in &mut w.machines {
        machine.side = 0;
    }
    let all = n as u32 + 1;
    let watch = Watch::new(
        "partition",
        |w| {
            let agreed = share_of_running(w, |c| {
                c.version() == NEXT_VERSION && c.livetag() == goal && c.membership().version == 2
            });
            if w.machines[n].peer.is_some() {
                agreed
            } else {
                agreed.min(0.99)
            }
        },
        |c| {
            let agg = &c.view().root().agg;
            c.membership().version == 2
                && agg.versions == [(NEXT_VERSION, all)]
                && agg.livetags == [(goal, all)]
        },
    );
    let mut report = run_watched(&mut w, heal_at, watch);
    report.rounds_after_heal = report.rounds_to_all;
    report
}

/// A share of the peers crash at once: rounds until all run again.
pub fn churn(params: SimParams, crash_share: f64) -> Report {
    let (mut w, t0) = deployed_world(params, 0);
    let mut victims = reachable(&w);
    victims.shuffle(w.rng());
    let crash = ((victims.len() as f64) * crash_share).round() as usize;
    for &m in &victims[..crash] {
        w.stop_peer(m);
    }
    let targets = reachable(&w);
    let _ = w.rng().random::<u8>();
    let watch = every_reachable_up("churn", &targets, |m: &super::world::Machine| {
        m.peer.is_some()
    });
    run_watched(&mut w, t0, watch)
}

/// One peer is frozen (issue 15, kind 1). The goal: its process was replaced (killed, then
/// restarted by the usual path: the same package, no new copy) and every view counts all
/// machines running. `unresponsive_rounds`: rounds until some peer's view first showed it
/// unresponsive; `restarted_round`: the round its new process started.
pub fn freeze(params: SimParams) -> Report {
    let (mut w, t0) = deployed_world(params, 0);
    let targets = reachable(&w);
    let victim = targets[w.rng().random_range(0..targets.len())];
    let frozen_inc = w.freeze(victim);
    let index = w
        .membership
        .index_of(&w.machines[victim].id)
        .expect("a listed machine");
    let interval = w.params.interval_ms;
    let unresponsive_at = std::cell::Cell::new(None);
    let round_of = move |w: &World| (w.now.saturating_sub(t0)).div_ceil(interval);
    let watch = Watch::new(
        "freeze",
        move |w| {
            let m = &w.machines[victim];
            let replaced = m.peer.is_some() && !m.frozen && m.inc > frozen_inc;
            f64::from(u8::from(replaced))
        },
        |c| c.view().root().agg.up() as usize == targets.len(),
    )
    .before_round(|w| {
        let shown = w
            .running()
            .any(|(_, c)| c.view().get(index).map(|r| r.state) == Some(PeerState::Unresponsive));
        if shown && unresponsive_at.get().is_none() {
            unresponsive_at.set(Some(round_of(w)));
        }
    });
    let mut report = run_watched(&mut w, t0, watch);
    report.unresponsive_rounds = unresponsive_at.get();
    report
}

fn hello_decl() -> AppDecl {
    AppDecl {
        name: "hello".into(),
        version: Version::new(1, 0, 0),
        desired: DesiredState::Online,
        desired_rev: 0,
        desired_sig: Vec::new(),
    }
}

/// An application installed on one peer (by the operator): rounds until every running peer
/// has fetched and adopted it.
pub fn app_install(params: SimParams) -> Report {
    let (mut w, t0) = deployed_world(params, 0);
    let peers = w.running().count() as u32;
    let decl = hello_decl();
    w.input(0, Input::AppInstalledLocally(decl.clone()));
    let watch = Watch::new(
        "app-install",
        |w| share_of_running(w, |c| c.apps().iter().any(|a| a.version == decl.version)),
        |c| {
            let agg = &c.view().root().agg;
            agg.app(&decl.name)
                .is_some_and(|a| a.count(AppState::Running) == peers)
        },
    );
    run_watched(&mut w, t0, watch)
}

/// Give every running peer a new load average (its record changes, as on a real machine).
fn churn_loads(w: &mut World) {
    let peers: Vec<M> = w.running().map(|(m, _)| m).collect();
    for m in peers {
        let load = w.rng().random_range(0..400u16);
        let facts = crate::core::LocalFacts {
            overhead: w.machines[m].copies,
            logins: w.machines[m].logins,
            load,
            first_deployed_ms: w.machines[m].first_started,
        };
        w.input(m, Input::LocalFacts(facts));
    }
}

/// An application's state changes on one peer: rounds until every other peer's view (its root
/// aggregate) shows the new state. With `load_churn`, every record also changes every round.
pub fn app_state(params: SimParams, load_churn: bool, settle_rounds: u64) -> Report {
    let (mut w, t0) = deployed_world(params, 0);
    let status = |state| AppStatus {
        name: "hello".into(),
        version: Version::new(1, 0, 0),
        desired: DesiredState::Online,
        state,
        restarts: 0,
        reason: None,
    };
    // Every peer runs it; then machine 0's stops.
    let peers: Vec<M> = w.running().map(|(m, _)| m).collect();
    for &m in &peers {
        w.input(m, Input::AppStates(vec![status(AppState::Running)]));
    }
    let interval = w.params.interval_ms;
    let settle = t0 + settle_rounds * interval;
    let mut t = t0;
    while t < settle {
        t += interval;
        if load_churn {
            churn_loads(&mut w);
        }
        w.run_until(t);
    }
    let subject = 0;
    w.input(subject, Input::AppStates(vec![status(AppState::Stopped)]));
    let running = peers.len() as u32 - 1;
    let shows = |agg: &Aggregate| {
        agg.app("hello").is_some_and(|a| {
            a.count(AppState::Stopped) == 1 && a.count(AppState::Running) == running
        })
    };
    let others = peers.len().saturating_sub(1).max(1) as f64;
    let watch = Watch::new(
        "app-state",
        |w| {
            w.running()
                .filter(|&(m, c)| m != subject && shows(&c.view().root().agg))
                .count() as f64
                / others
        },
        |c| shows(&c.view().root().agg),
    )
    .before_round(|w| {
        if load_churn {
            churn_loads(w)
        }
    });
    run_watched(&mut w, settle, watch)
}

/// Does the peer hold any of the forger's state: a disabled livetag, another membership list
/// (or none of its own), the application offline?
fn holds_forged(core: &Core, list_version: u64) -> [bool; 3] {
    let offline = (core.apps().iter()).any(|a| a.desired == DesiredState::Offline);
    [
        !core.livetag().enabled,
        core.is_removed() || core.membership().version != list_version,
        offline,
    ]
}

/// The last machine holds only K_E (no peer): for `rounds` rounds it answers every call with
/// forged control state and sends it to every peer itself, by gossip and as operator actions
/// (see `world/forger.rs`). Counts the peers that took any of it at any round's end (the
/// goal: 0), then has the operator disable the cluster, signed, through one peer: the same
/// code path that refused the forgeries must still spread that.
pub fn forged(params: SimParams, rounds: u64) -> Report {
    let mut w = World::new(params, 0);
    let forger = w.params.machines - 1;
    w.machines[forger].forger = true;
    for m in reachable(&w).into_iter().filter(|&m| m != forger) {
        w.install(m, FIRST_VERSION);
        w.start_peer(m, None);
    }
    let interval = w.params.interval_ms;
    let t0 = WARM_UP_ROUNDS * interval;
    w.run_until(t0);
    let peers: Vec<M> = w.running().map(|(m, _)| m).collect();
    for &m in &peers {
        w.input(m, Input::AppInstalledLocally(hello_decl()));
    }
    let list_version = w.membership.version;
    let offset = check_offset(&w);
    let mut took = [
        std::collections::BTreeSet::new(),
        Default::default(),
        Default::default(),
    ];
    let mut curve = vec![0.0];
    for round in 1..=rounds {
        w.inject_forged(&["hello"]);
        w.run_until(t0 + round * interval + offset);
        for (m, core) in w.running() {
            for (kind, held) in holds_forged(core, list_version).into_iter().enumerate() {
                if held {
                    took[kind].insert(m);
                }
            }
        }
        let any = took
            .iter()
            .flatten()
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        curve.push(any as f64 / peers.len().max(1) as f64);
    }
    let mut outcome = super::report::ForgedOutcome {
        rounds,
        peers: peers.len(),
        disabled: took[0].len(),
        membership_changed: took[1].len(),
        app_offline: took[2].len(),
        refused: w.refused,
        signed_disable_rounds: None,
    };
    let t1 = t0 + rounds * interval;
    w.set_livetag(peers[0], false);
    for round in 1..=w.params.max_rounds {
        w.run_until(t1 + round * interval + offset);
        if w.running().all(|(_, c)| !c.livetag().enabled) {
            outcome.signed_disable_rounds = Some(round);
            break;
        }
    }
    let converged = outcome.disabled + outcome.membership_changed + outcome.app_offline == 0;
    let mut report = base_report(&w, "forged", curve, converged.then_some(rounds));
    report.forged = Some(outcome);
    report
}
