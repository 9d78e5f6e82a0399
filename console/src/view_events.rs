//! Events derived from changes of the cluster view: what the TUI's "recent events" panel lists
//! and what `smon-console events` prints. Written once here: [`machine_changes`] compares two
//! versions of a machine's record, [`livetag_change`] and [`membership_change`] two views'
//! cluster-wide values; `tui::model::Model::apply` calls them for every view it receives.

use serde::Serialize;
use smon_proto::{AppStatus, BadReason, BadVersion, LiveTag, MachineId, MachineRecord, PeerState};

/// One change the cluster view showed.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewEvent {
    /// Seconds since the watcher started, when the change was seen.
    pub at: f64,
    /// When the change happened by its source's clock (ms since the Unix epoch: the record's
    /// `changed_ms`), when the source says.
    pub source_ms: Option<u64>,
    /// Its source: the machine that changed, or the peer whose view showed a cluster-wide
    /// change (livetag, membership); none for the watcher's own connection events.
    pub machine: Option<MachineId>,
    pub change: Change,
}

/// What changed. Serialized with its kind as `kind` and its own fields beside it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A peer came up where none ran (or none was known to).
    Deployed {
        state: &'static str,
        version: Option<String>,
    },
    /// A peer answers again after its machine was unreachable.
    Recovered {
        state: &'static str,
        version: Option<String>,
    },
    /// Pinged without answer and not logged into (`version`: the last one it ran).
    Unreachable {
        from: Option<&'static str>,
        version: Option<String>,
    },
    /// The machine's peer process is there but has left pings unanswered for several rounds
    /// (stopped, hung): no longer counted as running; killed and restarted after a grace
    /// period. `recovered` follows when it answers again.
    Unresponsive {
        from: Option<&'static str>,
        version: Option<String>,
    },
    /// The peer runs another version (a rollback too: `from` and `to` say which way).
    Upgraded {
        from: Option<String>,
        to: Option<String>,
    },
    /// Any other change of the peer's state (deploying, disabled, removed, stopped, conflict).
    State {
        from: Option<&'static str>,
        to: &'static str,
        version: Option<String>,
    },
    /// An application's state (or version) on the machine changed.
    AppState {
        app: String,
        version: String,
        desired: String,
        from: Option<&'static str>,
        to: &'static str,
    },
    /// The machine's peer found a release unable to run or rejoin and rolled back from it:
    /// no peer takes that version any more.
    VersionMarkedBad {
        version: String,
        reason: String,
        exit_code: Option<i32>,
        /// When, by the machine's clock (ms since the Unix epoch).
        at_ms: u64,
    },
    /// Self-management switched on or off.
    Livetag { enabled: bool, version: u64 },
    /// A new membership list.
    Membership { version: u64 },
    /// The watcher now reads the view of this peer.
    Watching,
    /// The watched peer stopped answering (the watcher fails over).
    Disconnected { error: String },
}

impl Change {
    /// The kind's name, as in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Deployed { .. } => "deployed",
            Change::Recovered { .. } => "recovered",
            Change::Unreachable { .. } => "unreachable",
            Change::Unresponsive { .. } => "unresponsive",
            Change::Upgraded { .. } => "upgraded",
            Change::State { .. } => "state",
            Change::AppState { .. } => "app_state",
            Change::VersionMarkedBad { .. } => "version_marked_bad",
            Change::Livetag { .. } => "livetag",
            Change::Membership { .. } => "membership",
            Change::Watching => "watching",
            Change::Disconnected { .. } => "disconnected",
        }
    }

    /// The kind's fields in words (no machine, no time).
    pub fn detail(&self) -> String {
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        match self {
            Change::Deployed { state, version } | Change::Recovered { state, version } => {
                format!("{state} {}", or_dash(version))
            }
            Change::Unreachable { from, .. } | Change::Unresponsive { from, .. } => {
                format!("was {}", from.unwrap_or("unknown"))
            }
            Change::Upgraded { from, to } => format!("{} -> {}", or_dash(from), or_dash(to)),
            Change::State { from, to, .. } => format!("{} -> {to}", from.unwrap_or("unknown")),
            Change::AppState {
                app,
                version,
                desired,
                from,
                to,
            } => format!(
                "{app} {version}: {} -> {to} (desired {desired})",
                from.unwrap_or("none")
            ),
            Change::VersionMarkedBad {
                version, reason, ..
            } => format!("version {version} marked bad: {reason}"),
            Change::Livetag { enabled, version } => {
                let word = if *enabled { "enabled" } else { "disabled" };
                format!("self-management {word} (livetag v{version})")
            }
            Change::Membership { version } => format!("membership version {version}"),
            Change::Watching => "watching through this peer".into(),
            Change::Disconnected { error } => format!("lost the connection: {error}"),
        }
    }
}

