//! The sans-IO epidemic core of a peer.
//!
//! One [`Core`] per peer. It is driven only by [`Input`]s and by the calls other peers make
//! ([`Core::on_call`]), and it asks for everything it wants done with [`Output`]s: messages to
//! send, logins, deployments, fetches, timers. Time and randomness are passed in. The daemon
//! (real sockets, SSH, files) and the simulator (virtual time) run this same code.

mod answers;
mod apps;
mod config;
mod control_state;
mod deploy;
mod fetch_slots;
mod io;
mod liveness;
mod other_cluster;
mod rekey;
mod signatures;
mod table;
mod target;
mod view;

use std::sync::Arc;

use rand::{Rng, RngExt};
use rustc_hash::FxHashMap;
use smon_proto_types::{
    AppDecl, AppOffer, AppReply, AppStatus, BadVersion, Chunk, ChunkRequest, ClusterView, Gossip,
    LiveTag, MachineId, MachineRecord, MemberReply, Membership, PeerCall, PeerReply, PeerState,
    Ping, Pong, Refusal, SignedLiveTag, SignedRekey, Version, ZONE_RECORDS_PAGE, ZoneInfo,
    ZoneRecords, ZoneRecordsRequest, note_bad,
};

pub use config::{CoreConfig, Strategy};
pub use fetch_slots::FetchSlots;
pub use io::*;
pub use signatures::{FlagSignatures, Refused, RefusedKind, Sender, SignatureCheck};
pub use target::Targeting;
pub use view::{View, supersedes};

/// What a peer keeps on disk: enough to come back as the same peer after a crash.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PersistentState {
    pub version: Version,
    pub livetag: LiveTag,
    /// The release key's signature of `livetag` (see [`SignedLiveTag`]), so that a restarted
    /// peer still serves its tag signed. Empty in a database from before signed control
    /// state: that tag is kept here (this peer adopted it), but no other peer takes it.
    #[serde(default)]
    pub livetag_signature: Vec<u8>,
    /// The last revs of this machine's own record, so a restarted peer never reuses one.
    pub record_rev: u64,
    #[serde(default)]
    pub record_news_rev: u64,
    /// Versions found unable to run or rejoin: never fetched again.
    pub bad_versions: Vec<Version>,
    /// The same versions with why and when, as this machine's record carries them (the
    /// newest few, see [`note_bad`]). Apart from `bad_versions` so that a peer of an older
    /// release, rolled back to, still reads this state (it ignores unknown fields).
    #[serde(default)]
    pub bad_marks: Vec<BadVersion>,
    pub apps: Vec<AppDecl>,
    /// The newest key rotation this peer took (see `rekey.rs`); epoch 0 in a database from
    /// before rotation.
    #[serde(default)]
    pub rekey: SignedRekey,
}

impl PersistentState {
    pub fn new(version: Version) -> Self {
        Self {
            version,
            livetag: LiveTag::default(),
            livetag_signature: Vec::new(),
            record_rev: 0,
            record_news_rev: 0,
            bad_versions: Vec::new(),
            bad_marks: Vec::new(),
            apps: Vec::new(),
            rekey: SignedRekey::default(),
        }
    }
}

/// Everything a peer starts from.
#[derive(Clone, Debug)]
pub struct Boot {
    pub me: MachineId,
    pub state: PersistentState,
    pub membership: Arc<Membership>,
    pub facts: LocalFacts,
    pub hint: Option<SpreadHint>,
    /// How control state's signatures are checked: the release key (daemon), a flag
    /// (simulator, [`FlagSignatures`]).
    pub signatures: Arc<dyn SignatureCheck>,
}

/// The deployment work of this round (one at a time, as in the paper's loop).
#[derive(Clone, Debug, PartialEq)]
enum Work {
    Pinging(u32),
    LoggingIn(u32),
    Deploying(u32),
    Restarting(u32),
    /// Killing a peer process that exists but does not answer (see `liveness.rs`).
    Killing(u32),
}

