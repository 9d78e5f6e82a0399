//! Signed control state (issue 14, item 1): a core adopts a newer livetag, membership list or
//! application desired state only under the release key's signature, whoever sends it (a
//! ping, a pong, a push, an offer, the operator's control call). A refused one is reported
//! once, naming its sender, and is neither adopted nor spread: what the peer sends on stays
//! what it had. The newest *signed* version wins. The signatures here are the simulator's
//! flag ([`FlagSignatures`]); the daemon's ed25519 check is the same trait.

use std::sync::Arc;

use rand::{SeedableRng, rngs::Xoshiro256PlusPlus};
use smon_core::{
    Boot, Core, CoreConfig, FlagSignatures, Input, LocalFacts, Output, PersistentState, Refused,
    RefusedKind, Sender,
};
use smon_proto_types::{
    AppDecl, AppOffer, DesiredState, Gossip, LiveTag, MachineId, MemberReply, Membership, PeerCall,
    PeerReply, PeerState, Ping, Pong, SignedLiveTag, Version,
};

const FORGED: &[u8] = b"forged";

fn machine(name: &str) -> MachineId {
    MachineId::local(name)
}

fn list(version: u64, names: &[&str], signature: &[u8]) -> Membership {
    let mut list = Membership::new(version, names.iter().map(|n| machine(n)).collect());
    list.set_signature(signature.to_vec());
    list
}

fn tag(enabled: bool, version: u64, signature: &[u8]) -> SignedLiveTag {
    SignedLiveTag {
        tag: LiveTag { enabled, version },
        signature: signature.to_vec(),
    }
}

fn app(desired: DesiredState, rev: u64, signature: &[u8]) -> AppDecl {
    AppDecl {
        name: "web".into(),
        version: Version::new(1, 0, 0),
        desired,
        desired_rev: rev,
        desired_sig: signature.to_vec(),
    }
}

/// A started core on `a` of a, b, c, running application `web` (online, revision 5).
fn core() -> (Core, Xoshiro256PlusPlus) {
    let boot = Boot {
        me: machine("a"),
        state: PersistentState::new(Version::new(1, 0, 0)),
        membership: Arc::new(list(1, &["a", "b", "c"], FlagSignatures::SIGNED)),
        facts: LocalFacts::default(),
        hint: None,
        signatures: Arc::new(FlagSignatures),
    };
    let cfg = CoreConfig {
        interval_ms: 1_000,
        ..CoreConfig::default()
    };
    let mut core = Core::new(cfg, boot, 0);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let mut out = Vec::new();
    core.start(0, &mut rng, &mut out);
    let web = app(DesiredState::Online, 5, FlagSignatures::SIGNED);
    core.handle(0, Input::AppInstalledLocally(web), &mut rng, &mut out);
    (core, rng)
}

