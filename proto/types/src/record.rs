//! The per-machine record that the cluster view is made of (Astrolabe-style: every peer holds
//! one per machine, kept by gossip, and answers cluster questions on its own).

use serde::{Deserialize, Serialize};

use crate::{AppStatus, BadVersion, LiveTag, Reason, Version};

/// A peer re-issues its own record at least every this many rounds (the default of the
/// core's `heartbeat_rounds`), so that a record nobody refreshes grows old in every view.
pub const HEARTBEAT_ROUNDS: u64 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PeerState {
    /// A peer runs and manages.
    Running,
    /// A peer runs but livetag is off: it only answers.
    Disabled,
    /// A peer runs but its machine was removed from the membership: it only answers.
    Removed,
    /// Somebody is installing a peer there.
    Deploying,
    /// Pinged without answer and could not be logged into.
    Unreachable,
    /// The peer was stopped on purpose.
    Stopped,
    /// Pinged at its address, another machine's peer answered: this machine is not known to
    /// run a peer, and a deployer cannot tell (two entries name one address and port, or
    /// peers disagree on ports). Reported, not deployed over.
    Conflict,
    /// The machine's peer process exists (a login finds it by its pid file) but has not
    /// answered pings for several rounds in a row (stopped, hung, or cut off from the network
    /// of peers): not counted as running, and killed and restarted after a grace period
    /// (issue 15, kind 1; SWIM's "suspected", with a login to tell a silent process from a
    /// missing one).
    Unresponsive,
}

impl PeerState {
    /// Every state, in the order of the counts of an [`crate::Aggregate`].
    pub const ALL: [PeerState; 8] = [
        PeerState::Running,
        PeerState::Disabled,
        PeerState::Removed,
        PeerState::Deploying,
        PeerState::Unreachable,
        PeerState::Stopped,
        PeerState::Conflict,
        PeerState::Unresponsive,
    ];

    /// This state's place in [`PeerState::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The state's name as the console prints it (`running`, `unreachable`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Running => "running",
            PeerState::Disabled => "disabled",
            PeerState::Removed => "removed",
            PeerState::Deploying => "deploying",
            PeerState::Unreachable => "unreachable",
            PeerState::Stopped => "stopped",
            PeerState::Conflict => "conflict",
            PeerState::Unresponsive => "unresponsive",
        }
    }

    /// A peer process is up on the machine.
    pub fn is_up(self) -> bool {
        matches!(
            self,
            PeerState::Running | PeerState::Disabled | PeerState::Removed
        )
    }
}

/// One machine's record. [`MachineRecord::order`] orders versions of it: the owner bumps `rev`
/// on every change and `news_rev` on every change of what the machine *is* (state, version,
/// livetag, applications, versions marked bad); another peer may write an observation (`Deploying`, `Unreachable`)
/// one rev above what it knows, and the owner, when it hears of that, answers with higher
/// revs (as in SWIM).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineRecord {
    /// Index of the machine in the membership list of `membership_version`.
    pub machine: u32,
    /// Bumped on news only (see above): news outranks any number of new load figures.
    pub news_rev: u64,
    pub rev: u64,
    pub state: PeerState,
    pub peer_version: Option<Version>,
    /// Milliseconds since the Unix epoch (virtual time in the simulator).
    pub first_deployed_ms: Option<u64>,
    /// Packages copied to the machine before its peer ran (the paper's Table II).
    pub overhead: u32,
    pub logins: u32,
    pub livetag: LiveTag,
    pub apps: Vec<AppStatus>,
    /// One-minute load average × 100.
    pub load: u16,
    /// When the news of this record last changed, in milliseconds since the Unix epoch by the
    /// writer's clock (virtual in the simulator); 0 if unknown. For display only.
    pub changed_ms: u64,
    /// Versions this machine's peer found unable to run and rolled back from, sorted by
    /// version, at most [`crate::MAX_BAD_VERSIONS`] (see [`crate::note_bad`]).
    pub bad_versions: Vec<BadVersion>,
    /// Why the machine is in its state, when that needs saying: written with the state by
    /// the peer that observed it (a login that failed and how, a peer process that does
    /// not answer); none from the owner of a running peer. Bounded, checked on decode.
    pub reason: Option<Reason>,
}

impl MachineRecord {
    pub fn empty(machine: u32) -> Self {
        Self {
            machine,
            rev: 0,
            state: PeerState::Unreachable,
            peer_version: None,
            first_deployed_ms: None,
            overhead: 0,
            logins: 0,
            livetag: LiveTag::default(),
            apps: Vec::new(),
            load: 0,
            news_rev: 0,
            changed_ms: 0,
            bad_versions: Vec::new(),
            reason: None,
        }
    }

    /// The total order of versions of a machine's record, newest greatest: news first, then
    /// any change, then [`MachineRecord::tiebreak`], so that every peer keeps the same one.
    pub fn order(&self) -> (u64, u64, u64) {
        (self.news_rev, self.rev, self.tiebreak())
    }

    /// What orders two versions of equal revs: the owner's word that a peer is up first, then
    /// the state and the time an observer wrote. Only observers write at revs the owner did
    /// not (one above a version they hold), and they change nothing but the state and the
    /// time, so versions of equal revs and equal tiebreaks are equal. 32 bits, so that the
    /// sum over the 2^32 machines a membership can have fits in a u64 (aggregate rows add
    /// them up).
    pub fn tiebreak(&self) -> u64 {
        (u64::from(self.state.is_up()) << 31)
            | ((self.state.index() as u64) << 28)
            | (self.changed_ms & 0x0fff_ffff)
    }

    /// The news of this version (what changes when the machine's state, version, livetag or
    /// applications do), apart from its figures.
    pub fn news_key(&self) -> (u64, u64) {
        (self.news_rev, self.tiebreak())
    }

    /// Does `self` tell something other than new figures (load, counters) about the machine
    /// than `old`?
    pub fn is_news(&self, old: &MachineRecord) -> bool {
        self.state != old.state
            || self.peer_version != old.peer_version
            || self.livetag != old.livetag
            || self.apps != old.apps
            || self.first_deployed_ms != old.first_deployed_ms
            || self.bad_versions != old.bad_versions
            || self.reason != old.reason
    }
}