#[derive(Clone, Debug)]
enum Pending {
    Ping(u32),
    /// A ping for the gossip alone (a new peer joining its zone): no answer is no news.
    Join,
    LivetagPush,
    MemberPull,
    /// An application offered to this machine.
    AppOffer(u32),
}

#[derive(Clone, Debug)]
struct Fetch {
    version: Version,
}

pub struct Core {
    cfg: CoreConfig,
    signatures: Arc<dyn SignatureCheck>,
    me: MachineId,
    me_index: Option<u32>,
    state: PersistentState,
    view: View,
    own: MachineRecord,
    facts: LocalFacts,
    targeting: Targeting,
    /// Deployed just now, and pipelined (see `Core::new`): it starts deploying at once.
    fresh: bool,
    /// The current login went out without a ping because the view said no peer runs there.
    login_unpinged: bool,
    work: Option<Work>,
    /// Machines whose peer process exists but did not answer this peer's pings (by index
    /// in the current membership; cleared when it changes).
    suspects: FxHashMap<u32, liveness::Suspect>,
    /// Machines found holding another cluster's install, with what was logged about each
    /// (logged again only when that changes).
    other_clusters: FxHashMap<MachineId, String>,
    /// Calls in flight: what each is for, and the machine it was addressed to (by name: an
    /// index may name another machine once the membership changes).
    pending: FxHashMap<CallId, (Pending, MachineId)>,
    next_call: CallId,
    fetch: Option<Fetch>,
    slots: FetchSlots,
    member_pull_in_flight: bool,
    membership_blob: Option<Arc<Vec<u8>>>,
    livetag_push_left: u32,
    last_heard: Millis,
    app_turn: usize,
    exited: bool,
    /// When this peer last issued its own record (a new rev): re-issued every
    /// [`CoreConfig::heartbeat_rounds`] so that viewers can tell a record nobody refreshes.
    own_issued_at: Millis,
    /// The time of the input being handled.
    now: Millis,
}

impl Core {
    pub fn new(cfg: CoreConfig, boot: Boot, now: Millis) -> Self {
        let me_index = boot.membership.index_of(&boot.me);
        let view = View::new(boot.membership, me_index);
        let mut targeting = Targeting::new(
            me_index,
            boot.hint.or(me_index.map(|me| SpreadHint {
                origin: me,
                membership_version: view.membership().version,
            })),
            &view,
        );
        // Deployed at a place in the spreading tree (a hint) just now (its first start): its
        // children have no peer yet.
        let fresh = cfg.pipelined()
            && boot.hint.is_some()
            && boot
                .facts
                .first_deployed_ms
                .is_some_and(|t| now.saturating_sub(t) < cfg.interval_ms);
        if fresh {
            targeting.set_fresh();
        }
        let own = MachineRecord::empty(me_index.unwrap_or(u32::MAX));
        Self {
            cfg,
            signatures: boot.signatures,
            me: boot.me,
            me_index,
            own,
            state: boot.state,
            view,
            facts: boot.facts,
            targeting,
            fresh,
            login_unpinged: false,
            work: None,
            suspects: FxHashMap::default(),
            other_clusters: FxHashMap::default(),
            pending: FxHashMap::default(),
            next_call: 1,
            fetch: None,
            slots: FetchSlots::default(),
            member_pull_in_flight: false,
            membership_blob: None,
            livetag_push_left: 0,
            last_heard: now,
            app_turn: 0,
            exited: false,
            own_issued_at: now,
            now,
        }
    }

    /// Call once after `new`: publishes the peer's own record and asks for the first tick.
    pub fn start(&mut self, now: Millis, rng: &mut impl Rng, out: &mut Vec<Output>) {
        self.now = now;
        self.view.set_clock(now);
        self.own.rev = self.state.record_rev;
        self.own.news_rev = self.state.record_news_rev;
        self.refresh_own(out);
        self.view.flush(now, true);
        self.join(rng, out);
        let first = if self.cfg.synchronous_rounds {
            self.next_round_boundary(now)
        } else {
            // A random phase keeps peers from ticking in lockstep. Under `informed` a peer
            // deployed just now starts at once: every moment it waits delays its whole subtree.
            match self.cfg.strategy {
                Strategy::Smon => now + rng.random_range(0..self.cfg.interval_ms.max(1)),
                Strategy::Informed if self.fresh => now,
                Strategy::Informed => now + rng.random_range(0..(self.cfg.interval_ms / 5).max(1)),
            }
        };
        out.push(Output::SetTimer(first));
    }

