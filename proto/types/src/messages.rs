//! The messages of the RPC services (the services themselves, tarpc traits, are in
//! `smon-proto`).
//!
//! The peer service starts from the paper's RPC table (000, Table 1) and adds what the
//! console needs. The epidemic subset is also available as one enum pair, [`PeerCall`] /
//! [`PeerReply`], which is the language of the peer's sans-IO core: the daemon maps it onto
//! the tarpc client (`smon_proto::InvokePeerCall`), the simulator delivers it in virtual time.

use serde::{Deserialize, Serialize};

use crate::{
    Aggregate, AppDecl, DesiredState, LiveTag, MachineId, MachineRecord, PackageManifest,
    PeerState, SignedLiveTag, SignedRekey, Version, ZoneIdx, ZoneRow,
};

/// Records and zone rows piggybacked on a ping or pong, valid for one membership version
/// (records name machines by their index in that list, rows name zones by their index in that
/// list's [`crate::ZoneTree`]). Records and rows are immutable values, shared rather than
/// copied between the views that hold them (`Arc` is invisible on the wire).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Gossip {
    pub membership_version: u64,
    /// The [`crate::Membership::digest`] of that list: records and rows are taken only by
    /// a peer whose list has the same version and digest.
    pub membership_digest: u64,
    pub records: Vec<std::sync::Arc<MachineRecord>>,
    pub rows: Vec<std::sync::Arc<ZoneRow>>,
    /// On a ping: what the sender holds of the tables it shares with the receiver, one byte
    /// per place (a fingerprint of the news of the entry there, 0 for none), root table
    /// first; the pong carries what differs. Empty on a pong.
    pub digest: Vec<u8>,
}

/// `ping(ver)` of the paper, carrying the state every exchange compares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    pub from: MachineId,
    pub version: Version,
    /// The sender's livetag with its signature: taken only if newer and signed.
    pub livetag: SignedLiveTag,
    /// The sender's newest key rotation: taken only if of a newer epoch and signed.
    pub rekey: SignedRekey,
    pub membership_version: u64,
    pub gossip: Gossip,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    /// Who answers: the answering peer's own machine. The pinger checks it is the machine it
    /// asked for; another machine's peer at that address means the asked one is not known to
    /// run (two entries share an address and port, or the lists disagree on ports).
    pub from: MachineId,
    pub version: Version,
    pub state: PeerState,
    pub livetag: SignedLiveTag,
    pub rekey: SignedRekey,
    pub membership_version: u64,
    pub gossip: Gossip,
}

/// A slice of a large object (a package); packages always travel in chunks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRequest {
    /// Chosen by the fetcher for the whole transfer: the server counts concurrent fetches by it.
    pub session: u64,
    pub version: Version,
    pub offset: u64,
    pub max_len: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// The manifest travels with the first chunk, so the receiver knows the size and hashes.
    pub manifest: Option<PackageManifest>,
    pub total_len: u64,
    pub offset: u64,
    pub data: Vec<u8>,
}

/// The largest chunk a peer serves.
pub const MAX_CHUNK: u32 = 1 << 20;

/// Why a request was refused; every variant is safe to show to an operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("busy: {0}")]
    Busy(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("denied: {0}")]
    Denied(String),
    #[error("rate limited")]
    RateLimited,
    /// A peer this one had to ask for the answer (a relay) did not answer.
    #[error("unreachable: {0}")]
    Unreachable(String),
}

/// `exchange_member(ver)`: the remote's list when it is newer than `ver`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberReply {
    pub version: u64,
    pub blob: Option<Vec<u8>>,
}

/// `exchange_app(app)`: an offer of an application by the peer that has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppOffer {
    /// Where to `retrieve_app` it from.
    pub from: MachineId,
    pub app: AppDecl,
}

/// The answer to `exchange_app`: whether the remote already has that application (or a newer one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppReply {
    Have,
    /// The remote lacks it and will fetch it with `retrieve_app`.
    Want,
    /// The remote has a newer declaration: the caller should take it.
    Newer(AppDecl),
}