impl ViewEvent {
    /// The short text of the TUI's event list.
    pub fn text(&self) -> String {
        let machine = self.machine.as_ref().map(ToString::to_string);
        match (&self.change, machine) {
            (Change::Watching, Some(m)) => format!("watching through {m}"),
            (Change::Livetag { .. } | Change::Membership { .. }, _) | (_, None) => {
                self.change.detail()
            }
            (
                Change::Deployed { state, version } | Change::Recovered { state, version },
                Some(m),
            ) => format!("{m}: {state}{}", with_space(version)),
            (Change::Unreachable { version, .. }, Some(m)) => {
                format!("{m}: unreachable{}", with_space(version))
            }
            (Change::Unresponsive { version, .. }, Some(m)) => {
                format!("{m}: unresponsive{}", with_space(version))
            }
            (Change::Upgraded { to, .. }, Some(m)) => format!("{m}: running{}", with_space(to)),
            (Change::State { to, version, .. }, Some(m)) => {
                format!("{m}: {to}{}", with_space(version))
            }
            (Change::AppState { app, to, .. }, Some(m)) => format!("{m}: {app} {to}"),
            (change, Some(m)) => format!("{m}: {}", change.detail()),
        }
    }
}

fn with_space(version: &Option<String>) -> String {
    version
        .as_ref()
        .map_or_else(String::new, |v| format!(" {v}"))
}

/// What changed on a machine between the record the watcher held (`None`: none yet) and the
/// one it now sees: its peer's state or version, versions it marked bad, then each
/// application's state.
pub fn machine_changes(before: Option<&MachineRecord>, after: &MachineRecord) -> Vec<Change> {
    let mut out = Vec::new();
    let old_state = before.map(|r| r.state);
    let old_version = before.and_then(|r| r.peer_version);
    let version = after.peer_version.map(|v| v.to_string());
    let state = after.state.as_str();
    if (old_state, old_version) != (Some(after.state), after.peer_version) {
        let was_up = old_state.is_some_and(PeerState::is_up);
        out.push(match (old_state, after.state) {
            (Some(PeerState::Unreachable | PeerState::Unresponsive), s) if s.is_up() => {
                Change::Recovered { state, version }
            }
            (_, s) if s.is_up() && !was_up => Change::Deployed { state, version },
            (_, s) if s.is_up() && old_version != after.peer_version => Change::Upgraded {
                from: old_version.map(|v| v.to_string()),
                to: version,
            },
            (_, PeerState::Unreachable) => Change::Unreachable {
                from: old_state.map(PeerState::as_str),
                version,
            },
            (_, PeerState::Unresponsive) => Change::Unresponsive {
                from: old_state.map(PeerState::as_str),
                version,
            },
            (from, _) => Change::State {
                from: from.map(PeerState::as_str),
                to: state,
                version,
            },
        });
    }
    let old_marks: &[BadVersion] = before.map_or(&[], |r| &r.bad_versions);
    for bad in &after.bad_versions {
        if !old_marks.contains(bad) {
            out.push(Change::VersionMarkedBad {
                version: bad.version.to_string(),
                reason: bad.reason.to_string(),
                exit_code: match bad.reason {
                    BadReason::Exited { code } => Some(code),
                    _ => None,
                },
                at_ms: bad.at_ms,
            });
        }
    }
    let old_apps: &[AppStatus] = before.map_or(&[], |r| &r.apps);
    for app in &after.apps {
        let old = old_apps.iter().find(|a| a.name == app.name);
        if old.is_none_or(|o| (o.state, o.version) != (app.state, app.version)) {
            out.push(Change::AppState {
                app: app.name.clone(),
                version: app.version.to_string(),
                desired: app.desired.to_string(),
                from: old.map(|o| o.state.as_str()),
                to: app.state.as_str(),
            });
        }
    }
    out
}

/// The livetag's change between two views (`None`: no view yet).
pub fn livetag_change(before: Option<LiveTag>, after: LiveTag) -> Option<Change> {
    (before != Some(after)).then_some(Change::Livetag {
        enabled: after.enabled,
        version: after.version,
    })
}

/// The membership version's change between two views (0: no view yet).
pub fn membership_change(before: u64, after: u64) -> Option<Change> {
    (before != after).then_some(Change::Membership { version: after })
}

