//! The world's events in virtual time and what each does when its time comes: one method
//! per event.

use smon_proto::{
    AppDecl, AppState, AppStatus, DesiredState, PeerCall, PeerReply, Version, wire_size,
};

use super::{M, World};
use crate::core::{CallFailure, CallId, Input, LoginOutcome, Millis, Probe, SpreadHint};

#[derive(Debug)]
pub(super) enum Event {
    Timer {
        m: M,
        inc: u64,
    },
    Deliver {
        to: M,
        from: M,
        from_inc: u64,
        id: CallId,
        call: PeerCall,
    },
    Reply {
        to: M,
        inc: u64,
        id: CallId,
        result: Result<PeerReply, CallFailure>,
    },
    LoginDone {
        m: M,
        inc: u64,
        target: M,
    },
    CopyDone {
        deployer: M,
        inc: u64,
        target: M,
        version: Version,
        hint: Option<SpreadHint>,
        /// When the deployer began (its login), for the length of the deployment.
        began: Millis,
    },
    InstallDone {
        target: M,
        version: Version,
        hint: Option<SpreadHint>,
        began: Millis,
    },
    RestartDone {
        deployer: M,
        inc: u64,
        target: M,
    },
    /// A login that kills the peer process `pid` (its incarnation) of `target` ended.
    KillDone {
        killer: M,
        inc: u64,
        target: M,
        pid: u32,
    },
    FetchDone {
        m: M,
        inc: u64,
        version: Version,
        /// None: the fetch failed.
        admitted: Option<Admitted>,
    },
    AppFetched {
        m: M,
        inc: u64,
        app: AppDecl,
    },
    /// The machine's supervisor has applied the desired states: it reports the
    /// applications' states to its peer.
    AppsApplied {
        m: M,
        inc: u64,
    },
}

/// A release fetch that a server admitted: its slot is freed when the fetch ends.
#[derive(Debug)]
pub(super) struct Admitted {
    pub server: M,
    /// The server process that admitted it (a restarted one holds no slot).
    pub server_inc: u64,
    pub session: u64,
}

