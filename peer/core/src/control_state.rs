//! The control state every exchange carries (paper 001: the livetag, the membership list, the
//! peer version), and the operator's settings of it: what this peer adopts, spreads and
//! upgrades to.

use super::*;

impl Core {
    pub(crate) fn absorb_livetag(&mut self, tag: LiveTag, out: &mut Vec<Output>) {
        if self.state.livetag.merge(&tag) {
            self.start_livetag_push();
            self.refresh_own(out);
        }
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

    pub(crate) fn apply_membership(&mut self, membership: Arc<Membership>, out: &mut Vec<Output>) {
        if membership.order() <= self.view.membership().order() {
            return;
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

    /// The operator's livetag: above every version this peer has heard of, so the operator's
    /// word wins even when this peer's own tag is stale.
    pub(crate) fn set_livetag(&mut self, enabled: bool, out: &mut Vec<Output>) {
        let newest = match self.view.newest_livetag() {
            Some(t) if self.state.livetag.is_superseded_by(&t) => t,
            _ => self.state.livetag,
        };
        self.state.livetag = newest.flipped_to(enabled);
        self.start_livetag_push();
        self.refresh_own(out);
    }

    /// The operator's cluster-wide desired state of an application.
    pub(crate) fn set_app_desired(
        &mut self,
        name: &str,
        desired: smon_proto_types::DesiredState,
        now: Millis,
        out: &mut Vec<Output>,
    ) {
        let Some(i) = self.state.apps.iter().position(|a| a.name == name) else {
            return;
        };
        let app = &mut self.state.apps[i];
        app.desired = desired;
        // Above what this peer knows, and a clock reading: a later setting made through
        // another (possibly less informed) peer still wins.
        app.desired_rev = (app.desired_rev + 1).max(now);
        out.push(Output::AppDesired(app.clone()));
        self.offer_next(i);
        self.persist(out);
    }
}