    /// A peer that starts knows nothing of the cluster: it pings a peer of its own leaf zone
    /// at once, which gets its record to the zone, and its digest brings the zone's tables
    /// (Serf's and SWIM's join). The deployment pings go on as usual.
    fn join(&mut self, rng: &mut impl Rng, out: &mut Vec<Output>) {
        if self.me_index.is_none() || !self.state.livetag.enabled {
            return;
        }
        if let Some(target) = self.view.leaf_partner(rng) {
            let ping = self.make_ping(target, rng);
            self.call(target, PeerCall::Ping(ping), Pending::Join, out);
        }
    }

    pub fn me(&self) -> &MachineId {
        &self.me
    }

    pub fn version(&self) -> Version {
        self.state.version
    }

    pub fn livetag(&self) -> LiveTag {
        self.state.livetag
    }

    /// The livetag with its signature, as this peer sends it.
    pub fn signed_livetag(&self) -> SignedLiveTag {
        SignedLiveTag {
            tag: self.state.livetag,
            signature: self.state.livetag_signature.clone(),
        }
    }

    pub fn membership(&self) -> &Arc<Membership> {
        self.view.membership()
    }

    pub fn persistent(&self) -> &PersistentState {
        &self.state
    }

    pub fn view(&self) -> &View {
        &self.view
    }

    pub fn apps(&self) -> &[AppDecl] {
        &self.state.apps
    }

    pub fn is_removed(&self) -> bool {
        self.me_index.is_none()
    }

    pub fn has_exited(&self) -> bool {
        self.exited
    }

    pub fn fetch_slots_in_use(&self) -> usize {
        self.slots.in_use()
    }

    fn next_round_boundary(&self, now: Millis) -> Millis {
        let i = self.cfg.interval_ms.max(1);
        (now / i + 1) * i
    }

    fn n(&self) -> usize {
        self.view.membership().len()
    }

    fn call(&mut self, to: u32, call: PeerCall, pending: Pending, out: &mut Vec<Output>) {
        let Some(machine) = self.view.membership().get(to).cloned() else {
            return;
        };
        let id = self.next_call;
        self.next_call += 1;
        self.pending.insert(id, (pending, machine.clone()));
        out.push(Output::Call {
            id,
            to: machine,
            call,
        });
    }

    fn random_other(&self, rng: &mut impl Rng) -> Option<u32> {
        let n = self.n() as u32;
        let me = self.me_index?;
        if n < 2 {
            return None;
        }
        let pick = rng.random_range(0..n - 1);
        Some(if pick >= me { pick + 1 } else { pick })
    }

    // ---- the own record -------------------------------------------------------------------

    fn own_state(&self) -> PeerState {
        if self.me_index.is_none() {
            PeerState::Removed
        } else if self.state.livetag.enabled {
            PeerState::Running
        } else {
            PeerState::Disabled
        }
    }

    /// Rebuild the own record from the current state; publish it (new rev) if it changed.
    fn refresh_own(&mut self, out: &mut Vec<Output>) {
        let Some(me) = self.me_index else {
            return;
        };
        let mut fresh = MachineRecord {
            machine: me,
            news_rev: self.own.news_rev,
            rev: self.own.rev,
            state: self.own_state(),
            peer_version: Some(self.state.version),
            first_deployed_ms: self.facts.first_deployed_ms,
            overhead: self.facts.overhead,
            logins: self.facts.logins,
            livetag: self.state.livetag,
            apps: self.own.apps.clone(),
            load: self.facts.load,
            changed_ms: self.own.changed_ms,
            bad_versions: self.state.bad_marks.clone(),
            reason: None,
        };
        if fresh == self.own && self.view.get(me) == Some(&self.own) {
            return;
        }
        if fresh.is_news(&self.own) || self.own.changed_ms == 0 {
            fresh.news_rev = fresh.news_rev.max(self.state.record_news_rev) + 1;
            fresh.changed_ms = self.now;
        }
        fresh.rev = fresh.rev.max(self.state.record_rev) + 1;
        self.own_issued_at = self.now;
        self.state.record_rev = fresh.rev;
        self.state.record_news_rev = fresh.news_rev;
        self.own = fresh;
        self.view.store(Arc::new(self.own.clone()));
        self.persist(out);
    }

