//! A pong says who answers. A ping of one machine answered by another machine's peer (two
//! entries at one address and port: found on a host with four SSH accounts, where one peer
//! answered for all four and the other three were never deployed) is a conflict: reported,
//! recorded, never taken as "deployed", and what the pong offers is asked of the peer that
//! answered.

use std::sync::Arc;

use rand::{SeedableRng, rngs::Xoshiro256PlusPlus};
use smon_core::{Boot, Core, CoreConfig, Input, LocalFacts, Output, PersistentState};
use smon_proto_types::{
    Gossip, MachineId, Membership, PeerCall, PeerReply, PeerState, Pong, Version,
};

fn machine(name: &str) -> MachineId {
    format!("{name}@198.18.0.2").parse().unwrap()
}

/// A core on `a` with a membership of a, b, c (three accounts of one host), its first ping
/// sent: the core, the rng, and the call (its id and target).
fn pinging() -> (Core, Xoshiro256PlusPlus, u64, MachineId) {
    let membership = Membership::new(1, ["a", "b", "c"].map(machine).to_vec());
    let boot = Boot {
        me: machine("a"),
        state: PersistentState::new(Version::new(1, 0, 0)),
        membership: Arc::new(membership),
        facts: LocalFacts::default(),
        hint: None,
        signatures: std::sync::Arc::new(smon_core::FlagSignatures),
    };
    let cfg = CoreConfig {
        interval_ms: 1_000,
        ..CoreConfig::default()
    };
    let mut core = Core::new(cfg, boot, 0);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    let mut out = Vec::new();
    core.start(0, &mut rng, &mut out);
    for now in (0..20_000).step_by(250) {
        core.handle(now, Input::Tick, &mut rng, &mut out);
        if let Some((id, to)) = out.iter().find_map(|o| match o {
            Output::Call {
                id,
                to,
                call: PeerCall::Ping(_),
            } => Some((*id, to.clone())),
            _ => None,
        }) {
            return (core, rng, id, to);
        }
        out.clear();
    }
    panic!("no ping in 20 s");
}

fn pong(from: MachineId, version: Version) -> PeerReply {
    PeerReply::Pong(Pong {
        from,
        version,
        state: PeerState::Running,
        livetag: Default::default(),
        rekey: Default::default(),
        membership_version: 1,
        gossip: Gossip::default(),
    })
}

fn state_of(core: &Core, machine: &MachineId) -> Option<PeerState> {
    core.cluster_view(0)
        .records
        .into_iter()
        .find(|(m, _)| m == machine)
        .map(|(_, r)| r.state)
}

#[test]
fn a_pong_from_another_machine_is_a_conflict_not_a_deployment() {
    let (mut core, mut rng, id, asked) = pinging();
    let other = if asked == machine("b") {
        machine("c")
    } else {
        machine("b")
    };
    let mut out = Vec::new();
    let result = Ok(pong(other.clone(), Version::new(1, 1, 0)));
    core.handle(1_000, Input::Reply { call: id, result }, &mut rng, &mut out);
    assert!(
        out.iter().any(
            |o| matches!(o, Output::Conflict { asked: a, answered_by: b }
            if *a == asked && *b == other)
        ),
        "{out:?}"
    );
    assert_eq!(state_of(&core, &asked), Some(PeerState::Conflict));
    // Not logged into, not deployed to: the answer was a peer, just not the asked one's.
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Login(_) | Output::Deploy { .. })),
        "{out:?}"
    );
    // The newer version it offered is fetched from the peer that answered.
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::FetchRelease { from, .. } if *from == other)),
        "{out:?}"
    );
}

#[test]
fn a_pong_from_the_asked_machine_is_no_conflict() {
    let (mut core, mut rng, id, asked) = pinging();
    let mut out = Vec::new();
    let result = Ok(pong(asked.clone(), Version::new(1, 0, 0)));
    core.handle(1_000, Input::Reply { call: id, result }, &mut rng, &mut out);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Conflict { .. })),
        "{out:?}"
    );
    assert_ne!(state_of(&core, &asked), Some(PeerState::Conflict));
}

#[test]
fn a_pong_that_crosses_a_membership_change_is_checked_against_the_machine_asked() {
    // The ping went out by index; a machine added meanwhile sorts before the one asked and
    // shifts every index after it. The answer still comes from the machine asked: no conflict
    // (comparing with whatever the old index names now made one, seen in the simulator).
    let (mut core, mut rng, id, asked) = pinging();
    let mut out = Vec::new();
    let mut grown = Membership::new(2, ["a", "a0", "b", "b0", "c"].map(machine).to_vec());
    grown.set_signature(smon_core::FlagSignatures::SIGNED.to_vec());
    core.handle(
        500,
        Input::SetMembership(Arc::new(grown)),
        &mut rng,
        &mut out,
    );
    assert_eq!(core.membership().version, 2, "{out:?}");
    out.clear();
    let result = Ok(pong(asked.clone(), Version::new(1, 0, 0)));
    core.handle(1_000, Input::Reply { call: id, result }, &mut rng, &mut out);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Conflict { .. })),
        "{out:?}"
    );
    for m in ["a0", "b", "b0", "c"].map(machine) {
        assert_ne!(state_of(&core, &m), Some(PeerState::Conflict), "{m}");
    }
}
