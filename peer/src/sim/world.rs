//! The simulated world: machines, a network, and an event queue in virtual time. Every peer
//! is a real [`Core`]; the world only plays the part of sockets, SSH and disks.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    sync::Arc,
};

use rand::{Rng, RngExt, SeedableRng, rngs::Xoshiro256PlusPlus};
use smon_proto::{
    AppDecl, ChunkRequest, LiveTag, MachineId, Membership, PeerCall, PeerReply, Version, wire_size,
};

use super::params::SimParams;
use crate::core::{
    Boot, CallFailure, CallId, Core, Input, LocalFacts, LoginOutcome, Millis, Output,
    PersistentState, Probe, SpreadHint,
};

pub const FIRST_VERSION: Version = Version::new(1, 0, 0);

/// Machine index in the world (not the membership index: the world may hold machines that
/// are not, or not yet, listed).
pub type M = usize;

#[derive(Debug)]
enum Event {
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
    },
    InstallDone {
        target: M,
        version: Version,
        hint: Option<SpreadHint>,
    },
    RestartDone {
        deployer: M,
        inc: u64,
        target: M,
    },
    FetchDone {
        m: M,
        inc: u64,
        version: Version,
        ok: bool,
        server: M,
        server_inc: u64,
        session: u64,
    },
    AppFetched {
        m: M,
        inc: u64,
        app: AppDecl,
    },
}

struct Scheduled {
    at: Millis,
    seq: u64,
    event: Event,
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

/// One machine of the world.
pub struct Machine {
    pub id: MachineId,
    pub peer: Option<Core>,
    /// Bumped whenever the peer process starts or stops: events of an old process are void.
    pub inc: u64,
    pub installed: Option<Version>,
    pub disk: Option<PersistentState>,
    pub disk_membership: Option<Arc<Membership>>,
    /// A deployer has claimed the machine (before copying) until then.
    pub deploy_claim_until: Millis,
    pub install_lock: bool,
    pub copies: u32,
    /// Installers that won the install lock and completed.
    pub installs: u32,
    pub logins: u32,
    pub first_started: Option<Millis>,
    /// Multiplies every deployment time on this machine.
    pub slowness: f64,
    pub unreachable: bool,
    /// Machines on different sides of a partition cannot talk.
    pub side: u8,
}

/// Per-machine times the scenarios read.
#[derive(Default, Clone)]
pub struct Track {
    pub disabled_at: Vec<Option<Millis>>,
}

pub struct World {
    pub params: SimParams,
    pub rng: Xoshiro256PlusPlus,
    pub now: Millis,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    pub machines: Vec<Machine>,
    by_id: HashMap<MachineId, M>,
    pub membership: Arc<Membership>,
    pub bytes: u64,
    pub messages: u64,
    pub events: u64,
    /// Sum over peers of the time they ran, for traffic per peer per round.
    peer_time: u128,
    pub track: Track,
    out: Vec<Output>,
}

pub fn machine_name(i: usize) -> MachineId {
    MachineId::Ssh {
        user: Some("smon".into()),
        host: format!("node{i:05}.sim"),
        port: None,
    }
}

impl World {
    /// A world of `machines` machines (plus `spare` not listed in the membership yet).
    pub fn new(params: SimParams, spare: usize) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(params.seed);
        let total = params.machines + spare;
        let mut machines = Vec::with_capacity(total);
        let mut by_id = HashMap::with_capacity(total);
        for i in 0..total {
            let id = machine_name(i);
            by_id.insert(id.clone(), i);
            let slow = rng.random_bool(params.slow_share.clamp(0.0, 1.0));
            let unreachable = i != 0 && rng.random_bool(params.unreachable_share.clamp(0.0, 1.0));
            machines.push(Machine {
                id,
                peer: None,
                inc: 0,
                installed: None,
                disk: None,
                disk_membership: None,
                deploy_claim_until: 0,
                install_lock: false,
                copies: 0,
                installs: 0,
                logins: 0,
                first_started: None,
                slowness: if slow { params.slow_factor } else { 1.0 },
                unreachable,
                side: 0,
            });
        }
        let membership = Arc::new(Membership::new(
            1,
            machines[..params.machines]
                .iter()
                .map(|m| m.id.clone())
                .collect(),
        ));
        Self {
            track: Track {
                disabled_at: vec![None; total],
            },
            params,
            rng,
            now: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            machines,
            by_id,
            membership,
            bytes: 0,
            messages: 0,
            events: 0,
            peer_time: 0,
            out: Vec::new(),
        }
    }

