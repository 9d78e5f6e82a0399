//! What goes into the core and what comes out of it. The core never performs IO: it asks for
//! it with an [`Output`] and hears how it went with an [`Input`].

use std::sync::Arc;

use smon_proto_types::{
    AppDecl, AppStatus, BadVersion, MachineId, Membership, PeerCall, PeerReply, SignedLiveTag,
    Version,
};

/// Milliseconds: since the Unix epoch in the daemon, virtual in the simulator.
pub type Millis = u64;

/// Correlates a call with its reply.
pub type CallId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallFailure {
    /// No answer in time, or the connection failed: the peer is presumed not running.
    Unreachable,
    /// Answered, but refused.
    Refused,
    /// Never sent: this peer could not open a connection (its own descriptors or memory ran
    /// out). Says nothing about the callee, which is not to be judged on it (issue 15, kind 4).
    NotSent,
}

/// What logging in to a machine found there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Could not log in (network, authentication, agent down), or the probe's script failed
    /// there (a login shell that does not run it): why, in a few words.
    Failed(smon_proto_types::Reason),
    /// Not tried: this peer could not start the login (its own descriptors or memory ran
    /// out). Says nothing about the machine (issue 15, kind 4).
    NotTried,
    Probed(Probe),
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Probe {
    pub installed: Option<Version>,
    pub running: bool,
    /// The running peer's process id, as the probe found it (its pid file, checked in
    /// `/proc`): what [`Output::Kill`] names, so that only that process is killed.
    pub pid: Option<u32>,
    /// Another installer holds the install lock right now.
    pub install_in_progress: bool,
    /// The install there (running or not) is another cluster's (issue 15, kind 11): what is
    /// there and what to do, in one line. Nothing is restarted, killed or deployed over
    /// there, unless this cluster takes such machines over ([`crate::CoreConfig::take_over`]).
    pub other_cluster: Option<OtherInstall>,
    /// The epoch of the cluster key the install holds (its `cluster` file; `None`: not
    /// said, epoch 0). An install left on an older epoch than the newest rotation, once its
    /// grace ended, is deployed over instead of restarted (issue 14, item 2).
    pub key_epoch: Option<u32>,
}

/// Another cluster's install found by a probe (issue 15, kind 11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtherInstall {
    /// What it is, short enough for a row's reason ([`smon_proto_types::MAX_REASON_BYTES`]).
    pub brief: smon_proto_types::Reason,
    /// What is there and what to do, in one line: the installer's own refusal.
    pub message: String,
}

/// Whatever the machine knows of itself that the core reports in its record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocalFacts {
    pub overhead: u32,
    pub logins: u32,
    pub load: u16,
    pub first_deployed_ms: Option<Millis>,
}

/// A hint the deployer passes to the peer it installs: where the spreading tree is rooted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpreadHint {
    pub origin: u32,
    pub membership_version: u64,
}

