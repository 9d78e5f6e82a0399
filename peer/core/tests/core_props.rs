//! Property tests of the sans-IO core: whatever the network says to a peer, in any order,
//! its versions never go backwards and it never deploys outside its membership.

use std::sync::Arc;

use proptest::prelude::*;
use rand::{SeedableRng, rngs::Xoshiro256PlusPlus};
use smon_core::{
    Boot, CallFailure, Core, CoreConfig, FlagSignatures, Input, LocalFacts, LoginOutcome, Output,
    PersistentState, Probe, Strategy as TargetStrategy,
};
use smon_proto_types::{
    AppReply, Gossip, LiveTag, MachineId, MachineRecord, MemberReply, Membership, PeerCall,
    PeerReply, PeerState, Ping, Pong, SignedLiveTag, Version,
};

const MACHINES: usize = 12;

fn machine(i: usize) -> MachineId {
    MachineId::local(format!("m{i:02}"))
}

fn membership(version: u64, mask: u16) -> Membership {
    // Machine 0 is the peer under test; `mask` keeps or drops each of the others.
    let machines = (0..MACHINES)
        .filter(|&i| i == 0 || mask & (1 << i) != 0)
        .map(machine)
        .collect();
    let mut list = Membership::new(version, machines);
    list.set_signature(FlagSignatures::SIGNED.to_vec());
    list
}

/// `tag` as the operator signed it (the simulator's signatures are a flag).
fn signed(tag: LiveTag) -> SignedLiveTag {
    SignedLiveTag {
        tag,
        signature: FlagSignatures::SIGNED.to_vec(),
    }
}

#[derive(Clone, Debug)]
enum Op {
    Tick(u64),
    IncomingPing {
        from: usize,
        version: u32,
        tag: (bool, u64),
        members: u64,
    },
    IncomingLivetag(bool, u64),
    /// Answer the oldest outstanding call.
    Answer {
        ok: bool,
        version: u32,
        tag: (bool, u64),
        members: u64,
        mask: u16,
    },
    /// Finish the outstanding login with this probe.
    Login {
        reachable: bool,
        installed: bool,
        running: bool,
        locked: bool,
    },
    Deployed,
    Fetched {
        version: u32,
        ok: bool,
    },
    Operator {
        enabled: bool,
    },
    NewMembership {
        version: u64,
        remove_me: bool,
        mask: u16,
    },
    Gossip {
        about: usize,
        rev: u64,
    },
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    let tag = (any::<bool>(), 0u64..6);
    prop_oneof![
        (1u64..8_000).prop_map(Op::Tick),
        (1..MACHINES, 1u32..5, tag.clone(), 1u64..5).prop_map(|(from, version, tag, members)| {
            Op::IncomingPing {
                from,
                version,
                tag,
                members,
            }
        }),
        (any::<bool>(), 0u64..6).prop_map(|(e, v)| Op::IncomingLivetag(e, v)),
        (any::<bool>(), 1u32..5, tag, 1u64..5, any::<u16>()).prop_map(
            |(ok, version, tag, members, mask)| Op::Answer {
                ok,
                version,
                tag,
                members,
                mask
            }
        ),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(reachable, installed, running, locked)| Op::Login {
                reachable,
                installed,
                running,
                locked
            }
        ),
        Just(Op::Deployed),
        (1u32..5, any::<bool>()).prop_map(|(version, ok)| Op::Fetched { version, ok }),
        any::<bool>().prop_map(|enabled| Op::Operator { enabled }),
        (1u64..6, any::<bool>(), any::<u16>()).prop_map(|(version, remove_me, mask)| {
            Op::NewMembership {
                version,
                remove_me,
                mask,
            }
        }),
        (0..MACHINES, 0u64..10).prop_map(|(about, rev)| Op::Gossip { about, rev }),
    ]
}

struct Harness {
    core: Core,
    rng: Xoshiro256PlusPlus,
    now: u64,
    calls: Vec<(u64, MachineId, PeerCall)>,
    logins: Vec<MachineId>,
    deploying: Vec<MachineId>,
    fetching: Vec<Version>,
}

impl Harness {
    fn new(strategy: TargetStrategy, seed: u64) -> Self {
        let cfg = CoreConfig {
            interval_ms: 1_000,
            strategy,
            ..CoreConfig::default()
        };
        let boot = Boot {
            me: machine(0),
            state: PersistentState::new(Version::new(2, 0, 0)),
            membership: Arc::new(membership(1, u16::MAX)),
            facts: LocalFacts::default(),
            hint: None,
            signatures: std::sync::Arc::new(smon_core::FlagSignatures),
        };
        let mut h = Self {
            core: Core::new(cfg, boot, 0),
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            now: 0,
            calls: Vec::new(),
            logins: Vec::new(),
            deploying: Vec::new(),
            fetching: Vec::new(),
        };
        let mut out = Vec::new();
        h.core.start(0, &mut h.rng, &mut out);
        h.check(out);
        h
    }

