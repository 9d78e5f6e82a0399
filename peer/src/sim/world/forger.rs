//! A process that holds only K_E (issue 14, item 1): it speaks the protocol, but whatever
//! control state it sends carries no release-key signature. It answers every call made to
//! its machine with forged state, and calls peers with it itself ([`World::inject_forged`]):
//! a disabled livetag, a membership that removes every machine, applications set offline.
//! The cores must refuse all of it; the `forged` scenario counts what spread.

use std::sync::Arc;

use smon_proto::{
    AppDecl, AppOffer, AppReply, DesiredState, Gossip, LiveTag, MemberReply, Membership, PeerCall,
    PeerReply, PeerState, Ping, Pong, SignedLiveTag,
};

use super::{FIRST_VERSION, M, World};
use crate::core::Input;

/// Far above any version an operator reaches in a run: it would win every comparison.
const FORGED_VERSION: u64 = 1 << 40;
/// What the forger puts where a signature goes.
const FORGED_SIGNATURE: &[u8] = b"forged";

impl World {
    fn forged_livetag(&self) -> SignedLiveTag {
        SignedLiveTag {
            tag: LiveTag {
                enabled: false,
                version: FORGED_VERSION,
            },
            signature: FORGED_SIGNATURE.to_vec(),
        }
    }

    /// A newer list of the forger's machine alone: every other peer would leave.
    fn forged_membership(&self, forger: M) -> Membership {
        let mut list = Membership::new(FORGED_VERSION, vec![self.machines[forger].id.clone()]);
        list.set_signature(FORGED_SIGNATURE.to_vec());
        list
    }

    fn forged_app(&self, name: &str) -> AppDecl {
        AppDecl {
            name: name.into(),
            version: FIRST_VERSION,
            desired: DesiredState::Offline,
            desired_rev: FORGED_VERSION,
            desired_sig: FORGED_SIGNATURE.to_vec(),
        }
    }

    fn forger(&self) -> Option<M> {
        self.machines.iter().position(|m| m.forger)
    }

    fn forged_gossip(&self, forger: M) -> Gossip {
        Gossip {
            membership_version: FORGED_VERSION,
            membership_digest: self.forged_membership(forger).digest(),
            ..Gossip::default()
        }
    }

    /// The forger's answer to a call made to its machine.
    pub(super) fn forged_reply(&self, call: &PeerCall) -> PeerReply {
        let forger = self.forger().expect("a forger answers");
        match call {
            PeerCall::Ping(_) => PeerReply::Pong(Pong {
                from: self.machines[forger].id.clone(),
                version: FIRST_VERSION,
                state: PeerState::Running,
                livetag: self.forged_livetag(),
                rekey: Default::default(),
                membership_version: FORGED_VERSION,
                gossip: self.forged_gossip(forger),
            }),
            PeerCall::ExchangeLivetag(_) => PeerReply::Livetag(self.forged_livetag()),
            PeerCall::ExchangeMember(_) => PeerReply::Member(MemberReply {
                version: FORGED_VERSION,
                blob: Some(self.forged_membership(forger).encode()),
            }),
            PeerCall::ExchangeApp(offer) => {
                PeerReply::App(AppReply::Newer(self.forged_app(&offer.app.name)))
            }
            PeerCall::RetrievePeer(_) => {
                PeerReply::Chunk(Err(smon_proto::Refusal::NotFound("forger".into())))
            }
        }
    }

    /// One round of the forger's own calls: every running peer gets a ping, a livetag push
    /// and an offer of each application it runs, all forged, and the same forged state as
    /// operator actions (what the control RPC hands the core).
    pub fn inject_forged(&mut self, apps: &[&str]) {
        let Some(forger) = self.forger() else {
            return;
        };
        let from = self.machines[forger].id.clone();
        let peers: Vec<M> = self.running().map(|(m, _)| m).collect();
        for m in peers {
            let ping = Ping {
                from: from.clone(),
                version: FIRST_VERSION,
                livetag: self.forged_livetag(),
                rekey: Default::default(),
                membership_version: FORGED_VERSION,
                gossip: self.forged_gossip(forger),
            };
            self.call_core(m, PeerCall::Ping(ping));
            self.call_core(m, PeerCall::ExchangeLivetag(self.forged_livetag()));
            for name in apps {
                let offer = AppOffer {
                    from: from.clone(),
                    app: self.forged_app(name),
                };
                self.call_core(m, PeerCall::ExchangeApp(offer));
                self.input(m, Input::SetAppDesired(self.forged_app(name)));
            }
            self.input(m, Input::SetLiveTag(self.forged_livetag()));
            let list = Arc::new(self.forged_membership(forger));
            self.input(m, Input::SetMembership(list));
        }
    }
}
