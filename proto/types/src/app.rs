//! Application types: the spec a package carries (`app.toml`, parsed in
//! [`crate::app_package`]), the desired state an operator sets, and the observed state a peer
//! reports.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Version;

/// What the operator wants on a machine (paper 001 §II-D).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    /// Restarted whenever it stops.
    Online,
    /// Stopped, and kept stopped.
    Offline,
    /// Started once, then left alone.
    Ignore,
}

impl DesiredState {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Online => "online",
            DesiredState::Offline => "offline",
            DesiredState::Ignore => "ignore",
        }
    }
}

impl fmt::Display for DesiredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DesiredState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "online" => Ok(DesiredState::Online),
            "offline" => Ok(DesiredState::Offline),
            "ignore" => Ok(DesiredState::Ignore),
            other => Err(format!(
                "{other:?} is not a state: online, offline or ignore"
            )),
        }
    }
}

/// What the supervising peer observes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppState {
    Installing,
    /// Started; not yet up long enough to count as running.
    Starting,
    Running,
    Stopped,
    /// Died and waits out its restart backoff.
    Backoff,
    /// Died too often too quickly; left stopped until the operator acts.
    Failed,
}

impl AppState {
    /// Every state, in the order of the counts of an [`crate::AppCount`].
    pub const ALL: [AppState; 6] = [
        AppState::Installing,
        AppState::Starting,
        AppState::Running,
        AppState::Stopped,
        AppState::Backoff,
        AppState::Failed,
    ];

    /// This state's place in [`AppState::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Installing => "installing",
            AppState::Starting => "starting",
            AppState::Running => "running",
            AppState::Stopped => "stopped",
            AppState::Backoff => "backoff",
            AppState::Failed => "failed",
        }
    }
}

impl fmt::Display for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Crash-loop protection, as in systemd and Kubernetes: a death is "quick" when the run lasted
/// less than `reset_after_ms`; after each quick death the restart waits `initial_ms`, doubled
/// each time up to `max_ms`; a run of `reset_after_ms` or more resets the count; after
/// `fail_after` quick deaths in a row the application is `Failed` and left stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffPolicy {
    pub initial_ms: u64,
    pub max_ms: u64,
    pub reset_after_ms: u64,
    pub fail_after: u32,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial_ms: 1_000,
            max_ms: 60_000,
            reset_after_ms: 30_000,
            fail_after: 5,
        }
    }
}

/// How big an application's log may grow: the file is rotated when a write would take it
/// past `max_bytes` (`app.log` becomes `app.log.1`, `.1` becomes `.2`, … up to `backups`
/// files; the oldest is dropped), so the log takes at most `max_bytes × (backups + 1)` bytes.
/// `[log]` in `app.toml`; the peer applies the same rule to its own `peer.log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBound {
    /// Bytes per file; at least [`LogBound::MIN_BYTES`].
    pub max_bytes: u64,
    /// Rotated files kept beside the live one (0: the live file is cut short instead).
    pub backups: u32,
}

impl LogBound {
    /// The smallest `max_bytes` accepted (one read of the application's output).
    pub const MIN_BYTES: u64 = 64 << 10;
    /// The largest `max_bytes` accepted.
    pub const MAX_BYTES: u64 = 1 << 30;
    /// The most backups accepted.
    pub const MAX_BACKUPS: u32 = 100;

    /// The most bytes the log and its backups take together.
    pub fn total_bytes(&self) -> u64 {
        self.max_bytes * (u64::from(self.backups) + 1)
    }
}

impl Default for LogBound {
    /// 8 MiB per file, 3 backups: at most 32 MiB.
    fn default() -> Self {
        Self {
            max_bytes: 8 << 20,
            backups: 3,
        }
    }
}

/// The application spec: `app.toml`, parsed and checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSpec {
    pub name: String,
    pub version: Version,
    /// Runs the application, in the foreground (`sh -c`, in the application's directory, in
    /// a process group of its own: the application is that group).
    pub start: String,
    /// Asks the application to stop (it has `stop_timeout_ms`, then its group gets SIGTERM,
    /// then SIGKILL). None: SIGTERM at once.
    pub stop: Option<String>,
    /// Runs the application again after it stopped (default: `start`).
    pub restart: Option<String>,
    /// Exit status 0 while the application is healthy; run every `status_interval_ms`.
    pub status: Option<String>,
    pub default_state: DesiredState,
    /// `host:port` that receives a line of JSON per state change.
    pub report: Option<String>,
    /// Extra environment variables of the commands.
    pub env: Vec<(String, String)>,
    pub stop_timeout_ms: u64,
    pub status_interval_ms: u64,
    pub backoff: BackoffPolicy,
    /// How big its log (`app.log`, written by the peer from the application's output) grows.
    #[serde(default)]
    pub log: LogBound,
}

impl AppSpec {
    /// The command that runs the application again after it stopped.
    pub fn restart_command(&self) -> &str {
        self.restart.as_deref().unwrap_or(&self.start)
    }
}