#[cfg(test)]
mod tests {
    use smon_proto::{AppState, DesiredState, Version};

    use super::*;

    fn record(state: PeerState, version: Option<&str>, apps: &[(&str, AppState)]) -> MachineRecord {
        MachineRecord {
            state,
            peer_version: version.map(|v| v.parse().unwrap()),
            apps: apps
                .iter()
                .map(|(name, state)| AppStatus {
                    name: name.to_string(),
                    version: Version::new(1, 0, 0),
                    desired: DesiredState::Online,
                    state: *state,
                    restarts: 0,
                    reason: None,
                })
                .collect(),
            ..MachineRecord::empty(0)
        }
    }

    fn kinds(before: Option<&MachineRecord>, after: &MachineRecord) -> Vec<&'static str> {
        machine_changes(before, after)
            .iter()
            .map(Change::kind)
            .collect()
    }

    #[test]
    fn peer_changes_get_their_kind() {
        use PeerState::*;
        let up = record(Running, Some("0.1.0"), &[]);
        assert_eq!(kinds(None, &up), ["deployed"]);
        assert_eq!(
            kinds(Some(&record(Deploying, None, &[])), &up),
            ["deployed"]
        );
        assert_eq!(
            kinds(Some(&record(Unreachable, None, &[])), &up),
            ["recovered"]
        );
        assert_eq!(
            kinds(Some(&up), &record(Unreachable, None, &[])),
            ["unreachable"]
        );
        assert_eq!(
            kinds(Some(&up), &record(Running, Some("0.2.0"), &[])),
            ["upgraded"]
        );
        assert_eq!(
            kinds(Some(&up), &record(Disabled, Some("0.1.0"), &[])),
            ["state"]
        );
        assert_eq!(kinds(Some(&up), &up), Vec::<&str>::new());
        // Issue 15, kind 1: a peer that runs but does not answer, and its return.
        let silent = record(Unresponsive, Some("0.1.0"), &[]);
        assert_eq!(kinds(Some(&up), &silent), ["unresponsive"]);
        assert_eq!(kinds(Some(&silent), &up), ["recovered"]);
        let text = ViewEvent {
            at: 0.0,
            source_ms: None,
            machine: Some(smon_proto::MachineId::local("m1")),
            change: machine_changes(Some(&up), &silent).remove(0),
        }
        .text();
        assert_eq!(text, "local:m1: unresponsive 0.1.0");
    }

    #[test]
    fn app_changes_are_reported_per_app() {
        let before = record(
            PeerState::Running,
            Some("0.1.0"),
            &[("a", AppState::Starting)],
        );
        let after = record(
            PeerState::Running,
            Some("0.1.0"),
            &[("a", AppState::Running), ("b", AppState::Installing)],
        );
        let changes = machine_changes(Some(&before), &after);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(matches!(
            &changes[0],
            Change::AppState { app, from: Some("starting"), to: "running", .. } if app == "a"
        ));
        assert!(matches!(
            &changes[1],
            Change::AppState { app, from: None, to: "installing", .. } if app == "b"
        ));
        let json = serde_json::to_value(&changes[0]).unwrap();
        assert_eq!(json["kind"], "app_state");
        assert_eq!(json["to"], "running");
    }

    #[test]
    fn a_rollback_reports_the_version_marked_bad_once() {
        let before = record(PeerState::Running, Some("0.1.0"), &[]);
        let mut after = before.clone();
        after.bad_versions = vec![BadVersion {
            version: "0.5.0".parse().unwrap(),
            reason: BadReason::Exited { code: 3 },
            at_ms: 7,
        }];
        let changes = machine_changes(Some(&before), &after);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(
            changes[0].detail(),
            "version 0.5.0 marked bad: exited with code 3 at start"
        );
        let json = serde_json::to_value(&changes[0]).unwrap();
        assert_eq!(json["kind"], "version_marked_bad");
        assert_eq!(json["exit_code"], 3);
        assert!(machine_changes(Some(&after), &after).is_empty());
    }

    #[test]
    fn cluster_wide_changes_only_when_different() {
        let on = LiveTag {
            enabled: true,
            version: 1,
        };
        assert!(livetag_change(Some(on), on).is_none());
        assert!(livetag_change(None, on).is_some());
        assert!(membership_change(3, 3).is_none());
        assert_eq!(
            membership_change(3, 4),
            Some(Change::Membership { version: 4 })
        );
    }
}