    /// Re-issue the own record (a new rev, no news) when the last one is a heartbeat old.
    fn heartbeat(&mut self, now: Millis, out: &mut Vec<Output>) {
        let every = self
            .cfg
            .heartbeat_rounds
            .saturating_mul(self.cfg.interval_ms);
        if self.me_index.is_none() || now.saturating_sub(self.own_issued_at) < every {
            return;
        }
        self.own.rev = self.own.rev.max(self.state.record_rev) + 1;
        self.state.record_rev = self.own.rev;
        self.own_issued_at = now;
        self.view.store(Arc::new(self.own.clone()));
        self.persist(out);
    }

    fn persist(&self, out: &mut Vec<Output>) {
        out.push(Output::Persist(self.state.clone()));
    }

    // ---- gossip --------------------------------------------------------------------------

    /// Gossip for one message to `partner` (None: a caller not in our list): the news of
    /// the tables the two share, within the byte budget.
    fn outgoing_gossip(
        &mut self,
        partner: Option<u32>,
        theirs: &[u8],
        rng: &mut impl Rng,
    ) -> Gossip {
        self.view.flush(self.now, false);
        let (records, rows) = self.view.select_gossip(
            partner,
            theirs,
            (self.cfg.pull_budget, self.cfg.gossip_budget),
            rng,
        );
        Gossip {
            membership_version: self.view.membership().version,
            membership_digest: self.view.membership().digest(),
            records,
            rows,
            digest: Vec::new(),
        }
    }

    fn absorb_gossip(&mut self, gossip: Gossip, out: &mut Vec<Output>) {
        // Another list (even of the same version) numbers machines otherwise: nothing of it
        // is taken (issue 15, kind 6).
        let theirs = (gossip.membership_version, gossip.membership_digest);
        if theirs != self.view.membership().order() {
            return;
        }
        let mut refute = false;
        let mut records = gossip.records;
        records.retain(|record| {
            if Some(record.machine) != self.me_index {
                return true;
            }
            // Somebody says something about us: answer with higher revs (SWIM-style).
            if record.order() >= self.own.order() && **record != self.own {
                self.own.rev = self.own.rev.max(record.rev);
                self.own.news_rev = self.own.news_rev.max(record.news_rev);
                self.state.record_rev = self.own.rev;
                self.state.record_news_rev = self.own.news_rev;
                refute = true;
            }
            false
        });
        self.view.absorb(records, gossip.rows);
        if refute {
            self.own.state = PeerState::Stopped; // force a republish
            self.refresh_own(out);
        }
    }

    /// Write a third-party observation about `machine` (one rev above what we know), if it
    /// is a machine of our leaf zone: the others are their zones' to observe.
    fn observe(&mut self, machine: u32, state: PeerState) {
        self.view.observe(machine, state, None, self.now);
    }

    /// [`Core::observe`], saying why (shown in that machine's row of every view).
    fn observe_because(&mut self, machine: u32, state: PeerState, reason: String) {
        let reason = Some(smon_proto_types::Reason::new(&reason));
        self.view.observe(machine, state, reason, self.now);
    }

    // ---- inputs ----------------------------------------------------------------------------

    pub fn handle(&mut self, now: Millis, input: Input, rng: &mut impl Rng, out: &mut Vec<Output>) {
        if self.exited {
            return;
        }
        self.now = now;
        self.view.set_clock(now);
        let tick = matches!(input, Input::Tick);
        self.handle_input(now, input, rng, out);
        // News moves up the zones at once; figures, and the age of our own rows, each round.
        self.view.flush(now, tick);
    }

