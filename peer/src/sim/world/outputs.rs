//! What the world does with a core's outputs: one method per output. The world plays the
//! part of the network, SSH and the disks.

use std::ops::ControlFlow;

use smon_proto::{AppDecl, ChunkRequest, MachineId, PeerCall, PeerReply, Version, wire_size};

use super::{
    FIRST_VERSION, M, World,
    events::{Admitted, Event},
};
use crate::core::{CallFailure, CallId, Output, SpreadHint};

impl World {
    /// Carry out the outputs of `m`'s core, in order. An upgrade or an exit ends the core:
    /// its remaining outputs die with it.
    pub(super) fn apply(&mut self, m: M, out: &mut Vec<Output>) {
        let inc = self.machines[m].inc;
        for output in out.drain(..) {
            if self.apply_one(m, inc, output).is_break() {
                return;
            }
        }
        self.note(m);
    }

    fn apply_one(&mut self, m: M, inc: u64, output: Output) -> ControlFlow<()> {
        match output {
            Output::SetTimer(at) => self.schedule(at, Event::Timer { m, inc }),
            Output::Call { id, to, call } => self.send(m, inc, id, to, call),
            Output::Login(target) => self.login(m, inc, &target),
            Output::Deploy { machine, hint, .. } => self.deploy(m, inc, &machine, hint),
            Output::Restart(machine) => self.restart(m, inc, &machine),
            Output::Unresponsive { .. } => {}
            Output::Kill { machine, pid, .. } => self.kill(m, inc, &machine, pid),
            Output::FetchRelease {
                from,
                version,
                session,
            } => self.fetch_release(m, inc, &from, version, session),
            Output::Upgrade(version) => return self.upgrade(m, version),
            Output::FetchApp { from: _, app } => self.fetch_app(m, inc, app),
            Output::AppDesired(_) => {
                let at = self.now + self.params.restart_time_ms;
                self.schedule(at, Event::AppsApplied { m, inc });
            }
            // The modelled network delivers every call to the machine it names.
            Output::Conflict { .. } | Output::OtherCluster { .. } => {}
            Output::MembershipChanged(membership) => {
                self.machines[m].disk_membership = Some(membership)
            }
            Output::Persist(state) => self.machines[m].disk = Some(state),
            Output::Refused(_) => self.refused += 1,
            // The modelled network has no keys: a rotation is state that spreads, no more.
            Output::Rekey(_) => {}
            Output::Exit(_) => {
                self.stop_peer(m);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// Deliver a call synchronously to a core and return its reply (used for admission).
    pub(super) fn call_core(&mut self, s: M, call: PeerCall) -> Option<PeerReply> {
        if self.machines[s].frozen {
            return None;
        }
        let mut out = Vec::new();
        let reply =
            self.machines[s]
                .peer
                .as_mut()?
                .on_call(self.now, call, &mut self.rng, &mut out);
        self.apply(s, &mut out);
        Some(reply)
    }

    fn send(&mut self, from: M, from_inc: u64, id: CallId, to: MachineId, call: PeerCall) {
        if self.machines[from].exhausted {
            let result = Err(CallFailure::NotSent);
            let (to, inc) = (from, from_inc);
            self.schedule(
                self.now,
                Event::Reply {
                    to,
                    inc,
                    id,
                    result,
                },
            );
            return;
        }
        self.messages += 1;
        self.bytes += wire_size(&call);
        let target = self.index(&to);
        match target {
            Some(t) if self.connected(from, t) && !self.lost() => {
                let at = self.now + self.latency();
                self.schedule(
                    at,
                    Event::Deliver {
                        to: t,
                        from,
                        from_inc,
                        id,
                        call,
                    },
                );
            }
            _ => self.time_out(from, from_inc, id),
        }
    }

    /// The caller's call `id` fails as unreachable once its timeout has passed.
    pub(super) fn time_out(&mut self, to: M, inc: u64, id: CallId) {
        let at = self.now + self.params.ping_timeout_ms;
        self.schedule(
            at,
            Event::Reply {
                to,
                inc,
                id,
                result: Err(CallFailure::Unreachable),
            },
        );
    }

    /// A login takes its time when the target is reachable, the ping timeout otherwise.
    fn login(&mut self, m: M, inc: u64, target: &MachineId) {
        let Some(t) = self.index(target) else {
            return;
        };
        let took = if self.machines[m].exhausted {
            0
        } else if self.connected(m, t) {
            self.machines[t].logins += 1;
            self.params.login_time_ms
        } else {
            self.params.ping_timeout_ms
        };
        self.schedule(self.now + took, Event::LoginDone { m, inc, target: t });
    }

    fn deploy(&mut self, m: M, inc: u64, machine: &MachineId, hint: Option<SpreadHint>) {
        let Some(t) = self.index(machine) else {
            return;
        };
        let took = self.deploy_time(t);
        // The deployer claims the machine before it copies (the cheap remote check of later
        // deployers sees the claim).
        self.machines[t].deploy_claim_until = self.now + took + 4 * self.params.interval_ms;
        let (version, membership) = match self.machines[m].peer.as_ref() {
            Some(core) => (core.version(), core.membership().clone()),
            None => (FIRST_VERSION, self.membership.clone()),
        };
        // The package carries the deployer's membership list.
        let t_disk = &mut self.machines[t].disk_membership;
        if t_disk
            .as_ref()
            .is_none_or(|d| d.version < membership.version)
        {
            *t_disk = Some(membership);
        }
        let at = self.now + took * 4 / 5;
        // The login that found the machine empty came just before.
        let began = self.now.saturating_sub(self.params.login_time_ms);
        self.schedule(
            at,
            Event::CopyDone {
                deployer: m,
                inc,
                target: t,
                version,
                hint,
                began,
            },
        );
    }

    fn restart(&mut self, m: M, inc: u64, machine: &MachineId) {
        let Some(t) = self.index(machine) else {
            return;
        };
        let at = self.now + self.params.restart_time_ms;
        self.schedule(
            at,
            Event::RestartDone {
                deployer: m,
                inc,
                target: t,
            },
        );
    }

    /// Kill the process `pid` of `machine` over a login (which takes a login's time).
    fn kill(&mut self, m: M, inc: u64, machine: &MachineId, pid: u32) {
        let Some(target) = self.index(machine) else {
            return;
        };
        let at = self.now + self.params.login_time_ms;
        self.schedule(
            at,
            Event::KillDone {
                killer: m,
                inc,
                target,
                pid,
            },
        );
    }

    /// A release fetch: admitted (or refused) by the server's core at once, done after the
    /// fetch time (or the timeout).
    fn fetch_release(&mut self, m: M, inc: u64, from: &MachineId, version: Version, session: u64) {
        let server = self.index(from);
        let admitted = server.filter(|&s| self.connected(m, s)).and_then(|s| {
            let req = PeerCall::RetrievePeer(ChunkRequest {
                session,
                version,
                offset: 0,
                max_len: 0,
            });
            self.call_core(s, req).map(|reply| (s, reply))
        });
        let (admitted, took) = match admitted {
            Some((server, PeerReply::Chunk(Ok(_)))) => {
                let server_inc = self.machines[server].inc;
                let admitted = Admitted {
                    server,
                    server_inc,
                    session,
                };
                (Some(admitted), self.params.fetch_time_ms)
            }
            _ => (None, self.params.ping_timeout_ms),
        };
        self.schedule(
            self.now + took,
            Event::FetchDone {
                m,
                inc,
                version,
                admitted,
            },
        );
    }

    /// The new version replaces the running peer: the old core's remaining outputs die with it.
    fn upgrade(&mut self, m: M, version: Version) -> ControlFlow<()> {
        self.machines[m].installed = Some(version);
        if let Some(disk) = self.machines[m].disk.as_mut() {
            disk.version = version;
        }
        self.stop_peer(m);
        self.start_peer(m, None);
        ControlFlow::Break(())
    }

    fn fetch_app(&mut self, m: M, inc: u64, app: AppDecl) {
        let at = self.now + self.params.fetch_time_ms;
        self.schedule(at, Event::AppFetched { m, inc, app });
    }
}
