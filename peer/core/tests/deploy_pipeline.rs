//! The deployment path pipelines under `informed` (issue 17): a peer deployed just now starts
//! at once and logs in to the children of its spreading tree without pinging them first, and a
//! deployer goes on with its next machine as soon as a deployment ends. A restarted peer, and
//! the paper's strategy, keep one attempt per round and ping first.

use std::sync::Arc;

use rand::{SeedableRng, rngs::Xoshiro256PlusPlus};
use smon_core::{
    Boot, CallFailure, Core, CoreConfig, Input, LocalFacts, LoginOutcome, OtherInstall, Output,
    PersistentState, Probe, SpreadHint, Strategy,
};
use smon_proto_types::{
    Gossip, MachineId, MachineRecord, Membership, PeerCall, PeerState, Ping, Reason, Version,
};

const N: usize = 16;
const INTERVAL: u64 = 5_000;
/// Wall-clock-like start time, so that "deployed just now" is a real comparison.
const NOW: u64 = 1_800_000_000_000;

fn machine(i: usize) -> MachineId {
    MachineId::local(format!("m{i:02}"))
}

fn membership() -> Arc<Membership> {
    Arc::new(Membership::new(1, (0..N).map(machine).collect()))
}

struct Peer {
    core: Core,
    rng: Xoshiro256PlusPlus,
}

impl Peer {
    /// The peer of machine `me`, placed in the tree rooted at machine 0, first deployed at
    /// `first_deployed`; returns it with the outputs of its start.
    fn new(strategy: Strategy, me: usize, first_deployed: u64) -> (Self, Vec<Output>) {
        let cfg = CoreConfig {
            strategy,
            ..CoreConfig::default()
        };
        Self::with_config(cfg, me, first_deployed)
    }

    /// [`Peer::new`] with the settings `cfg` (its interval made [`INTERVAL`]).
    fn with_config(cfg: CoreConfig, me: usize, first_deployed: u64) -> (Self, Vec<Output>) {
        let cfg = CoreConfig {
            interval_ms: INTERVAL,
            ..cfg
        };
        let boot = Boot {
            me: machine(me),
            state: PersistentState::new(Version::new(1, 0, 0)),
            membership: membership(),
            facts: LocalFacts {
                first_deployed_ms: Some(first_deployed),
                ..LocalFacts::default()
            },
            hint: Some(SpreadHint {
                origin: 0,
                membership_version: 1,
            }),
            signatures: Arc::new(smon_core::FlagSignatures),
        };
        let mut peer = Self {
            core: Core::new(cfg, boot, NOW),
            rng: Xoshiro256PlusPlus::seed_from_u64(me as u64),
        };
        let mut out = Vec::new();
        peer.core.start(NOW, &mut peer.rng, &mut out);
        (peer, out)
    }

    fn handle(&mut self, now: u64, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.core.handle(now, input, &mut self.rng, &mut out);
        out
    }
}

fn timer(out: &[Output]) -> Option<u64> {
    out.iter().find_map(|o| match o {
        Output::SetTimer(at) => Some(*at),
        _ => None,
    })
}

fn logins(out: &[Output]) -> Vec<MachineId> {
    out.iter()
        .filter_map(|o| match o {
            Output::Login(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn pings(out: &[Output]) -> Vec<(u64, MachineId)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Call {
                id,
                to,
                call: PeerCall::Ping(_),
            } => Some((*id, to.clone())),
            _ => None,
        })
        .collect()
}

fn empty_machine() -> LoginOutcome {
    LoginOutcome::Probed(Probe::default())
}

#[test]
fn a_new_peer_deploys_at_once_without_pinging_its_children() {
    let (mut root, out) = Peer::new(Strategy::Informed, 0, NOW);
    assert_eq!(timer(&out), Some(NOW), "the first round starts at once");
    let out = root.handle(NOW, Input::Tick);
    assert_eq!(logins(&out), vec![machine(1)], "{out:?}");
    assert!(pings(&out).is_empty(), "pinged a tree child: {out:?}");
}

#[test]
fn a_deployer_starts_its_next_deployment_before_the_next_round() {
    let (mut root, _) = Peer::new(Strategy::Informed, 0, NOW);
    root.handle(NOW, Input::Tick);
    let out = root.handle(
        NOW + 500,
        Input::LoginDone {
            machine: machine(1),
            outcome: empty_machine(),
        },
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Deploy { machine: m, .. } if *m == machine(1))),
        "{out:?}"
    );
    // The copy ends within the round: the next child's login follows at once, no tick between.
    let done = NOW + 4_000;
    let out = root.handle(
        done,
        Input::DeployDone {
            machine: machine(1),
            ok: true,
        },
    );
    assert_eq!(logins(&out), vec![machine(2)], "{out:?}");
    // A child found already running (deployed by a helper) leads on to the next child too.
    let out = root.handle(
        done + 300,
        Input::LoginDone {
            machine: machine(2),
            outcome: LoginOutcome::Probed(Probe {
                running: true,
                ..Probe::default()
            }),
        },
    );
    assert_eq!(logins(&out), vec![machine(4)], "{out:?}");
}