/// An application as the epidemic layer knows it: enough to decide whether to fetch it.
///
/// Two registers merged independently, newest wins: the package `version`, and the
/// cluster-wide `desired` state with its revision `desired_rev`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AppDecl {
    pub name: String,
    pub version: Version,
    /// The cluster-wide desired state, with its own version so the newest setting wins.
    pub desired: DesiredState,
    pub desired_rev: u64,
    /// The release key's signature of the desired state ([`crate::app_desired_signing_bytes`]
    /// of the name, `desired` and `desired_rev`); empty for revision 0, the package's own
    /// `default_state` (signed with the package). A peer refuses a newer desired state whose
    /// signature does not verify.
    #[serde(default)]
    pub desired_sig: Vec<u8>,
}

impl AppDecl {
    /// What [`AppDecl::desired_sig`] signs.
    pub fn desired_signing_bytes(&self) -> Vec<u8> {
        crate::app_desired_signing_bytes(&self.name, self.desired, self.desired_rev)
    }

    /// True when `other` is newer (package version first, then desired state).
    pub fn is_superseded_by(&self, other: &AppDecl) -> bool {
        (other.version, other.desired_order()) > (self.version, self.desired_order())
    }

    /// The total order of desired-state settings, newest greatest: the revision, then, at
    /// equal revisions (two operators at once), `offline` above `ignore` above `online`, as
    /// a disabled livetag wins a tie, so that every peer keeps the same one (issue 15, kind 6).
    pub fn desired_order(&self) -> (u64, u8) {
        let rank = match self.desired {
            DesiredState::Online => 0,
            DesiredState::Ignore => 1,
            DesiredState::Offline => 2,
        };
        (self.desired_rev, rank)
    }

    /// Merge `other` into `self`: the newer version and the newer desired state, each on its
    /// own. Returns whether `self` changed.
    pub fn merge(&mut self, other: &AppDecl) -> bool {
        let mut changed = false;
        if other.version > self.version {
            self.version = other.version;
            changed = true;
        }
        if other.desired_order() > self.desired_order() {
            self.take_desired_of(other);
            changed = true;
        }
        changed
    }

    /// Take `other`'s desired state whole: the state, its revision and its signature, which
    /// only verify together (one without the others is a refused setting at the next peer).
    pub fn take_desired_of(&mut self, other: &AppDecl) {
        self.desired = other.desired;
        self.desired_rev = other.desired_rev;
        self.desired_sig.clone_from(&other.desired_sig);
    }
}

/// One application on one machine, as reported in the cluster view.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AppStatus {
    pub name: String,
    pub version: Version,
    /// The desired state in force on this machine (a per-machine setting, or the cluster's).
    pub desired: DesiredState,
    pub state: AppState,
    /// Restarts after the application stopped by itself.
    pub restarts: u32,
    /// Why the application is in its state, when that needs saying (it cannot be tracked:
    /// processes of it would not stop). Bounded, checked on decode.
    pub reason: Option<crate::Reason>,
}

/// The report protocol: when an application names a `report` address, its peer opens a TCP
/// connection to it and writes one line of JSON (UTF-8, `\n`-terminated) per state change of
/// the application on its machine, keeping the connection open for the next lines
/// (reconnecting when it breaks). A line that cannot be delivered within a few seconds is
/// dropped; at most 64 wait. Example:
///
/// ```json
/// {"machine":"local:m001","app":"hello-http","version":"1.0.0","desired":"online","state":"running","restarts":0,"pid":4242,"at_ms":1767225600000}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppReport {
    pub machine: String,
    pub app: String,
    pub version: String,
    pub desired: DesiredState,
    pub state: AppState,
    pub restarts: u32,
    /// The application's process group while it runs: the pid of its runner (`smon-peer
    /// app-run`, the group's leader, whose descendants the application's processes are).
    pub pid: Option<i32>,
    /// When the change was seen, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

impl AppReport {
    /// The line as sent, with its `\n`.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a report serializes");
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_states_of_one_revision_are_ordered_offline_first() {
        let decl = |desired, desired_rev| AppDecl {
            name: "web".into(),
            version: Version::new(1, 0, 0),
            desired,
            desired_rev,
            desired_sig: Vec::new(),
        };
        // Two operators at once, merged in either order: both sides end offline.
        let (on, off) = (
            decl(DesiredState::Online, 7),
            decl(DesiredState::Offline, 7),
        );
        let (mut x, mut y) = (on.clone(), off.clone());
        assert!(x.merge(&off) && !y.merge(&on));
        assert_eq!(
            (x.desired, y.desired),
            (DesiredState::Offline, DesiredState::Offline)
        );
        assert!(on.is_superseded_by(&off) && !off.is_superseded_by(&on));
        // A newer revision still wins whatever it says.
        assert!(off.is_superseded_by(&decl(DesiredState::Online, 8)));
    }
}