    /// Check every output against the invariants, and remember what awaits an answer.
    fn check(&mut self, out: Vec<Output>) {
        for output in out {
            let members = self.core.membership().clone();
            match output {
                Output::Call { id, to, call } => {
                    assert!(
                        members.index_of(&to).is_some()
                            || matches!(call, PeerCall::ExchangeMember(_)),
                        "called {to}, not a member"
                    );
                    if self.core.is_removed() {
                        assert!(
                            !matches!(call, PeerCall::Ping(_)),
                            "a removed peer pinged {to}"
                        );
                    }
                    self.calls.push((id, to.clone(), call));
                }
                Output::Login(m) => {
                    assert!(
                        members.index_of(&m).is_some(),
                        "logged in to {m}, not a member"
                    );
                    assert!(!self.core.is_removed(), "a removed peer logged in to {m}");
                    assert!(
                        self.core.livetag().enabled,
                        "a disabled peer logged in to {m}"
                    );
                    self.logins.push(m);
                }
                Output::Deploy { machine, .. } | Output::Restart(machine) => {
                    assert!(
                        members.index_of(&machine).is_some(),
                        "deployed {machine}, not a member"
                    );
                    assert!(!self.core.is_removed(), "a removed peer deployed {machine}");
                    assert_ne!(machine, *self.core.me(), "deployed to itself");
                    self.deploying.push(machine);
                }
                Output::Upgrade(v) => assert!(v > self.core.version(), "downgrade to {v}"),
                Output::FetchRelease { version, .. } => {
                    assert!(version > self.core.version(), "fetching older {version}");
                    self.fetching.push(version);
                }
                _ => {}
            }
        }
    }