#[test]
fn a_restarted_peer_keeps_its_phase_and_pings_first() {
    let (mut root, out) = Peer::new(Strategy::Informed, 0, NOW - 10 * INTERVAL);
    let first = timer(&out).expect("a first tick");
    assert!((NOW..NOW + INTERVAL).contains(&first), "{first}");
    let out = root.handle(first, Input::Tick);
    assert_eq!(pings(&out).len(), 1, "{out:?}");
    assert!(logins(&out).is_empty(), "{out:?}");
}

#[test]
fn no_ping_where_the_view_says_no_peer_runs() {
    let (mut root, _) = Peer::new(Strategy::Informed, 0, NOW - 10 * INTERVAL);
    // Somebody tells it that machine 1 (its first child) could not be reached.
    let mut record = MachineRecord::empty(1);
    record.rev = 3;
    record.state = PeerState::Unreachable;
    let ping = Ping {
        from: machine(5),
        version: Version::new(1, 0, 0),
        livetag: root.core.signed_livetag(),
        rekey: Default::default(),
        membership_version: 1,
        gossip: Gossip {
            membership_version: 1,
            membership_digest: membership().digest(),
            records: vec![Arc::new(record)],
            rows: Vec::new(),
            digest: Vec::new(),
        },
    };
    let mut out = Vec::new();
    root.core
        .on_call(NOW, PeerCall::Ping(ping), &mut root.rng, &mut out);
    let out = root.handle(NOW + INTERVAL, Input::Tick);
    assert_eq!(logins(&out), vec![machine(1)], "{out:?}");
    assert!(pings(&out).is_empty(), "{out:?}");
    // The view was wrong (a partition, say): a peer runs there. Talk to it, so that the two
    // exchange what they know, rather than leave the record as it was.
    let out = root.handle(
        NOW + INTERVAL + 500,
        Input::LoginDone {
            machine: machine(1),
            outcome: LoginOutcome::Probed(Probe {
                running: true,
                ..Probe::default()
            }),
        },
    );
    let pinged: Vec<MachineId> = pings(&out).into_iter().map(|(_, to)| to).collect();
    assert_eq!(pinged, vec![machine(1)], "{out:?}");
    assert!(logins(&out).is_empty(), "{out:?}");
}

