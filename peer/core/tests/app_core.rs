//! Property tests of the core's application layer: whatever offers, replies and fetch results
//! arrive in whatever order, an application's version and desired-state revision never go
//! backwards, and a package is only ever fetched when it is newer than the one held.

use std::sync::Arc;

use proptest::prelude::*;
use rand::{SeedableRng, rngs::Xoshiro256PlusPlus};
use smon_core::{Boot, Core, CoreConfig, Input, LocalFacts, Output, PersistentState};
use smon_proto_types::{
    AppDecl, AppOffer, AppReply, DesiredState, MachineId, Membership, PeerCall, PeerReply, Version,
};

fn machine(i: usize) -> MachineId {
    MachineId::local(format!("m{i:02}"))
}

#[derive(Clone, Debug)]
enum Op {
    Offer {
        app: u8,
        version: u32,
        rev: u64,
        desired: u8,
    },
    Fetched {
        app: u8,
        version: u32,
        rev: u64,
        ok: bool,
    },
    Operator {
        app: u8,
        desired: u8,
    },
    Tick,
    AnswerNewer {
        version: u32,
        rev: u64,
    },
}

fn desired(d: u8) -> DesiredState {
    [
        DesiredState::Online,
        DesiredState::Offline,
        DesiredState::Ignore,
    ][d as usize % 3]
}

fn decl(app: u8, version: u32, rev: u64, d: u8) -> AppDecl {
    AppDecl {
        name: format!("app{}", app % 3),
        version: Version::new(version, 0, 0),
        desired: desired(d),
        desired_rev: rev,
        desired_sig: smon_core::FlagSignatures::SIGNED.to_vec(),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<u8>(), 1u32..5, 0u64..6, any::<u8>()).prop_map(|(app, version, rev, desired)| {
            Op::Offer {
                app,
                version,
                rev,
                desired,
            }
        }),
        (any::<u8>(), 1u32..5, 0u64..6, any::<bool>()).prop_map(|(app, version, rev, ok)| {
            Op::Fetched {
                app,
                version,
                rev,
                ok,
            }
        }),
        (any::<u8>(), any::<u8>()).prop_map(|(app, desired)| Op::Operator { app, desired }),
        Just(Op::Tick),
        (1u32..5, 0u64..6).prop_map(|(version, rev)| Op::AnswerNewer { version, rev }),
    ]
}

proptest! {
    #[test]
    fn app_versions_and_revisions_never_go_backwards(ops in proptest::collection::vec(op(), 1..80), seed in any::<u64>()) {
        let membership = Arc::new(Membership::new(1, (0..6).map(machine).collect()));
        let boot = Boot {
            me: machine(0),
            state: PersistentState::new(Version::new(1, 0, 0)),
            membership,
            facts: LocalFacts::default(),
            hint: None,
            signatures: std::sync::Arc::new(smon_core::FlagSignatures),
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut core = Core::new(CoreConfig { interval_ms: 1_000, ..CoreConfig::default() }, boot, 0);
        let mut out = Vec::new();
        core.start(0, &mut rng, &mut out);
        let mut now = 0;
        let mut offers_out = Vec::new();
        for op in ops {
            let before: Vec<AppDecl> = core.apps().to_vec();
            out.clear();
            now += 100;
            match op {
                Op::Offer { app, version, rev, desired } => {
                    let offer = AppOffer { from: machine(1), app: decl(app, version, rev, desired) };
                    let reply = core.on_call(now, PeerCall::ExchangeApp(offer.clone()), &mut rng, &mut out);
                    let mine = core.apps().iter().find(|a| a.name == offer.app.name).cloned();
                    match reply {
                        PeerReply::App(AppReply::Newer(d)) => {
                            prop_assert!(offer.app.is_superseded_by(&d) || d.desired_rev > offer.app.desired_rev);
                        }
                        PeerReply::App(AppReply::Want) => {
                            prop_assert!(mine.is_none_or(|m| m.version < offer.app.version));
                        }
                        _ => {}
                    }
                }
                Op::Fetched { app, version, rev, ok } => {
                    core.handle(now, Input::AppFetched { app: decl(app, version, rev, 0), ok }, &mut rng, &mut out);
                }
                Op::Operator { app, desired: d } => {
                    // As the console does: a revision above the peer's, signed.
                    let name = format!("app{}", app % 3);
                    if let Some(mine) = core.apps().iter().find(|a| a.name == name) {
                        let set = AppDecl { desired: desired(d), desired_rev: (mine.desired_rev + 1).max(now), desired_sig: smon_core::FlagSignatures::SIGNED.to_vec(), ..mine.clone() };
                        core.handle(now, Input::SetAppDesired(set), &mut rng, &mut out);
                    }
                }
                Op::Tick => core.handle(now + 1_000, Input::Tick, &mut rng, &mut out),
                Op::AnswerNewer { version, rev } => {
                    if let Some(id) = offers_out.pop() {
                        let reply = PeerReply::App(AppReply::Newer(decl(0, version, rev, 1)));
                        core.handle(now, Input::Reply { call: id, result: Ok(reply) }, &mut rng, &mut out);
                    }
                }
            }
            for o in &out {
                match o {
                    Output::FetchApp { app, .. } => {
                        let held = before.iter().chain(core.apps()).filter(|a| a.name == app.name).map(|a| a.version).min();
                        prop_assert!(held.is_none_or(|v| v < app.version), "fetching {app:?} while holding {held:?}");
                    }
                    Output::Call { id, call: PeerCall::ExchangeApp(_), .. } => offers_out.push(*id),
                    _ => {}
                }
            }
            for old in &before {
                let new = core.apps().iter().find(|a| a.name == old.name);
                prop_assert!(new.is_some(), "{} forgotten", old.name);
                let new = new.unwrap();
                prop_assert!(new.version >= old.version, "{old:?} -> {new:?}");
                prop_assert!(new.desired_rev >= old.desired_rev, "{old:?} -> {new:?}");
            }
        }
    }
}