/// What the console sees: the whole cluster's aggregate, the zone rows the answering peer
/// holds, and the records of its own leaf zone that changed since a sequence number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    /// Pass this back as `since` to get only the records that changed after this answer.
    pub seq: u64,
    pub answered_by: MachineId,
    pub membership_version: u64,
    pub machines: u32,
    pub livetag: LiveTag,
    /// The records the answering peer holds: those of its leaf zone (every machine's, in a
    /// cluster of one zone). The others' come from their zones ([`ZoneRecords`]).
    pub records: Vec<(MachineId, MachineRecord)>,
    /// The root aggregate: the whole cluster, exact once it is quiet.
    pub root: Aggregate,
    /// The answering peer's clock when it answered (ms since the epoch): ages are
    /// `now_ms - as_of_ms`.
    pub now_ms: u64,
    /// The root's `as_of_ms`: the oldest information the counts are made of.
    pub as_of_ms: u64,
    /// The zones whose rows the answering peer holds: every child of each zone on its path
    /// from the root down to its leaf zone.
    pub zones: Vec<ZoneInfo>,
    /// The root's sample of versions marked bad ([`Aggregate::bad_sample`]), each with the
    /// machine that marked it by name; `root.bad_versions` counts them all.
    pub bad_versions: Vec<(MachineId, crate::BadVersion)>,
    /// The answering peer's own counters since it started: filled in by the daemon (the core
    /// counts nothing), zeros where no daemon answers (the simulator).
    #[serde(default)]
    pub peer: PeerCounters,
    /// Per record of `records`, in order: how long ago (ms, the answering peer's clock) it
    /// took a newer version of it. Owners re-issue their records every few rounds, so a
    /// large age is a record nobody refreshed (its peer is gone or cut off).
    #[serde(default)]
    pub record_ages_ms: Vec<u64>,
}

/// A peer's own counters since its process started (they restart from zero with it, as
/// Prometheus counters do). Counted by the daemon around the core, never by the core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCounters {
    /// Bytes of epidemic calls ([`PeerCall`]) and their replies this peer sent, as
    /// [`wire_size`] measures them (payload, before framing and encryption).
    pub gossip_sent_bytes: u64,
    /// Bytes of epidemic calls and replies this peer received, measured the same way.
    pub gossip_received_bytes: u64,
    /// Logins (probes) to other machines this peer started.
    pub login_attempts: u64,
    /// Of those, the ones that failed (no login, or the probe failed).
    pub login_failures: u64,
    /// Deployments (package copy and installer) this peer started.
    pub deploy_attempts: u64,
    /// Of those, the ones that failed.
    pub deploy_failures: u64,
    /// What the peer's listener let in and turned away (`smon_proto::door`).
    pub door: DoorCounts,
}

/// What a server's door (`smon_proto::door`) did with the connections it accepted since the
/// process started: let in to a handshake, or refused at once, by reason; and how the
/// handshakes it let in ended. `open` is a gauge (connections now), the rest are counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoorCounts {
    /// Connections let in to a handshake.
    pub admitted: u64,
    /// Refused: the server held its maximum of connections.
    pub refused_full: u64,
    /// Refused: the server had its maximum of handshakes in flight.
    pub refused_handshakes: u64,
    /// Refused: the source address held its maximum of connections or handshakes in flight.
    pub refused_source: u64,
    /// Refused: the source address opened connections faster than its rate (failed
    /// handshakes count extra).
    pub refused_rate: u64,
    /// Handshakes that failed: a wrong cluster key, or bytes that are not a handshake.
    pub handshake_failures: u64,
    /// Handshakes closed for silence past the handshake timeout.
    pub handshake_timeouts: u64,
    /// Connections open now (handshaking or established).
    pub open: u64,
}

impl DoorCounts {
    /// Every connection refused at the door, whatever the reason.
    pub fn refused(&self) -> u64 {
        self.refused_full + self.refused_handshakes + self.refused_source + self.refused_rate
    }
}

impl ClusterView {
    /// A view with nothing in it, answered by `answered_by`.
    pub fn empty(answered_by: MachineId) -> Self {
        Self {
            seq: 0,
            answered_by,
            membership_version: 0,
            machines: 0,
            livetag: LiveTag::default(),
            records: Vec::new(),
            root: Aggregate::default(),
            now_ms: 0,
            as_of_ms: 0,
            zones: Vec::new(),
            peer: PeerCounters::default(),
            bad_versions: Vec::new(),
            record_ages_ms: Vec::new(),
        }
    }
}

