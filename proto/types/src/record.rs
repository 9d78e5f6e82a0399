//! The per-machine record that the cluster view is made of (Astrolabe-style: every peer holds
//! one per machine, kept by gossip, and answers cluster questions on its own).

use serde::{Deserialize, Serialize};

use crate::{AppStatus, LiveTag, Version};

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
}

impl PeerState {
    /// A peer process is up on the machine.
    pub fn is_up(self) -> bool {
        matches!(
            self,
            PeerState::Running | PeerState::Disabled | PeerState::Removed
        )
    }
}

/// One machine's record. `rev` orders versions of it: the owner bumps it on every change;
/// another peer may write an observation (`Deploying`, `Unreachable`) one rev above what it
/// knows, and the owner, when it hears of that, answers with a higher rev (as in SWIM).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineRecord {
    /// Index of the machine in the membership list of `membership_version`.
    pub machine: u32,
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
        }
    }
}