#[test]
fn going_on_at_once_is_bounded_to_deployments_and_tree_children() {
    // The last rank has no children in a tree of 16: its round's target is a random machine,
    // pinged first; a login that finds a peer running there ends the work until the next round.
    let (mut leaf, _) = Peer::new(Strategy::Informed, N - 1, NOW);
    let out = leaf.handle(NOW, Input::Tick);
    let (id, to) = pings(&out).pop().expect("a ping");
    let out = leaf.handle(
        NOW + 2_000,
        Input::Reply {
            call: id,
            result: Err(CallFailure::Unreachable),
        },
    );
    assert_eq!(logins(&out), vec![to.clone()]);
    let out = leaf.handle(
        NOW + 2_500,
        Input::LoginDone {
            machine: to,
            outcome: LoginOutcome::Probed(Probe {
                running: true,
                ..Probe::default()
            }),
        },
    );
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn the_papers_strategy_pings_first_and_waits_for_its_next_round() {
    let (mut root, out) = Peer::new(Strategy::Smon, 0, NOW);
    let first = timer(&out).expect("a first tick");
    let out = root.handle(first, Input::Tick);
    let (id, to) = pings(&out).pop().expect("the paper pings first");
    assert!(logins(&out).is_empty());
    let out = root.handle(
        first + 2_000,
        Input::Reply {
            call: id,
            result: Err(CallFailure::Unreachable),
        },
    );
    assert_eq!(logins(&out), vec![to.clone()]);
    root.handle(
        first + 2_500,
        Input::LoginDone {
            machine: to.clone(),
            outcome: empty_machine(),
        },
    );
    let out = root.handle(
        first + 4_000,
        Input::DeployDone {
            machine: to,
            ok: true,
        },
    );
    assert!(out.is_empty(), "one attempt per round: {out:?}");
}

/// Issue 15 kind 11: the probe says machine 1 holds another cluster's install.
fn other_cluster(running: bool) -> LoginOutcome {
    LoginOutcome::Probed(Probe {
        installed: Some(Version::new(1, 0, 0)),
        running,
        pid: running.then_some(4242),
        other_cluster: Some(OtherInstall {
            brief: Reason::new("holds another cluster's install"),
            message: "/r holds the smon install of another cluster".into(),
        }),
        ..Probe::default()
    })
}

/// Run `peer` for `rounds` rounds from `NOW`: every ping goes unanswered, every login to
/// machine 1 finds `at_1`, every other login fails, every deployment, restart and kill fails.
/// All its outputs.
fn drive(peer: &mut Peer, rounds: u64, at_1: impl Fn() -> LoginOutcome) -> Vec<Output> {
    let mut all = Vec::new();
    for round in 0..rounds {
        let now = NOW + round * INTERVAL;
        let mut todo = vec![Input::Tick];
        while let Some(input) = todo.pop() {
            let out = peer.handle(now, input);
            for o in &out {
                todo.push(match o.clone() {
                    Output::Call { id, .. } => Input::Reply {
                        call: id,
                        result: Err(CallFailure::Unreachable),
                    },
                    Output::Login(m) if m == machine(1) => Input::LoginDone {
                        machine: m,
                        outcome: at_1(),
                    },
                    Output::Login(m) => Input::LoginDone {
                        machine: m,
                        outcome: LoginOutcome::Failed(Reason::new("no route")),
                    },
                    Output::Deploy { machine, .. } => Input::DeployDone { machine, ok: false },
                    Output::Restart(machine) => Input::RestartDone { machine, ok: false },
                    Output::Kill { machine, .. } => Input::KillDone { machine, ok: false },
                    _ => continue,
                });
            }
            all.extend(out);
        }
    }
    all
}

#[test]
fn another_clusters_install_is_never_restarted_killed_or_deployed_over() {
    for running in [false, true] {
        let cfg = CoreConfig {
            unresponsive_grace_ms: 2 * INTERVAL,
            ..CoreConfig::default()
        };
        let (mut root, _) = Peer::with_config(cfg, 0, NOW);
        let out = drive(&mut root, 40, || other_cluster(running));
        let at_1 = |o: &&Output| match o {
            Output::Restart(m)
            | Output::Deploy { machine: m, .. }
            | Output::Kill { machine: m, .. } => *m == machine(1),
            _ => false,
        };
        assert_eq!(
            out.iter().filter(at_1).count(),
            0,
            "running {running}: {out:?}"
        );
        // Looked at again and again, said once.
        let looked = logins(&out).iter().filter(|m| **m == machine(1)).count();
        assert!(looked >= 3, "running {running}: {looked} logins");
        let said: Vec<_> = out
            .iter()
            .filter(|o| matches!(o, Output::OtherCluster { machine: m, .. } if *m == machine(1)))
            .collect();
        assert_eq!(said.len(), 1, "running {running}: {out:?}");
        // Its row says why.
        let record = root.core.view().get(1).expect("a record of machine 1");
        assert_eq!(record.state, PeerState::Stopped);
        let why = record
            .reason
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default();
        assert!(why.contains("another cluster"), "{why}");
    }
}

#[test]
fn under_take_over_another_clusters_install_is_deployed_over() {
    let cfg = CoreConfig {
        take_over: true,
        ..CoreConfig::default()
    };
    let (mut root, _) = Peer::with_config(cfg, 0, NOW);
    let out = root.handle(NOW, Input::Tick);
    assert_eq!(logins(&out), vec![machine(1)], "{out:?}");
    let out = root.handle(
        NOW + 500,
        Input::LoginDone {
            machine: machine(1),
            outcome: other_cluster(true),
        },
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Deploy { machine: m, over_other_cluster: true, .. } if *m == machine(1))),
        "{out:?}"
    );
}