    pub fn index(&self, id: &MachineId) -> Option<M> {
        self.by_id.get(id).copied()
    }

    fn schedule(&mut self, at: Millis, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            event,
        }));
    }

    fn latency(&mut self) -> Millis {
        let (lo, hi) = self.params.latency_ms;
        if hi > lo {
            self.rng.random_range(lo..=hi)
        } else {
            lo
        }
    }

    fn connected(&self, a: M, b: M) -> bool {
        let (a, b) = (&self.machines[a], &self.machines[b]);
        !a.unreachable && !b.unreachable && a.side == b.side
    }

    fn lost(&mut self) -> bool {
        self.params.loss > 0.0 && self.rng.random_bool(self.params.loss)
    }

    /// A deployment time: log-normal around the median, times the machine's slowness.
    fn deploy_time(&mut self, target: M) -> Millis {
        let median = self.params.deploy_time_ms as f64;
        if median == 0.0 {
            return 0;
        }
        // Box-Muller from the world's RNG keeps runs reproducible.
        let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = self.rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (median * (self.params.deploy_sigma * z).exp() * self.machines[target].slowness) as Millis
    }

    // ---- peers ----------------------------------------------------------------------------

    /// Start the installed peer of `m` (no-op if one runs: a second instance exits at once).
    pub fn start_peer(&mut self, m: M, hint: Option<SpreadHint>) {
        let machine = &mut self.machines[m];
        if machine.peer.is_some() {
            return;
        }
        let Some(version) = machine.installed else {
            return;
        };
        let mut state = machine
            .disk
            .clone()
            .unwrap_or_else(|| PersistentState::new(version));
        state.version = version;
        let membership = machine
            .disk_membership
            .clone()
            .unwrap_or_else(|| self.membership.clone());
        let first = *machine.first_started.get_or_insert(self.now);
        let boot = Boot {
            me: machine.id.clone(),
            state,
            membership,
            facts: LocalFacts {
                overhead: machine.copies,
                logins: machine.logins,
                load: 0,
                first_deployed_ms: Some(first),
            },
            hint,
        };
        machine.inc += 1;
        let mut core = Core::new(self.params.core_config(), boot, self.now);
        let mut out = std::mem::take(&mut self.out);
        core.start(self.now, &mut self.rng, &mut out);
        self.machines[m].peer = Some(core);
        self.peer_time = self.peer_time.wrapping_sub(self.now as u128);
        self.apply(m, &mut out);
        self.out = out;
    }

    pub fn stop_peer(&mut self, m: M) {
        let machine = &mut self.machines[m];
        if machine.peer.take().is_some() {
            machine.inc += 1;
            self.peer_time = self.peer_time.wrapping_add(self.now as u128);
        }
    }

    /// Install `version` on `m` directly (the operator's first peer, or a pre-deployed world).
    pub fn install(&mut self, m: M, version: Version) {
        let machine = &mut self.machines[m];
        machine.installed = Some(version);
        machine.copies += 1;
        if let Some(disk) = machine.disk.as_mut() {
            disk.version = version;
        }
    }

    /// Feed one input to the peer of `m`.
    pub fn input(&mut self, m: M, input: Input) {
        let mut out = std::mem::take(&mut self.out);
        if let Some(core) = self.machines[m].peer.as_mut() {
            core.handle(self.now, input, &mut self.rng, &mut out);
        }
        self.apply(m, &mut out);
        self.out = out;
    }

    pub fn running(&self) -> impl Iterator<Item = (M, &Core)> {
        self.machines
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.peer.as_ref().map(|p| (i, p)))
    }

    /// Peer-rounds so far (sum over peers of their running time, in rounds).
    pub fn peer_rounds(&self) -> f64 {
        let running = self.machines.iter().filter(|m| m.peer.is_some()).count() as u128;
        let total = self.peer_time.wrapping_add(running * self.now as u128);
        total as f64 / self.params.interval_ms as f64
    }

    fn note(&mut self, m: M) {
        if let Some(core) = &self.machines[m].peer
            && !core.livetag().enabled
            && self.track.disabled_at[m].is_none()
        {
            self.track.disabled_at[m] = Some(self.now);
        }
    }

    // ---- the outputs of a core --------------------------------------------------------------

    fn apply(&mut self, m: M, out: &mut Vec<Output>) {
        let inc = self.machines[m].inc;
        for output in out.drain(..) {
            match output {
                Output::SetTimer(at) => self.schedule(at, Event::Timer { m, inc }),
                Output::Call { id, to, call } => self.send(m, inc, id, to, call),
                Output::Login(target) => {
                    let Some(t) = self.index(&target) else {
                        continue;
                    };
                    if self.connected(m, t) {
                        self.machines[t].logins += 1;
                        let at = self.now + self.params.login_time_ms;
                        self.schedule(at, Event::LoginDone { m, inc, target: t });
                    } else {
                        let at = self.now + self.params.ping_timeout_ms;
                        self.schedule(at, Event::LoginDone { m, inc, target: t });
                    }
                }
                Output::Deploy { machine, hint } => {
                    let Some(t) = self.index(&machine) else {
                        continue;
                    };
                    let took = self.deploy_time(t);
                    // The deployer claims the machine before it copies (the cheap remote check
                    // of later deployers sees the claim).
                    self.machines[t].deploy_claim_until =
                        self.now + took + 4 * self.params.interval_ms;
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
                    self.schedule(
                        at,
                        Event::CopyDone {
                            deployer: m,
                            inc,
                            target: t,
                            version,
                            hint,
                        },
                    );
                }
                Output::Restart(machine) => {
                    let Some(t) = self.index(&machine) else {
                        continue;
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
                Output::FetchRelease {
                    from,
                    version,
                    session,
                } => {
                    let server = self.index(&from);
                    let admitted = server.filter(|&s| self.connected(m, s)).and_then(|s| {
                        let req = PeerCall::RetrievePeer(ChunkRequest {
                            session,
                            version,
                            offset: 0,
                            max_len: 0,
                        });
                        self.call_core(s, req).map(|reply| (s, reply))
                    });
                    let (ok, server, server_inc, took) = match admitted {
                        Some((s, PeerReply::Chunk(Ok(_)))) => {
                            (true, s, self.machines[s].inc, self.params.fetch_time_ms)
                        }
                        _ => (false, m, 0, self.params.ping_timeout_ms),
                    };
                    self.schedule(
                        self.now + took,
                        Event::FetchDone {
                            m,
                            inc,
                            version,
                            ok,
                            server,
                            server_inc,
                            session,
                        },
                    );
                }
                Output::Upgrade(version) => {
                    self.machines[m].installed = Some(version);
                    if let Some(disk) = self.machines[m].disk.as_mut() {
                        disk.version = version;
                    }
                    self.stop_peer(m);
                    self.start_peer(m, None);
                    return; // the old core's remaining outputs die with it
                }
                Output::FetchApp { from: _, app } => {
                    let at = self.now + self.params.fetch_time_ms;
                    self.schedule(at, Event::AppFetched { m, inc, app });
                }
                Output::AppDesired(_) => {}
                Output::MembershipChanged(membership) => {
                    self.machines[m].disk_membership = Some(membership)
                }
                Output::Persist(state) => self.machines[m].disk = Some(state),
                Output::Exit(_) => {
                    self.stop_peer(m);
                    return;
                }
            }
        }
        self.note(m);
    }

    /// Deliver a call synchronously to a core and return its reply (used for admission).
    fn call_core(&mut self, s: M, call: PeerCall) -> Option<PeerReply> {
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
            _ => {
                let at = self.now + self.params.ping_timeout_ms;
                self.schedule(
                    at,
                    Event::Reply {
                        to: from,
                        inc: from_inc,
                        id,
                        result: Err(CallFailure::Unreachable),
                    },
                );
            }
        }
    }

    // ---- the event loop ---------------------------------------------------------------------

    /// Run events up to and including time `until`.
    pub fn run_until(&mut self, until: Millis) {
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > until {
                break;
            }
            let Reverse(Scheduled { at, event, .. }) = self.queue.pop().expect("peeked");
            self.now = at;
            self.events += 1;
            self.dispatch(event);
        }
        self.now = until;
    }

    fn alive(&self, m: M, inc: u64) -> bool {
        self.machines[m].inc == inc && self.machines[m].peer.is_some()
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Timer { m, inc } => {
                if self.alive(m, inc) {
                    self.input(m, Input::Tick);
                }
            }
            Event::Deliver {
                to,
                from,
                from_inc,
                id,
                call,
            } => {
                let reply = if self.machines[to].peer.is_some() {
                    self.call_core(to, call)
                } else {
                    None
                };
                let result = match reply {
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
                        return;
                    }
                    _ => Err(CallFailure::Unreachable),
                };
                let at = self.now + self.params.ping_timeout_ms;
                self.schedule(
                    at,
                    Event::Reply {
                        to: from,
                        inc: from_inc,
                        id,
                        result,
                    },
                );
            }
            Event::Reply {
                to,
                inc,
                id,
                result,
            } => {
                if self.alive(to, inc) {
                    self.input(to, Input::Reply { call: id, result });
                }
            }
            Event::LoginDone { m, inc, target } => {
                if !self.alive(m, inc) {
                    return;
                }
                let outcome = if self.connected(m, target) {
                    let t = &self.machines[target];
                    LoginOutcome::Probed(Probe {
                        installed: t.installed,
                        running: t.peer.is_some(),
                        install_in_progress: t.install_lock || t.deploy_claim_until > self.now,
                    })
                } else {
                    LoginOutcome::Failed
                };
                let machine = self.machines[target].id.clone();
                self.input(m, Input::LoginDone { machine, outcome });
            }
            Event::CopyDone {
                deployer,
                inc,
                target,
                version,
                hint,
            } => {
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
                        },
                    );
                }
                if self.alive(deployer, inc) {
                    let machine = self.machines[target].id.clone();
                    self.input(deployer, Input::DeployDone { machine, ok: true });
                }
            }
            Event::InstallDone {
                target,
                version,
                hint,
            } => {
                let t = &mut self.machines[target];
                t.install_lock = false;
                t.deploy_claim_until = 0;
                t.installs += 1;
                if t.installed.is_none_or(|v| v < version) {
                    t.installed = Some(version);
                }
                self.start_peer(target, hint);
            }
            Event::RestartDone {
                deployer,
                inc,
                target,
            } => {
                if self.machines[target].installed.is_some() {
                    self.start_peer(target, None);
                }
                if self.alive(deployer, inc) {
                    let machine = self.machines[target].id.clone();
                    self.input(deployer, Input::RestartDone { machine, ok: true });
                }
            }
            Event::FetchDone {
                m,
                inc,
                version,
                ok,
                server,
                server_inc,
                session,
            } => {
                if ok
                    && self.machines[server].inc == server_inc
                    && let Some(core) = self.machines[server].peer.as_mut()
                {
                    core.release_fetch(session);
                }
                if self.alive(m, inc) {
                    self.input(m, Input::FetchDone { version, ok });
                }
            }
            Event::AppFetched { m, inc, app } => {
                if self.alive(m, inc) {
                    self.input(m, Input::AppFetched { app, ok: true });
                }
            }
        }
    }

    /// Replace the membership list the operator hands to one peer.
    pub fn set_membership(&mut self, m: M, membership: Arc<Membership>) {
        self.membership = membership.clone();
        self.input(m, Input::SetMembership(membership));
    }

    pub fn livetag_of(&self, m: M) -> Option<LiveTag> {
        self.machines[m].peer.as_ref().map(Core::livetag)
    }

    pub fn rng(&mut self) -> &mut impl Rng {
        &mut self.rng
    }
}