fn refusals(out: &[Output]) -> Vec<&Refused> {
    out.iter()
        .filter_map(|o| match o {
            Output::Refused(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn ping(from: &str, livetag: SignedLiveTag, membership_version: u64) -> PeerCall {
    PeerCall::Ping(Ping {
        from: machine(from),
        version: Version::new(1, 0, 0),
        livetag,
        rekey: Default::default(),
        membership_version,
        gossip: Gossip::default(),
    })
}

/// What the core holds and sends on: its livetag (as its pongs carry it), its list, `web`.
fn held(core: &mut Core, rng: &mut Xoshiro256PlusPlus) -> (SignedLiveTag, u64, DesiredState) {
    let mut out = Vec::new();
    let PeerReply::Pong(pong) = core.on_call(9_000, ping("b", tag(true, 0, &[]), 1), rng, &mut out)
    else {
        panic!("no pong");
    };
    let web = core
        .apps()
        .iter()
        .find(|a| a.name == "web")
        .unwrap()
        .desired;
    (pong.livetag, core.membership().version, web)
}

#[test]
fn forged_state_from_a_ping_a_push_or_an_offer_is_refused_and_not_spread() {
    let (mut core, mut rng) = core();
    let before = held(&mut core, &mut rng);
    for signature in [&b""[..], FORGED] {
        let mut out = Vec::new();
        let disable = tag(false, 1_000, signature);
        core.on_call(1_000, ping("b", disable.clone(), 1), &mut rng, &mut out);
        core.on_call(
            1_000,
            PeerCall::ExchangeLivetag(disable),
            &mut rng,
            &mut out,
        );
        let offer = AppOffer {
            from: machine("c"),
            app: app(DesiredState::Offline, 1_000, signature),
        };
        let reply = core.on_call(1_000, PeerCall::ExchangeApp(offer), &mut rng, &mut out);
        // Its desired state is ours again once the forged one is set aside: nothing to take.
        assert_eq!(reply, PeerReply::App(smon_proto_types::AppReply::Have));
        let got = refusals(&out);
        assert_eq!(got.len(), 3, "{out:?}");
        assert_eq!(
            (got[0].kind, &got[0].from),
            (RefusedKind::Livetag, &Sender::Peer(machine("b")))
        );
        assert_eq!(
            (got[1].kind, &got[1].from),
            (RefusedKind::Livetag, &Sender::Unnamed)
        );
        assert_eq!(
            (got[2].kind, &got[2].from),
            (RefusedKind::AppDesired, &Sender::Peer(machine("c")))
        );
        assert!(
            got[0]
                .to_string()
                .contains("refused livetag version 1000 from local:b")
        );
        assert!(
            !out.iter().any(|o| matches!(o, Output::AppDesired(_))),
            "{out:?}"
        );
        assert_eq!(held(&mut core, &mut rng), before, "{signature:?}");
    }
}

#[test]
fn a_forged_membership_pulled_from_a_pong_is_refused() {
    let (mut core, mut rng) = core();
    let forged = list(7, &["b"], FORGED);
    // A pong announces the newer list; the core pulls it from the peer that answered.
    let mut out = Vec::new();
    for now in (0..20_000).step_by(250) {
        core.handle(now, Input::Tick, &mut rng, &mut out);
        if out.iter().any(|o| {
            matches!(
                o,
                Output::Call {
                    call: PeerCall::Ping(_),
                    ..
                }
            )
        }) {
            break;
        }
        out.clear();
    }
    let (id, to) = out
        .iter()
        .find_map(|o| match o {
            Output::Call {
                id,
                to,
                call: PeerCall::Ping(_),
            } => Some((*id, to.clone())),
            _ => None,
        })
        .expect("a ping");
    out.clear();
    let pong = PeerReply::Pong(Pong {
        from: to.clone(),
        version: Version::new(1, 0, 0),
        state: PeerState::Running,
        livetag: SignedLiveTag::default(),
        rekey: Default::default(),
        membership_version: 7,
        gossip: Gossip {
            membership_version: 7,
            membership_digest: forged.digest(),
            ..Gossip::default()
        },
    });
    core.handle(
        20_000,
        Input::Reply {
            call: id,
            result: Ok(pong),
        },
        &mut rng,
        &mut out,
    );
    let pull = out
        .iter()
        .find_map(|o| match o {
            Output::Call {
                id,
                call: PeerCall::ExchangeMember(_),
                ..
            } => Some(*id),
            _ => None,
        })
        .expect("the newer list is asked for");
    out.clear();
    let reply = PeerReply::Member(MemberReply {
        version: 7,
        blob: Some(forged.encode()),
    });
    core.handle(
        20_001,
        Input::Reply {
            call: pull,
            result: Ok(reply),
        },
        &mut rng,
        &mut out,
    );
    assert_eq!(core.membership().version, 1, "{out:?}");
    assert!(!core.is_removed());
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::MembershipChanged(_)))
    );
    let got = refusals(&out);
    assert_eq!(got.len(), 1, "{out:?}");
    assert_eq!(
        (got[0].kind, &got[0].from),
        (RefusedKind::Membership, &Sender::Peer(to))
    );
}

#[test]
fn the_operator_is_told_of_a_refusal_and_nothing_changes() {
    let (mut core, mut rng) = core();
    let before = held(&mut core, &mut rng);
    let mut out = Vec::new();
    let inputs = [
        Input::SetLiveTag(tag(false, 2, FORGED)),
        Input::SetMembership(Arc::new(list(2, &["b"], FORGED))),
        Input::SetMembership(Arc::new(list(2, &["b"], &[]))),
        Input::SetAppDesired(app(DesiredState::Offline, 9, FORGED)),
        // Revision 0 is the package's own and never an operator's setting.
        Input::SetAppDesired(app(DesiredState::Offline, 0, &[])),
    ];
    for input in inputs {
        let refused = core
            .handle_operator(1_000, input, &mut rng, &mut out)
            .expect_err("refused");
        assert_eq!(refused.from, Sender::Operator);
    }
    assert_eq!(held(&mut core, &mut rng), before);
    // Signed, but not newer than what the peer holds: refused too, and said so.
    let stale = core
        .handle_operator(
            1_000,
            Input::SetLiveTag(tag(true, 0, FlagSignatures::SIGNED)),
            &mut rng,
            &mut out,
        )
        .expect_err("stale");
    assert!(stale.why.contains("not newer"), "{stale}");
}

#[test]
fn the_newest_signed_version_wins_whatever_forgeries_claim() {
    let (mut core, mut rng) = core();
    let mut out = Vec::new();
    let signed = FlagSignatures::SIGNED;
    core.handle_operator(
        1_000,
        Input::SetLiveTag(tag(false, 3, signed)),
        &mut rng,
        &mut out,
    )
    .unwrap();
    // A forgery far above: ignored; an older signed tag: ignored; a newer signed one: taken.
    core.on_call(
        1_000,
        PeerCall::ExchangeLivetag(tag(true, 99, FORGED)),
        &mut rng,
        &mut out,
    );
    core.on_call(
        1_000,
        PeerCall::ExchangeLivetag(tag(true, 2, signed)),
        &mut rng,
        &mut out,
    );
    assert_eq!(
        core.livetag(),
        LiveTag {
            enabled: false,
            version: 3
        }
    );
    core.on_call(
        1_000,
        PeerCall::ExchangeLivetag(tag(true, 4, signed)),
        &mut rng,
        &mut out,
    );
    assert_eq!(core.signed_livetag(), tag(true, 4, signed));
    // The signature is kept with the tag, for a restarted peer to serve.
    assert_eq!(core.persistent().livetag_signature, signed);
    core.handle_operator(
        1_000,
        Input::SetMembership(Arc::new(list(2, &["a", "b"], signed))),
        &mut rng,
        &mut out,
    )
    .unwrap();
    assert_eq!(core.membership().len(), 2);
    core.handle_operator(
        1_000,
        Input::SetAppDesired(app(DesiredState::Offline, 9, signed)),
        &mut rng,
        &mut out,
    )
    .unwrap();
    assert_eq!(core.apps()[0].desired, DesiredState::Offline);
    assert_eq!(core.apps()[0].desired_sig, signed);
}

/// A desired state is kept with its signature, so that the next peer can verify what this
/// one offers on: an application installed at its package's revision 0 (no signature) then
/// set by the operator holds, and persists, the operator's signature.
#[test]
fn a_taken_desired_state_keeps_its_signature_to_spread() {
    let (mut core, mut rng) = core();
    let mut out = Vec::new();
    let db = AppDecl {
        name: "db".into(),
        ..app(DesiredState::Online, 0, &[])
    };
    core.handle(
        0,
        Input::AppInstalledLocally(db.clone()),
        &mut rng,
        &mut out,
    );
    let signed = FlagSignatures::SIGNED;
    let offline = AppDecl {
        desired: DesiredState::Offline,
        desired_rev: 9,
        desired_sig: signed.to_vec(),
        ..db.clone()
    };
    out.clear();
    core.handle_operator(
        1_000,
        Input::SetAppDesired(offline.clone()),
        &mut rng,
        &mut out,
    )
    .unwrap();
    assert!(refusals(&out).is_empty(), "{out:?}");
    let held = core.apps().iter().find(|a| a.name == "db").unwrap().clone();
    assert_eq!(
        held,
        AppDecl {
            version: db.version,
            ..offline.clone()
        }
    );
    assert_eq!(
        core.persistent().apps.iter().find(|a| a.name == "db"),
        Some(&held)
    );
    // Taken from a peer's offer, the same: a third peer gets the signature along.
    let (mut other, mut rng) = self::core();
    other.handle(0, Input::AppInstalledLocally(db), &mut rng, &mut out);
    let offer = AppOffer {
        from: machine("b"),
        app: held.clone(),
    };
    other.on_call(2_000, PeerCall::ExchangeApp(offer), &mut rng, &mut out);
    let taken = other.apps().iter().find(|a| a.name == "db").unwrap();
    assert_eq!(taken.desired_sig, signed);
}

/// A ping carrying the rotation `rekey` (issue 14, item 2).
fn rekey_ping(from: &str, rekey: smon_proto_types::SignedRekey) -> PeerCall {
    let PeerCall::Ping(mut ping) = ping(from, tag(true, 0, &[]), 1) else {
        unreachable!()
    };
    ping.rekey = rekey;
    PeerCall::Ping(ping)
}

#[test]
fn a_key_rotation_is_taken_only_signed_and_newer_and_then_spread() {
    let (mut core, mut rng) = core();
    let rekey = |epoch, signature: &[u8]| smon_proto_types::SignedRekey {
        epoch,
        grace_until_ms: 60_000,
        sealed: vec![7; 60],
        signature: signature.to_vec(),
    };
    for signature in [&b""[..], FORGED] {
        let mut out = Vec::new();
        core.on_call(
            1_000,
            rekey_ping("b", rekey(1, signature)),
            &mut rng,
            &mut out,
        );
        let got = refusals(&out);
        assert_eq!(got.len(), 1, "{out:?}");
        assert_eq!(got[0].kind, RefusedKind::Rekey);
        assert_eq!(got[0].from, Sender::Peer(machine("b")));
        assert!(
            !out.iter().any(|o| matches!(o, Output::Rekey(_))),
            "{out:?}"
        );
        assert_eq!(core.rekey().epoch, 0);
    }
    // Too long a sealed key is refused before its signature is looked at.
    let mut out = Vec::new();
    let mut big = rekey(1, FlagSignatures::SIGNED);
    big.sealed = vec![0; 61];
    core.on_call(1_000, rekey_ping("b", big), &mut rng, &mut out);
    assert!(refusals(&out)[0].why.contains("61 bytes"), "{out:?}");

    let mut out = Vec::new();
    let signed = rekey(1, FlagSignatures::SIGNED);
    let reply = core.on_call(1_000, rekey_ping("c", signed.clone()), &mut rng, &mut out);
    assert!(out.contains(&Output::Rekey(signed.clone())), "{out:?}");
    assert!(refusals(&out).is_empty());
    let PeerReply::Pong(pong) = reply else {
        panic!("no pong")
    };
    assert_eq!(pong.rekey, signed, "spread on at once");
    assert_eq!(core.persistent().rekey, signed);

    // The same epoch again changes nothing; the operator's stale one is refused.
    let mut out = Vec::new();
    core.on_call(2_000, rekey_ping("b", signed.clone()), &mut rng, &mut out);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Rekey(_))),
        "{out:?}"
    );
    let refused = core.handle_operator(2_000, Input::SetRekey(signed), &mut rng, &mut out);
    assert!(refused.unwrap_err().why.contains("not newer"));
}
