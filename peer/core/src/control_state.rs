//! The control state every exchange carries (paper 001: the livetag, the membership list, the
//! peer version), and the operator's settings of it: what this peer adopts, spreads and
//! upgrades to.

use super::*;
use crate::signatures::{Refused, RefusedKind, Sender};

impl Core {
    /// A livetag from `from`: taken if it is newer than ours and signed by the release key;
    /// a newer one that is not signed is refused (reported, not taken, not spread). Returns
    /// whether it was taken (`Ok(false)`: not newer).
    pub(crate) fn absorb_livetag(
        &mut self,
        from: Sender,
        tag: SignedLiveTag,
        out: &mut Vec<Output>,
    ) -> Result<bool, Refused> {
        if !self.state.livetag.is_superseded_by(&tag.tag) {
            return Ok(false);
        }
        if let Err(why) = self.livetag_signed(&tag) {
            return Err(self.refuse(RefusedKind::Livetag, from, tag.tag.version, why, out));
        }
        self.state.livetag = tag.tag;
        self.state.livetag_signature = tag.signature;
        self.start_livetag_push();
        self.refresh_own(out);
        self.persist(out);
        Ok(true)
    }

    pub(crate) fn start_livetag_push(&mut self) {
        // Rumor push, fanout f: the informed set grows about (f + 1)-fold a round, and the
        // enabled peers' own pings pull the rest.
        let n = self.n().max(2) as f64;
        let rounds = (n.ln() / ((self.cfg.livetag_fanout + 1) as f64).ln()).ceil() as u32;
        self.livetag_push_left = rounds + 1;
    }

    pub(crate) fn consider_version(
        &mut self,
        from: &MachineId,
        version: Version,
        rng: &mut impl Rng,
        out: &mut Vec<Output>,
    ) {
        if version <= self.state.version || self.fetch.is_some() || self.is_marked_bad(version) {
            return;
        }
        self.fetch = Some(Fetch { version });
        out.push(Output::FetchRelease {
            from: from.clone(),
            version,
            session: rng.random(),
        });
    }

    /// A peer holds the list `list` ((version, digest), see `Membership::order`): pull it
    /// if it orders above ours.
    pub(crate) fn consider_membership(
        &mut self,
        from: &MachineId,
        list: (u64, u64),
        out: &mut Vec<Output>,
    ) {
        if list <= self.view.membership().order() || self.member_pull_in_flight {
            return;
        }
        let Some(index) = self.view.membership().index_of(from) else {
            // The sender is not in our (older) list: ask it directly anyway.
            self.member_pull_in_flight = true;
            let id = self.next_call;
            self.next_call += 1;
            self.pending.insert(id, (Pending::MemberPull, from.clone()));
            out.push(Output::Call {
                id,
                to: from.clone(),
                call: PeerCall::ExchangeMember(self.view.membership().version),
            });
            return;
        };
        self.member_pull_in_flight = true;
        let version = self.view.membership().version;
        self.call(
            index,
            PeerCall::ExchangeMember(version),
            Pending::MemberPull,
            out,
        );
    }

    /// A list from `from`: taken if it orders above ours and is signed as a whole by the
    /// release key; otherwise refused (reported, not taken, not spread).
    pub(crate) fn apply_membership(
        &mut self,
        from: Sender,
        membership: Arc<Membership>,
        out: &mut Vec<Output>,
    ) -> Result<(), Refused> {
        if membership.order() <= self.view.membership().order() {
            if from != Sender::Operator {
                return Ok(()); // a peer's stale list: nothing to say
            }
            let why = format!(
                "version {} is not newer than this peer's {}",
                membership.version,
                self.view.membership().version
            );
            return Err(self.refuse(RefusedKind::Membership, from, membership.version, why, out));
        }
        if let Err(why) = self.membership_signed(&membership) {
            return Err(self.refuse(RefusedKind::Membership, from, membership.version, why, out));
        }
        self.membership_blob = None;
        self.me_index = membership.index_of(&self.me);
        self.view.remap(membership.clone(), self.me_index, self.now);
        self.own.machine = self.me_index.unwrap_or(u32::MAX);
        self.targeting = Targeting::new(self.me_index, None, &self.view);
        self.work = None;
        self.suspects.clear();
        out.push(Output::MembershipChanged(membership));
        self.own.state = PeerState::Stopped; // force a republish under the new index
        self.refresh_own(out);
        Ok(())
    }

    /// A release fetch ended: upgrade to it if it is still newer and not known bad.
    pub(crate) fn on_fetch_done(&mut self, version: Version, ok: bool, out: &mut Vec<Output>) {
        if self.fetch.as_ref().is_none_or(|f| f.version != version) {
            return;
        }
        self.fetch = None;
        if ok && version > self.state.version && !self.is_marked_bad(version) {
            out.push(Output::Upgrade(version));
        }
    }

    /// Was `version` found unable to run or rejoin, here or on any machine the view counts?
    /// Such a version is never fetched or upgraded to: a rollback elsewhere stops its spread.
    pub fn is_marked_bad(&self, version: Version) -> bool {
        self.state.bad_versions.contains(&version)
            || (self.view.root().agg.bad_versions)
                .iter()
                .any(|(v, _)| *v == version)
    }

    /// Note a version found bad on this machine: never taken again, and told in its record.
    pub(crate) fn mark_bad(&mut self, mark: BadVersion, out: &mut Vec<Output>) {
        if !self.state.bad_versions.contains(&mark.version) {
            self.state.bad_versions.push(mark.version);
        }
        note_bad(&mut self.state.bad_marks, mark);
        self.refresh_own(out);
        self.persist(out);
    }

    /// The operator's livetag, signed by the console at a version above what it saw; refused
    /// if unsigned, forged, or not newer than this peer's.
    pub(crate) fn set_livetag(&mut self, tag: SignedLiveTag, out: &mut Vec<Output>) {
        let version = tag.tag.version;
        if let Ok(false) = self.absorb_livetag(Sender::Operator, tag, out) {
            let why = format!(
                "version {version} is not newer than this peer's {}",
                self.state.livetag.version
            );
            self.refuse(RefusedKind::Livetag, Sender::Operator, version, why, out);
        }
    }

    /// The operator's cluster-wide desired state of an application (`app`'s name, desired
    /// state, revision and signature): refused if unsigned, forged or not newer.
    pub(crate) fn set_app_desired(&mut self, app: AppDecl, out: &mut Vec<Output>) {
        let kind = RefusedKind::AppDesired;
        let Some(i) = self.state.apps.iter().position(|a| a.name == app.name) else {
            let why = format!("application {} is not installed here", app.name);
            self.refuse(kind, Sender::Operator, app.desired_rev, why, out);
            return;
        };
        if app.desired_order() <= self.state.apps[i].desired_order() {
            let why = format!(
                "revision {} is not newer than this peer's {}",
                app.desired_rev, self.state.apps[i].desired_rev
            );
            self.refuse(kind, Sender::Operator, app.desired_rev, why, out);
            return;
        }
        let signed = match app.desired_rev {
            0 => Err("revision 0 is the package's own".to_owned()),
            _ => self.app_desired_signed(&app),
        };
        if let Err(why) = signed {
            self.refuse(kind, Sender::Operator, app.desired_rev, why, out);
            return;
        }
        self.adopt_app_desired(&app, out);
    }
}
