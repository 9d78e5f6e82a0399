//! The deployment loop (SMON §III): each round's tick, the target it approaches (a ping, or
//! when pipelined a login at once), going on after a deployment, and what a login found.

use super::*;

impl Core {
    pub(crate) fn tick(&mut self, now: Millis, rng: &mut impl Rng, out: &mut Vec<Output>) {
        let next = if self.cfg.synchronous_rounds {
            self.next_round_boundary(now)
        } else {
            now + self.cfg.interval_ms
        };
        out.push(Output::SetTimer(next));
        self.heartbeat(now, out);

        let silent_for = now.saturating_sub(self.last_heard);
        if self.me_index.is_none() {
            if silent_for >= self.cfg.removed_exit_after_ms {
                self.exit(ExitReason::RemovedFromMembership, out);
            }
            return;
        }
        if self.livetag_push_left > 0 {
            self.livetag_push_left -= 1;
            for _ in 0..self.cfg.livetag_fanout {
                if let Some(target) = self.random_other(rng) {
                    let tag = self.signed_livetag();
                    self.call(
                        target,
                        PeerCall::ExchangeLivetag(tag),
                        Pending::LivetagPush,
                        out,
                    );
                }
            }
        }
        if !self.state.livetag.enabled {
            match self.cfg.disabled_exit_after_ms {
                // The paper's switch-off: silent, and gone after a silence.
                Some(limit) => {
                    if silent_for >= limit {
                        self.exit(ExitReason::DisabledAndSilent, out);
                    }
                }
                // Otherwise monitoring goes on: gossip-only pings keep the cluster view
                // current, but an unanswered ping never leads to a login or a deployment.
                None => {
                    if self.work.is_none()
                        && let Some(target) = self.view.partner(rng)
                    {
                        let ping = self.make_ping(target, rng);
                        self.work = Some(Work::Pinging(target));
                        self.call(target, PeerCall::Ping(ping), Pending::Ping(target), out);
                    }
                }
            }
            return;
        }
        self.offer_app(rng, out);
        if self.work.is_some() {
            return; // one deployment at a time
        }
        let Some(me) = self.me_index else { return };
        if let Some(suspect) = self.suspect_to_follow() {
            self.ping(suspect, rng, out);
        } else if let Some(target) = self.targeting.next(me, &mut self.view, &self.cfg, now, rng) {
            self.approach(target, rng, out);
        }
    }

    /// Start on `target`: ping it, or when pipelined (see [`CoreConfig::pipelined`]) log in at
    /// once where the answer to a ping is known to be silence (the view says no peer runs
    /// there, or it is a child of this freshly deployed peer, which nobody else deploys).
    pub(crate) fn approach(&mut self, target: u32, rng: &mut impl Rng, out: &mut Vec<Output>) {
        if self.cfg.pipelined() && self.no_peer_expected(target) {
            if let Some(machine) = self.view.membership().get(target).cloned() {
                self.work = Some(Work::LoggingIn(target));
                self.login_unpinged = self.view.get(target).is_some();
                out.push(Output::Login(machine));
            }
            return;
        }
        self.login_unpinged = false;
        self.ping(target, rng, out);
    }

    pub(crate) fn ping(&mut self, target: u32, rng: &mut impl Rng, out: &mut Vec<Output>) {
        let ping = self.make_ping(target, rng);
        self.work = Some(Work::Pinging(target));
        self.call(target, PeerCall::Ping(ping), Pending::Ping(target), out);
    }

    pub(crate) fn no_peer_expected(&self, target: u32) -> bool {
        match self.view.get(target) {
            Some(record) => matches!(record.state, PeerState::Unreachable | PeerState::Stopped),
            None => self.targeting.expects_no_peer(target, self.n()),
        }
    }