    /// [`Core::handle`] for an operator's input (`SetLiveTag`, `SetMembership`,
    /// `SetAppDesired`): `Err` when the core refused it (not signed by the release key, or
    /// not newer than what this peer holds); nothing changed then.
    pub fn handle_operator(
        &mut self,
        now: Millis,
        input: Input,
        rng: &mut impl Rng,
        out: &mut Vec<Output>,
    ) -> Result<(), Refused> {
        let mark = out.len();
        self.handle(now, input, rng, out);
        match out[mark..].iter().find_map(|o| match o {
            Output::Refused(r) if r.from == Sender::Operator => Some(r.clone()),
            _ => None,
        }) {
            Some(refused) => Err(refused),
            None => Ok(()),
        }
    }

    fn handle_input(
        &mut self,
        now: Millis,
        input: Input,
        rng: &mut impl Rng,
        out: &mut Vec<Output>,
    ) {
        match input {
            Input::Tick => self.tick(now, rng, out),
            Input::Reply { call, result } => self.on_reply(now, call, result, rng, out),
            Input::LoginDone { machine, outcome } => {
                if let Some(index) = self.on_login(now, machine, outcome, rng, out) {
                    self.keep_deploying(index, false, now, rng, out);
                }
            }
            Input::DeployDone { machine, .. } | Input::RestartDone { machine, .. } => {
                self.on_work_done(&machine, now, rng, out)
            }
            Input::KillDone { machine, ok } => self.on_kill_done(machine, ok, out),
            Input::FetchDone { version, ok } => self.on_fetch_done(version, ok, out),
            Input::AppFetched { app, ok } => {
                if ok {
                    self.adopt_app(app, out);
                }
            }
            Input::AppStates(states) => self.set_app_states(states, out),
            Input::LocalFacts(facts) => {
                self.facts = facts;
                self.refresh_own(out);
            }
            Input::SetLiveTag(tag) => self.set_livetag(tag, out),
            Input::SetRekey(rekey) => self.set_rekey(rekey, out),
            Input::SetMembership(membership) => {
                let _ = self.apply_membership(Sender::Operator, membership, out);
            }
            Input::OfferRelease { version, from } => {
                self.consider_version(&from, version, rng, out)
            }
            Input::SetAppDesired(app) => self.set_app_desired(app, out),
            Input::AppInstalledLocally(app) => self.adopt_app(app, out),
            Input::MarkBad(mark) => self.mark_bad(mark, out),
        }
    }

    /// A deployment or restart this peer ran ended: note it, and go on to the next machine.
    fn on_work_done(
        &mut self,
        machine: &MachineId,
        now: Millis,
        rng: &mut impl Rng,
        out: &mut Vec<Output>,
    ) {
        let Some(index) = self.view.membership().index_of(machine) else {
            return;
        };
        self.targeting.note_attempt(index, now);
        if matches!(self.work, Some(Work::Deploying(m) | Work::Restarting(m)) if m == index) {
            self.work = None;
            self.keep_deploying(index, true, now, rng, out);
        }
    }

    fn exit(&mut self, reason: ExitReason, out: &mut Vec<Output>) {
        self.exited = true;
        out.push(Output::Exit(reason));
    }

    fn make_ping(&mut self, target: u32, rng: &mut impl Rng) -> Ping {
        Ping {
            from: self.me.clone(),
            version: self.state.version,
            livetag: self.signed_livetag(),
            rekey: self.state.rekey.clone(),
            membership_version: self.view.membership().version,
            gossip: Gossip {
                digest: self.view.digest(Some(target)),
                ..self.outgoing_gossip(Some(target), &[], rng)
            },
        }
    }

