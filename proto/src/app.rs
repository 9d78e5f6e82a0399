//! Application types: the spec a package carries, the desired state an operator sets, and the
//! observed state a peer reports.

use serde::{Deserialize, Serialize};

use crate::Version;

/// What the operator wants on a machine (paper 001 §II-D).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DesiredState {
    /// Restarted whenever it stops.
    Online,
    /// Stopped, and kept stopped.
    Offline,
    /// Started once, then left alone.
    Ignore,
}

/// What the supervising peer observes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AppState {
    Installing,
    Starting,
    Running,
    Stopped,
    /// Died and waits out its restart backoff.
    Backoff,
    /// Died too often too quickly; left stopped until the operator acts.
    Failed,
}

/// The application spec (`app.toml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSpec {
    pub name: String,
    pub version: Version,
    pub start: String,
    pub stop: String,
    pub restart: String,
    pub status: Option<String>,
    pub default_state: DesiredState,
    /// `host:port` that receives a line per state change.
    pub report: Option<String>,
}

/// An application as the epidemic layer knows it: enough to decide whether to fetch it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AppDecl {
    pub name: String,
    pub version: Version,
    /// The cluster-wide desired state, with its own version so the newest setting wins.
    pub desired: DesiredState,
    pub desired_rev: u64,
}

impl AppDecl {
    /// True when `other` is newer (package version first, then desired-state revision).
    pub fn is_superseded_by(&self, other: &AppDecl) -> bool {
        (other.version, other.desired_rev) > (self.version, self.desired_rev)
    }
}

/// One application on one machine, as reported in the cluster view.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AppStatus {
    pub name: String,
    pub version: Version,
    pub desired: DesiredState,
    pub state: AppState,
    pub restarts: u32,
}