    fn apply(&mut self, op: Op) {
        let before_tag = self.core.livetag();
        let before_members = self.core.membership().version;
        let before_version = self.core.version();
        let mut out = Vec::new();
        let tag = |(enabled, version): (bool, u64)| LiveTag { enabled, version };
        match op {
            Op::Tick(dt) => {
                self.now += dt;
                self.core
                    .handle(self.now, Input::Tick, &mut self.rng, &mut out);
            }
            Op::IncomingPing {
                from,
                version,
                tag: t,
                members,
            } => {
                let ping = Ping {
                    from: machine(from),
                    version: Version::new(version, 0, 0),
                    livetag: signed(tag(t)),
                    rekey: Default::default(),
                    membership_version: members,
                    gossip: Gossip::default(),
                };
                let reply =
                    self.core
                        .on_call(self.now, PeerCall::Ping(ping), &mut self.rng, &mut out);
                assert!(matches!(reply, PeerReply::Pong(_)));
            }
            Op::IncomingLivetag(e, v) => {
                let reply = self.core.on_call(
                    self.now,
                    PeerCall::ExchangeLivetag(signed(tag((e, v)))),
                    &mut self.rng,
                    &mut out,
                );
                assert_eq!(reply, PeerReply::Livetag(self.core.signed_livetag()));
            }
            Op::Answer {
                ok,
                version,
                tag: t,
                members,
                mask,
            } => {
                if self.calls.is_empty() {
                    return;
                }
                let (id, to, call) = self.calls.remove(0);
                let result = if !ok {
                    Err(CallFailure::Unreachable)
                } else {
                    Ok(match call {
                        PeerCall::Ping(_) => PeerReply::Pong(Pong {
                            from: to,
                            version: Version::new(version, 0, 0),
                            state: PeerState::Running,
                            livetag: signed(tag(t)),
                            rekey: Default::default(),
                            membership_version: members,
                            gossip: Gossip::default(),
                        }),
                        PeerCall::ExchangeLivetag(_) => PeerReply::Livetag(signed(tag(t))),
                        PeerCall::ExchangeMember(_) => PeerReply::Member(MemberReply {
                            version: members,
                            blob: Some(membership(members, mask).encode()),
                        }),
                        PeerCall::ExchangeApp(_) => PeerReply::App(AppReply::Have),
                        PeerCall::RetrievePeer(_) => return,
                    })
                };
                self.core.handle(
                    self.now,
                    Input::Reply { call: id, result },
                    &mut self.rng,
                    &mut out,
                );
            }
            Op::Login {
                reachable,
                installed,
                running,
                locked,
            } => {
                let Some(m) = self.logins.pop() else { return };
                let outcome = if reachable {
                    LoginOutcome::Probed(Probe {
                        installed: installed.then_some(Version::new(1, 0, 0)),
                        running,
                        pid: running.then_some(7),
                        install_in_progress: locked,
                        other_cluster: None,
                        key_epoch: None,
                    })
                } else {
                    LoginOutcome::Failed(smon_proto_types::Reason::new("refused"))
                };
                self.core.handle(
                    self.now,
                    Input::LoginDone {
                        machine: m,
                        outcome,
                    },
                    &mut self.rng,
                    &mut out,
                );
            }
            Op::Deployed => {
                let Some(m) = self.deploying.pop() else {
                    return;
                };
                self.core.handle(
                    self.now,
                    Input::DeployDone {
                        machine: m,
                        ok: true,
                    },
                    &mut self.rng,
                    &mut out,
                );
            }
            Op::Fetched { version, ok } => {
                let version = self.fetching.pop().unwrap_or(Version::new(version, 0, 0));
                self.core.handle(
                    self.now,
                    Input::FetchDone { version, ok },
                    &mut self.rng,
                    &mut out,
                );
            }
            Op::Operator { enabled } => {
                // As the console does: one version above the newest this peer has heard of.
                let heard = self.core.view().newest_livetag().map_or(0, |t| t.version);
                let version = self.core.livetag().version.max(heard) + 1;
                self.core.handle(
                    self.now,
                    Input::SetLiveTag(signed(LiveTag { enabled, version })),
                    &mut self.rng,
                    &mut out,
                );
                assert_eq!(self.core.livetag().enabled, enabled);
            }
            Op::NewMembership {
                version,
                remove_me,
                mask,
            } => {
                let mut list = membership(version, mask);
                if remove_me {
                    let rest = list
                        .machines()
                        .iter()
                        .filter(|m| **m != machine(0))
                        .cloned()
                        .collect();
                    list = Membership::new(version, rest);
                    list.set_signature(FlagSignatures::SIGNED.to_vec());
                }
                self.core.handle(
                    self.now,
                    Input::SetMembership(Arc::new(list)),
                    &mut self.rng,
                    &mut out,
                );
            }
            Op::Gossip { about, rev } => {
                let mut record = MachineRecord::empty(about as u32);
                record.rev = rev;
                record.news_rev = rev;
                record.state = PeerState::Unreachable;
                let ping = Ping {
                    from: machine(1),
                    version: self.core.version(),
                    livetag: self.core.signed_livetag(),
                    rekey: Default::default(),
                    membership_version: self.core.membership().version,
                    gossip: Gossip {
                        membership_version: self.core.membership().version,
                        membership_digest: self.core.membership().digest(),
                        records: vec![Arc::new(record)],
                        rows: Vec::new(),
                        digest: Vec::new(),
                    },
                };
                self.core
                    .on_call(self.now, PeerCall::Ping(ping), &mut self.rng, &mut out);
            }
        }
        self.check(out);
        let after = self.core.livetag();
        assert!(
            after.version >= before_tag.version,
            "livetag went back: {before_tag:?} → {after:?}"
        );
        assert!(
            self.core.membership().version >= before_members,
            "membership went back"
        );
        assert!(self.core.version() >= before_version, "version went back");
        // The peer's own record always says the truth about itself.
        if let Some(me) = self.core.membership().index_of(self.core.me()) {
            let own = self.core.view().get(me).expect("own record");
            assert!(own.state.is_up(), "own record says {:?}", own.state);
            assert_eq!(own.livetag, self.core.livetag());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn versions_never_go_backwards_and_deployments_stay_in_the_membership(
        seed in any::<u64>(),
        informed in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let strategy = if informed { TargetStrategy::Informed } else { TargetStrategy::Smon };
        let mut h = Harness::new(strategy, seed);
        for op in ops {
            h.apply(op);
        }
    }
}

#[test]
fn a_removed_peer_only_answers_and_exits_after_the_silence() {
    let mut h = Harness::new(TargetStrategy::Informed, 7);
    h.apply(Op::NewMembership {
        version: 2,
        remove_me: true,
        mask: u16::MAX,
    });
    assert!(h.core.is_removed());
    let mut out = Vec::new();
    let mut now = h.now;
    let limit = CoreConfig::default().removed_exit_after_ms;
    while now <= h.now + limit + 2_000 {
        now += 1_000;
        h.core.handle(now, Input::Tick, &mut h.rng, &mut out);
        assert!(
            out.iter()
                .all(|o| matches!(o, Output::SetTimer(_) | Output::Exit(_))),
            "{out:?}"
        );
        if out.iter().any(|o| matches!(o, Output::Exit(_))) {
            assert!(now - h.now >= limit);
            return;
        }
        out.clear();
    }
    panic!("a removed peer did not exit after {limit} ms of silence");
}

#[test]
fn a_disabled_peer_stops_pinging_but_answers_and_spreads_the_flag() {
    let mut h = Harness::new(TargetStrategy::Informed, 3);
    // The paper's switch-off: with an exit-after-silence, a disabled peer sends no pings.
    let mut cfg = CoreConfig {
        interval_ms: 1_000,
        disabled_exit_after_ms: Some(3_600_000),
        ..CoreConfig::default()
    };
    cfg.strategy = TargetStrategy::Informed;
    h.core = Core::new(
        cfg,
        Boot {
            me: machine(0),
            state: PersistentState::new(Version::new(2, 0, 0)),
            membership: Arc::new(membership(1, u16::MAX)),
            facts: LocalFacts::default(),
            hint: None,
            signatures: std::sync::Arc::new(smon_core::FlagSignatures),
        },
        0,
    );
    let mut start = Vec::new();
    h.core.start(0, &mut h.rng, &mut start);
    h.apply(Op::Operator { enabled: false });
    let mut out = Vec::new();
    let mut pushes = 0;
    for round in 1..=20u64 {
        h.core
            .handle(round * 1_000, Input::Tick, &mut h.rng, &mut out);
        for o in out.drain(..) {
            match o {
                Output::Call {
                    call: PeerCall::ExchangeLivetag(tag),
                    ..
                } => {
                    assert!(!tag.tag.enabled);
                    pushes += 1;
                }
                Output::Call { call, .. } => panic!("a disabled peer called {call:?}"),
                Output::Login(_) | Output::Deploy { .. } | Output::Restart(_) => panic!("{o:?}"),
                _ => {}
            }
        }
    }
    assert!(
        pushes > 0 && pushes < 40,
        "{pushes} pushes: the rumor spreads, then stops"
    );
    let reply = h.core.on_call(
        30_000,
        PeerCall::ExchangeLivetag(SignedLiveTag::default()),
        &mut h.rng,
        &mut out,
    );
    assert!(matches!(
        reply,
        PeerReply::Livetag(SignedLiveTag {
            tag: LiveTag { enabled: false, .. },
            ..
        })
    ));
}

#[test]
fn a_disabled_peer_keeps_the_view_current_but_never_deploys() {
    let mut h = Harness::new(TargetStrategy::Informed, 5);
    h.apply(Op::Operator { enabled: false });
    let mut out = Vec::new();
    let mut pings = 0;
    for round in 1..=20u64 {
        h.core
            .handle(round * 1_000, Input::Tick, &mut h.rng, &mut out);
        for o in out.drain(..) {
            match o {
                Output::Call {
                    id,
                    call: PeerCall::Ping(_),
                    ..
                } => {
                    pings += 1;
                    // Nobody answers: still no login.
                    let mut more = Vec::new();
                    let failed = Input::Reply {
                        call: id,
                        result: Err(CallFailure::Unreachable),
                    };
                    h.core
                        .handle(round * 1_000 + 500, failed, &mut h.rng, &mut more);
                    assert!(
                        more.iter().all(|o| !matches!(
                            o,
                            Output::Login(_) | Output::Deploy { .. } | Output::Restart(_)
                        )),
                        "{more:?}"
                    );
                }
                Output::Login(_) | Output::Deploy { .. } | Output::Restart(_) => panic!("{o:?}"),
                _ => {}
            }
        }
    }
    assert!(pings >= 15, "only {pings} gossip pings in 20 rounds");
}

#[test]
fn the_serving_peer_caps_concurrent_fetches() {
    let mut h = Harness::new(TargetStrategy::Informed, 1);
    let mut out = Vec::new();
    let version = h.core.version();
    let cap = CoreConfig::default().fetch_cap;
    let ask = |h: &mut Harness, session: u64, out: &mut Vec<Output>| {
        let req = smon_proto_types::ChunkRequest {
            session,
            version,
            offset: 0,
            max_len: 1024,
        };
        match h
            .core
            .on_call(h.now, PeerCall::RetrievePeer(req), &mut h.rng, out)
        {
            PeerReply::Chunk(r) => r.is_ok(),
            other => panic!("{other:?}"),
        }
    };
    for session in 0..cap as u64 {
        assert!(ask(&mut h, session, &mut out));
    }
    assert!(!ask(&mut h, 99, &mut out), "over the cap");
    assert!(ask(&mut h, 0, &mut out), "a running fetch continues");
    h.core.release_fetch(0);
    assert!(ask(&mut h, 99, &mut out), "a freed slot is reused");
    let older = smon_proto_types::ChunkRequest {
        session: 5,
        version: Version::new(1, 0, 0),
        offset: 0,
        max_len: 1,
    };
    assert!(matches!(
        h.core
            .on_call(h.now, PeerCall::RetrievePeer(older), &mut h.rng, &mut out),
        PeerReply::Chunk(Err(smon_proto_types::Refusal::NotFound(_)))
    ));
}