#[derive(Clone, Debug)]
pub enum Input {
    /// The timer the core asked for fired.
    Tick,
    Reply {
        call: CallId,
        result: Result<PeerReply, CallFailure>,
    },
    LoginDone {
        machine: MachineId,
        outcome: LoginOutcome,
    },
    /// The package was copied and its installer started (or the attempt failed).
    DeployDone {
        machine: MachineId,
        ok: bool,
    },
    RestartDone {
        machine: MachineId,
        ok: bool,
    },
    /// The kill asked for by [`Output::Kill`] ended: `ok` when the process is gone.
    KillDone {
        machine: MachineId,
        ok: bool,
    },
    /// A package fetched from another peer was verified and stored (or not).
    FetchDone {
        version: Version,
        ok: bool,
    },
    /// An application package was fetched and installed (or not).
    AppFetched {
        app: AppDecl,
        ok: bool,
    },
    /// The local supervisor's view of the applications changed.
    AppStates(Vec<AppStatus>),
    LocalFacts(LocalFacts),
    /// Operator actions (from the console, through the daemon), each signed by the release
    /// key ([`crate::Core::handle_operator`] says whether it was refused).
    SetLiveTag(SignedLiveTag),
    /// A key rotation (`smon-console rekey`), signed; refused unless of a newer epoch.
    SetRekey(smon_proto_types::SignedRekey),
    /// A membership list signed as a whole.
    SetMembership(Arc<Membership>),
    /// A newer release is available at `from` (the console mimics a peer).
    OfferRelease {
        version: Version,
        from: MachineId,
    },
    /// An application's cluster-wide desired state: `name`, `desired`, `desired_rev` and
    /// `desired_sig` are the operator's (the package version is ignored).
    SetAppDesired(AppDecl),
    /// An application package installed locally by the operator.
    AppInstalledLocally(AppDecl),
    /// A version was found unable to run or rejoin on this machine: never fetch it again,
    /// and tell the cluster (this machine's record carries the mark).
    MarkBad(BadVersion),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Call in at this time.
    SetTimer(Millis),
    Call {
        id: CallId,
        to: MachineId,
        call: PeerCall,
    },
    /// Log in to the machine and probe it.
    Login(MachineId),
    /// Copy the installation package and start the installer (in the same login session).
    Deploy {
        machine: MachineId,
        hint: Option<SpreadHint>,
        /// The probe found another cluster's install there, to be taken over
        /// ([`crate::CoreConfig::take_over`]); otherwise it found none installed, and the
        /// deployer stops if one was installed since.
        over_other_cluster: bool,
        /// The probe found this cluster's install there, left on an older cluster key after
        /// a rotation's grace (issue 14, item 2): deployed over, whatever is installed.
        over_stale_key: bool,
    },
    /// Start the installed-but-stopped peer.
    Restart(MachineId),
    /// `machine`'s peer process exists but has not answered `silent_pings` pings in a row
    /// over `silent_for_ms`: it is now recorded [`smon_proto_types::PeerState::Unresponsive`].
    /// Log it (a kill follows after the grace period).
    Unresponsive {
        machine: MachineId,
        silent_pings: u32,
        silent_for_ms: u64,
    },
    /// Log in to `machine` and kill (SIGKILL) its peer process `pid`, if the pid file still
    /// names that process and it is a peer; answer with [`Input::KillDone`]. The process has
    /// not answered for `silent_for_ms`.
    Kill {
        machine: MachineId,
        pid: u32,
        silent_for_ms: u64,
    },
    /// `machine` holds another cluster's install (`reason`: what is there and what to do,
    /// the installer's own message): log it. Nothing is done there. Given once per machine
    /// and reason, not every round (issue 15, kind 11).
    OtherCluster {
        machine: MachineId,
        message: String,
    },
    /// Fetch the release `version` from the peer on `from`, in chunks.
    FetchRelease {
        from: MachineId,
        version: Version,
        session: u64,
    },
    /// Switch to the fetched version and restart into it.
    Upgrade(Version),
    FetchApp {
        from: MachineId,
        app: AppDecl,
    },
    /// The cluster-wide desired state of an app changed: apply it locally.
    AppDesired(AppDecl),
    /// A ping of `asked` was answered by the peer of `answered_by`, another machine: log it
    /// loudly. `asked` is recorded as `PeerState::Conflict` and not deployed over.
    Conflict {
        asked: MachineId,
        answered_by: MachineId,
    },
    /// The membership list changed: store it.
    MembershipChanged(Arc<Membership>),
    /// Persistent state changed: store it (it must survive a kill -9).
    Persist(crate::PersistentState),
    /// Stop this peer process.
    Exit(ExitReason),
    /// Control state was refused for its signature (or, from the console, for being stale):
    /// not adopted, not spread. The daemon logs it as one line, the simulator counts it.
    Refused(crate::Refused),
    /// A newer key rotation was taken: unseal its key with the current one, store the
    /// keyring and use it for handshakes from now on (the daemon; the simulator counts it).
    Rekey(smon_proto_types::SignedRekey),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    RemovedFromMembership,
    DisabledAndSilent,
}