    /// When pipelined, a peer whose deployment just ended, or whose login to a child of its
    /// spreading tree found nothing to do, goes on with the next machine to deploy at once
    /// instead of waiting for its next round. Bounded: only a deployment or a tree child leads
    /// on, so a round adds at most one attempt per deployment and one per tree child.
    pub(crate) fn keep_deploying(
        &mut self,
        after: u32,
        deployed: bool,
        now: Millis,
        rng: &mut impl Rng,
        out: &mut Vec<Output>,
    ) {
        if !self.cfg.pipelined()
            || self.work.is_some()
            || self.exited
            || !self.state.livetag.enabled
        {
            return;
        }
        let Some(me) = self.me_index else { return };
        if !deployed && !self.targeting.is_child(after, self.n()) {
            return;
        }
        if let Some(target) = self
            .targeting
            .next_deploy(me, &self.view, &self.cfg, now, rng)
        {
            self.approach(target, rng, out);
        }
    }

    /// A login finished. Returns the machine when that ended the work on it without a
    /// deployment or a restart (the caller may go on with the next one).
    pub(crate) fn on_login(
        &mut self,
        now: Millis,
        machine: MachineId,
        outcome: LoginOutcome,
        rng: &mut impl Rng,
        out: &mut Vec<Output>,
    ) -> Option<u32> {
        let Some(index) = self.view.membership().index_of(&machine) else {
            self.work = None;
            return None;
        };
        if self.work != Some(Work::LoggingIn(index)) {
            return None;
        }
        self.work = None;
        if !self.state.livetag.enabled || self.me_index.is_none() {
            return None;
        }
        let probe = match outcome {
            // Our own failure: neither an attempt on the machine nor news of it.
            LoginOutcome::NotTried => return None,
            LoginOutcome::Failed(why) => {
                self.clear_suspect(index);
                self.targeting.note_attempt(index, now);
                let why = format!("pinged without answer; login failed: {why}");
                self.observe_because(index, PeerState::Unreachable, why);
                return Some(index);
            }
            LoginOutcome::Probed(probe) => probe,
        };
        if let Some(found) = probe.other_cluster {
            return self.on_other_cluster(index, machine, found, now, out);
        }
        self.other_clusters.remove(&machine);
        if probe.running {
            // Up, just slow to answer (or starting). If the login went out without a ping
            // because the view said no peer runs there (as after a partition), the view is
            // wrong: ping it now, so that the two exchange what they know.
            if std::mem::take(&mut self.login_unpinged) {
                self.ping(index, rng, out);
                return None;
            }
            // The ping went unanswered, yet the process is there: it does not answer.
            return self.on_silent_process(index, probe.pid, machine, now, out);
        }
        self.clear_suspect(index); // no process: not silent, absent
        if probe.install_in_progress && self.cfg.strategy == Strategy::Informed {
            return Some(index); // somebody else is installing right now: no second copy
        }
        self.targeting.note_attempt(index, now);
        if probe.installed.is_some() && self.install_key_is_stale(probe.key_epoch, now) {
            // Away during a whole key rotation: a restart would come back on a key nobody
            // accepts; the package and the seed bring the current keyring.
            self.deploy_over_stale_key(index, machine, out);
        } else if probe.installed.is_some() {
            self.observe(index, PeerState::Stopped);
            self.work = Some(Work::Restarting(index));
            out.push(Output::Restart(machine));
        } else {
            self.deploy(index, machine, false, out);
        }
        None
    }

    /// Copy the package to `machine` (index `index`) and start its installer;
    /// `over_other_cluster`: over another cluster's install, taken over.
    pub(crate) fn deploy(
        &mut self,
        index: u32,
        machine: MachineId,
        over_other_cluster: bool,
        out: &mut Vec<Output>,
    ) {
        let Some(me) = self.me_index else { return };
        self.work = Some(Work::Deploying(index));
        self.observe(index, PeerState::Deploying);
        let hint = self.targeting.hint(self.view.membership().version, me);
        out.push(Output::Deploy {
            machine,
            hint: Some(hint),
            over_other_cluster,
            over_stale_key: false,
        });
    }

    /// [`Core::deploy`] over this cluster's install left on an older key.
    fn deploy_over_stale_key(&mut self, index: u32, machine: MachineId, out: &mut Vec<Output>) {
        self.deploy(index, machine, false, out);
        if let Some(Output::Deploy { over_stale_key, .. }) = out.last_mut() {
            *over_stale_key = true;
        }
    }
}