    fn on_reply(
        &mut self,
        now: Millis,
        call: CallId,
        result: Result<PeerReply, CallFailure>,
        rng: &mut impl Rng,
        out: &mut Vec<Output>,
    ) {
        let Some((pending, asked)) = self.pending.remove(&call) else {
            return;
        };
        if result.is_ok() {
            self.last_heard = now;
        }
        match (pending, result) {
            (Pending::Ping(target), Ok(PeerReply::Pong(pong))) => {
                self.finish_work(target);
                self.clear_suspect(target);
                self.check_answerer(asked, &pong, out);
                self.on_pong(pong, rng, out);
            }
            // Our own failure to call is no sign of the target's: try again another round.
            (Pending::Ping(target), Err(CallFailure::NotSent)) => self.finish_work(target),
            (Pending::Ping(target), _) => {
                let still_ours = self.work == Some(Work::Pinging(target));
                if still_ours && self.state.livetag.enabled && self.me_index.is_some() {
                    self.work = Some(Work::LoggingIn(target));
                    if let Some(machine) = self.view.membership().get(target).cloned() {
                        out.push(Output::Login(machine));
                    }
                } else {
                    if still_ours && !self.state.livetag.enabled {
                        // Monitoring only: say what we saw, without logging in.
                        self.observe(target, PeerState::Unreachable);
                    }
                    self.finish_work(target);
                }
            }
            (Pending::Join, Ok(PeerReply::Pong(pong))) => {
                self.check_answerer(asked, &pong, out);
                self.on_pong(pong, rng, out);
            }
            (Pending::LivetagPush, Ok(PeerReply::Livetag(tag))) => {
                let _ = self.absorb_livetag(Sender::Peer(asked), tag, out);
            }
            (Pending::MemberPull, result) => {
                self.member_pull_in_flight = false;
                if let Ok(PeerReply::Member(MemberReply {
                    blob: Some(blob), ..
                })) = result
                    && let Ok(membership) = Membership::decode(&blob)
                {
                    let _ = self.apply_membership(Sender::Peer(asked), Arc::new(membership), out);
                }
            }
            (Pending::AppOffer(target), Ok(PeerReply::App(AppReply::Newer(app)))) => {
                // The desired state is taken at once (if signed); a newer package is fetched
                // from there.
                let Some(app) = self.vetted_app(Sender::Peer(asked), app, out) else {
                    return;
                };
                self.adopt_app_desired(&app, out);
                let newer_package = self
                    .state
                    .apps
                    .iter()
                    .find(|a| a.name == app.name)
                    .is_some_and(|mine| app.version > mine.version);
                if newer_package
                    && !self.exited
                    && let Some(from) = self.view.membership().get(target).cloned()
                {
                    out.push(Output::FetchApp { from, app });
                }
            }
            _ => {}
        }
    }

    fn finish_work(&mut self, target: u32) {
        if matches!(&self.work, Some(Work::Pinging(m) | Work::LoggingIn(m)) if *m == target) {
            self.work = None;
        }
    }

    /// A pong from another machine's peer than the one pinged (two entries share an address
    /// and port): `asked` is a Conflict, said loudly, and never taken as deployed. Every
    /// ping's pong is checked, the deployment loop's and a joining peer's alike, against the
    /// machine the ping was addressed to by name.
    fn check_answerer(&mut self, asked: MachineId, pong: &Pong, out: &mut Vec<Output>) {
        if asked == pong.from {
            return;
        }
        if let Some(index) = self.view.membership().index_of(&asked) {
            let why = format!("its address is answered by the peer of {}", pong.from);
            self.observe_because(index, PeerState::Conflict, why);
        }
        out.push(Output::Conflict {
            asked,
            answered_by: pong.from.clone(),
        });
    }

    /// What a pong carries: taken whoever answered; a newer version or list is asked of the
    /// peer that answered (`pong.from`), not of the machine pinged.
    fn on_pong(&mut self, pong: Pong, rng: &mut impl Rng, out: &mut Vec<Output>) {
        let list = (pong.membership_version, pong.gossip.membership_digest);
        let _ = self.absorb_livetag(Sender::Peer(pong.from.clone()), pong.livetag, out);
        let _ = self.absorb_rekey(Sender::Peer(pong.from.clone()), pong.rekey, out);
        self.absorb_gossip(pong.gossip, out);
        self.consider_version(&pong.from, pong.version, rng, out);
        self.consider_membership(&pong.from, list, out);
    }

    // ---- applications ----------------------------------------------------------------------

    // ---- calls from other peers --------------------------------------------------------------

    // ---- the cluster view ------------------------------------------------------------------
}