/// A zone row as the console sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZoneInfo {
    pub zone: ZoneIdx,
    pub name: String,
    pub parent: Option<ZoneIdx>,
    pub depth: u32,
    /// A leaf zone: its peers hold its machines' records.
    pub leaf: bool,
    /// Computed by the answering peer (a zone it is in), not taken from gossip.
    pub own: bool,
    /// None: no row heard of yet.
    pub row: Option<(crate::RowOrder, Aggregate)>,
    /// Machines of the zone known to run a peer (the row's sample): where to ask for the
    /// zone's own view or records.
    pub peers: Vec<MachineId>,
}

/// Most records in one [`ZoneRecords`] page.
pub const ZONE_RECORDS_PAGE: u32 = 1000;

/// `zone_records`: a page of the records of a leaf zone, answered by a peer of that zone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZoneRecordsRequest {
    pub membership_version: u64,
    pub zone: ZoneIdx,
    /// Index of the first record (in the zone's order), and most records to return (at most
    /// [`ZONE_RECORDS_PAGE`]).
    pub offset: u32,
    pub limit: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZoneRecords {
    pub answered_by: MachineId,
    pub zone: ZoneIdx,
    /// Machines in the zone.
    pub total: u32,
    /// The answering peer's clock when it answered.
    pub now_ms: u64,
    /// The zone's machines from `offset` on that the peer has a record of.
    pub records: Vec<(MachineId, MachineRecord)>,
    /// Per record, as [`ClusterView::record_ages_ms`].
    #[serde(default)]
    pub record_ages_ms: Vec<u64>,
}

/// Operator actions sent by the console to any peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlAction {
    /// The livetag the operator signed ([`SignedLiveTag`]); refused unless newer than the
    /// peer's and signed by the cluster's release key.
    SetLiveTag { tag: SignedLiveTag },
    /// A key rotation the operator signed ([`SignedRekey`]); refused unless of a newer epoch
    /// than the peer's and signed by the cluster's release key.
    Rekey { rekey: SignedRekey },
    /// A membership blob; refused unless newer and signed by the release key as a whole.
    SetMembership { blob: Vec<u8> },
    /// A piece of a release package pushed by the console; the peer assembles the pieces,
    /// verifies the whole and upgrades itself (the others then follow it).
    PushRelease {
        offset: u64,
        total: u64,
        data: Vec<u8>,
    },
    /// A piece of an application package pushed by the console; the peer assembles the
    /// pieces, verifies the whole, installs it and spreads it to the others.
    PushApp {
        offset: u64,
        total: u64,
        data: Vec<u8>,
    },
    /// Set an application's cluster-wide desired state (it spreads to every peer), at
    /// revision `rev`, signed by the release key ([`crate::app_desired_signing_bytes`]).
    SetAppDesired {
        name: String,
        desired: DesiredState,
        rev: u64,
        signature: Vec<u8>,
    },
    /// Stop this peer (after livetag is off, or it will be restarted by others). With
    /// `stop_apps`, its applications first (as supervisord stops its programs); without, they
    /// keep running unsupervised, and a peer started later adopts them.
    Shutdown { stop_apps: bool },
}

/// An SSH user-auth request that a peer forwards to the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeRequest {
    /// The peer asking.
    pub requester: MachineId,
    /// The machine it is logging into.
    pub target: MachineId,
    /// The SSH user-auth data to sign.
    pub data: Vec<u8>,
}

/// The calls a peer's epidemic core makes to another peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerCall {
    Ping(Ping),
    ExchangeLivetag(SignedLiveTag),
    ExchangeMember(u64),
    ExchangeApp(AppOffer),
    RetrievePeer(ChunkRequest),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerReply {
    Pong(Pong),
    Livetag(SignedLiveTag),
    Member(MemberReply),
    App(AppReply),
    Chunk(Result<Chunk, Refusal>),
}

/// Bytes a value takes on the wire (the encoding the transport uses), for traffic accounting.
pub fn wire_size<T: Serialize>(value: &T) -> u64 {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .serialized_size(value)
        .expect("wire types serialize")
}