/// An event in the queue, ordered by time, then by the order it was scheduled in (which keeps
/// runs deterministic).
pub(super) struct Scheduled {
    pub at: Millis,
    pub seq: u64,
    pub event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl World {
    pub(super) fn dispatch(&mut self, event: Event) {
        match event {
            Event::Timer { m, inc } => self.on_timer(m, inc),
            Event::Deliver {
                to,
                from,
                from_inc,
                id,
                call,
            } => self.on_deliver(to, from, from_inc, id, call),
            Event::Reply {
                to,
                inc,
                id,
                result,
            } => self.on_reply(to, inc, id, result),
            Event::LoginDone { m, inc, target } => self.on_login_done(m, inc, target),
            Event::CopyDone {
                deployer,
                inc,
                target,
                version,
                hint,
                began,
            } => self.on_copy_done(deployer, inc, target, version, hint, began),
            Event::InstallDone {
                target,
                version,
                hint,
                began,
            } => self.on_install_done(target, version, hint, began),
            Event::RestartDone {
                deployer,
                inc,
                target,
            } => self.on_restart_done(deployer, inc, target),
            Event::KillDone {
                killer,
                inc,
                target,
                pid,
            } => self.on_kill_done(killer, inc, target, pid),
            Event::FetchDone {
                m,
                inc,
                version,
                admitted,
            } => self.on_fetch_done(m, inc, version, admitted),
            Event::AppFetched { m, inc, app } => self.on_app_fetched(m, inc, app),
            Event::AppsApplied { m, inc } => self.on_apps_applied(m, inc),
        }
    }

    fn on_timer(&mut self, m: M, inc: u64) {
        if self.alive(m, inc) {
            self.input(m, Input::Tick);
        }
    }

    /// A call arrives: the callee's core answers at once, and the reply travels back (or is
    /// lost, and the caller times out).
    fn on_deliver(&mut self, to: M, from: M, from_inc: u64, id: CallId, call: PeerCall) {
        let reply = if self.machines[to].forger {
            Some(self.forged_reply(&call))
        } else if self.machines[to].peer.is_some() && !self.machines[to].frozen {
            self.call_core(to, call)
        } else {
            None
        };
        match reply {
            Some(reply) if !self.lost() => {
                self.messages += 1;
                self.bytes += wire_size(&reply);
                let at = self.now + self.latency();
                self.schedule(
                    at,
                    Event::Reply {
                        to: from,
                        inc: from_inc,
                        id,
                        result: Ok(reply),
                    },
                );
            }
            _ => self.time_out(from, from_inc, id),
        }
    }

    fn on_reply(&mut self, to: M, inc: u64, id: CallId, result: Result<PeerReply, CallFailure>) {
        if self.alive(to, inc) {
            self.input(to, Input::Reply { call: id, result });
        }
    }

    /// A login finished: the probe sees the target as it is now.
    fn on_login_done(&mut self, m: M, inc: u64, target: M) {
        if !self.alive(m, inc) {
            return;
        }
        let outcome = if self.machines[m].exhausted {
            LoginOutcome::NotTried
        } else if self.connected(m, target) {
            let t = &self.machines[target];
            LoginOutcome::Probed(Probe {
                installed: t.installed,
                running: t.peer.is_some(),
                pid: t.peer.as_ref().map(|_| t.inc as u32),
                install_in_progress: t.install_lock || t.deploy_claim_until > self.now,
                // The simulator runs one cluster: never another's install.
                other_cluster: None,
                key_epoch: None,
            })
        } else {
            LoginOutcome::Failed(smon_proto::Reason::new("unreachable (simulated)"))
        };
        let machine = self.machines[target].id.clone();
        self.input(m, Input::LoginDone { machine, outcome });
    }

    /// A package was copied: its installer starts unless another one holds the install lock.
    fn on_copy_done(
        &mut self,
        deployer: M,
        inc: u64,
        target: M,
        version: Version,
        hint: Option<SpreadHint>,
        began: Millis,
    ) {
        let t = &mut self.machines[target];
        t.copies += 1;
        // The installer: of several, the one that takes the lock first installs.
        if !t.install_lock && t.peer.is_none() {
            t.install_lock = true;
            let took = self.deploy_time(target) / 4;
            self.schedule(
                self.now + took,
                Event::InstallDone {
                    target,
                    version,
                    hint,
                    began,
                },
            );
        }
        if self.alive(deployer, inc) {
            let machine = self.machines[target].id.clone();
            self.input(deployer, Input::DeployDone { machine, ok: true });
        }
    }

    fn on_install_done(
        &mut self,
        target: M,
        version: Version,
        hint: Option<SpreadHint>,
        began: Millis,
    ) {
        let t = &mut self.machines[target];
        if t.peer.is_none() && t.first_started.is_none() {
            t.deploy_took = Some(self.now - began);
        }
        t.install_lock = false;
        t.deploy_claim_until = 0;
        t.installs += 1;
        if t.installed.is_none_or(|v| v < version) {
            t.installed = Some(version);
        }
        self.start_peer(target, hint);
    }

    fn on_restart_done(&mut self, deployer: M, inc: u64, target: M) {
        if self.machines[target].installed.is_some() {
            self.start_peer(target, None);
        }
        if self.alive(deployer, inc) {
            let machine = self.machines[target].id.clone();
            self.input(deployer, Input::RestartDone { machine, ok: true });
        }
    }

    /// A kill ended: the process `pid` is gone if it was still the machine's peer (a
    /// restarted one has another incarnation and is left alone).
    fn on_kill_done(&mut self, killer: M, inc: u64, target: M, pid: u32) {
        if self.machines[target].inc as u32 == pid {
            self.stop_peer(target);
        }
        if self.alive(killer, inc) {
            let machine = self.machines[target].id.clone();
            let ok =
                self.machines[target].peer.is_none() || self.machines[target].inc as u32 != pid;
            self.input(killer, Input::KillDone { machine, ok });
        }
    }

    /// A release fetch ended: the server's slot is freed (if the same process still runs),
    /// and the fetcher learns the result.
    fn on_fetch_done(&mut self, m: M, inc: u64, version: Version, admitted: Option<Admitted>) {
        let ok = admitted.is_some();
        if let Some(Admitted {
            server,
            server_inc,
            session,
        }) = admitted
            && self.machines[server].inc == server_inc
            && let Some(core) = self.machines[server].peer.as_mut()
        {
            core.release_fetch(session);
        }
        if self.alive(m, inc) {
            self.input(m, Input::FetchDone { version, ok });
        }
    }

    /// The supervisor's model: every application is in its desired state (running unless
    /// set offline) as soon as its peer has it.
    fn on_apps_applied(&mut self, m: M, inc: u64) {
        if !self.alive(m, inc) {
            return;
        }
        let Some(core) = self.machines[m].peer.as_ref() else {
            return;
        };
        let states = core
            .apps()
            .iter()
            .map(|a| AppStatus {
                name: a.name.clone(),
                version: a.version,
                desired: a.desired,
                state: match a.desired {
                    DesiredState::Offline => AppState::Stopped,
                    DesiredState::Online | DesiredState::Ignore => AppState::Running,
                },
                restarts: 0,
                reason: None,
            })
            .collect();
        self.input(m, Input::AppStates(states));
    }

    fn on_app_fetched(&mut self, m: M, inc: u64, app: AppDecl) {
        if self.alive(m, inc) {
            self.input(m, Input::AppFetched { app, ok: true });
        }
    }
}
