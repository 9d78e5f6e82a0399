//! The simulated world: machines, a network, and an event queue in virtual time. Every peer
//! is a real [`Core`]; the world only plays the part of sockets, SSH and disks.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    sync::Arc,
};

use rand::{Rng, RngExt, SeedableRng, rngs::Xoshiro256PlusPlus};
use smon_proto::{LiveTag, MachineId, Membership, Version};

use super::params::SimParams;
use crate::core::{
    Boot, Core, FlagSignatures, Input, LocalFacts, Millis, Output, PersistentState, SpreadHint,
};

mod events;
mod forger;
mod outputs;

use events::{Event, Scheduled};

pub const FIRST_VERSION: Version = Version::new(1, 0, 0);

/// Machine index in the world (not the membership index: the world may hold machines that
/// are not, or not yet, listed).
pub type M = usize;

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
    /// How long the deployment that brought the first peer took (login, copy, install).
    pub deploy_took: Option<Millis>,
    /// Multiplies every deployment time on this machine.
    pub slowness: f64,
    pub unreachable: bool,
    /// Machines on different sides of a partition cannot talk.
    pub side: u8,
    /// This machine's peer has run out of descriptors: its own calls are never sent and its
    /// logins never tried (it still answers others; the kernel's backlog is not modelled).
    pub exhausted: bool,
    /// A process holding only K_E on this machine instead of a peer: it answers every call
    /// with forged control state ([`World::inject_forged`] also calls peers with it).
    pub forger: bool,
    /// The peer process is there but does nothing (`kill -STOP`): it answers no call, its
    /// timers and replies are lost, a login still finds it. Ends when the process is killed.
    pub frozen: bool,
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
    /// Control state the cores refused for its signature ([`Output::Refused`]).
    pub refused: u64,
    out: Vec<Output>,
}

pub fn machine_name(i: usize) -> MachineId {
    MachineId::Ssh {
        user: Some("smon".into()),
        host: format!("node{i:05}.sim"),
        // Canonical (see `MachineId::parse_entry`): a list of these survives its blob.
        port: Some(smon_proto::DEFAULT_SSH_PORT),
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
                deploy_took: None,
                slowness: if slow { params.slow_factor } else { 1.0 },
                unreachable,
                side: 0,
                exhausted: false,
                forger: false,
                frozen: false,
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
            refused: 0,
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
            signatures: Arc::new(FlagSignatures),
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
        machine.frozen = false;
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

    /// The peers that run and respond (a frozen one's view cannot be asked).
    pub fn running(&self) -> impl Iterator<Item = (M, &Core)> {
        self.machines
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.frozen)
            .filter_map(|(i, m)| m.peer.as_ref().map(|p| (i, p)))
    }

    /// Freeze the peer of `m` (as `kill -STOP`); returns its process's incarnation, which
    /// the probe reports as its pid.
    pub fn freeze(&mut self, m: M) -> u64 {
        self.machines[m].frozen = true;
        self.machines[m].inc
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

    /// Whether the process `inc` of `m` still runs and does anything (not frozen).
    fn alive(&self, m: M, inc: u64) -> bool {
        let machine = &self.machines[m];
        machine.inc == inc && machine.peer.is_some() && !machine.frozen
    }

    /// Replace the membership list the operator hands to one peer (signed: the simulator's
    /// signatures are a flag).
    pub fn set_membership(&mut self, m: M, membership: Arc<Membership>) {
        let mut signed = (*membership).clone();
        signed.set_signature(FlagSignatures::SIGNED.to_vec());
        let signed = Arc::new(signed);
        self.membership = signed.clone();
        self.input(m, Input::SetMembership(signed));
    }

    /// The operator sets the livetag through the peer of `m`, as the console does: one
    /// version above that peer's own (signed) tag, and at least the clock in ms, signed.
    /// Never from the versions records claim: they are not signed.
    pub fn set_livetag(&mut self, m: M, enabled: bool) {
        let Some(core) = self.machines[m].peer.as_ref() else {
            return;
        };
        let known = core.livetag().version;
        let tag = smon_proto::SignedLiveTag {
            tag: LiveTag {
                enabled,
                version: known.saturating_add(1).max(self.now),
            },
            signature: FlagSignatures::SIGNED.to_vec(),
        };
        self.input(m, Input::SetLiveTag(tag));
    }

    /// The operator sets an application's cluster-wide desired state through the peer of
    /// `m`, at a revision above that peer's, signed.
    pub fn set_app_desired(&mut self, m: M, name: &str, desired: smon_proto::DesiredState) {
        let Some(core) = self.machines[m].peer.as_ref() else {
            return;
        };
        let Some(mut app) = core.apps().iter().find(|a| a.name == name).cloned() else {
            return;
        };
        app.desired = desired;
        app.desired_rev = (app.desired_rev + 1).max(self.now);
        app.desired_sig = FlagSignatures::SIGNED.to_vec();
        self.input(m, Input::SetAppDesired(app));
    }

    pub fn livetag_of(&self, m: M) -> Option<LiveTag> {
        self.machines[m].peer.as_ref().map(Core::livetag)
    }

    pub fn rng(&mut self) -> &mut impl Rng {
        &mut self.rng
    }
}
