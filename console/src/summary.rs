//! What the cluster view says, counted: the numbers `status` prints and `wait` waits for.

use std::collections::BTreeMap;

use serde::Serialize;
use smon_proto::{ClusterView, LiveTag, MachineId, MachineRecord, PeerState};

use crate::bad_versions::{self, BadInView, BadVersionRow};

/// A record older than this many heartbeats is shown stale in text `status`.
pub const STALE_HEARTBEATS: u64 = 3;

#[derive(Clone, Debug, Serialize)]
pub struct MachineRow {
    pub machine: String,
    pub state: String,
    pub version: Option<String>,
    pub livetag: LiveTag,
    pub overhead: u32,
    pub logins: u32,
    pub first_deployed_ms: Option<u64>,
    pub load: f64,
    /// For a `conflict` row: the machine whose peer answered at this machine's address, as
    /// the console found when it asked there (absent if nobody answered it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// Why the machine is in its state, when its record says (a failed login and how, a
    /// peer that does not answer), else why an application of it is (`APP: WHY`).
    pub reason: Option<String>,
    /// How long ago the answering peer last took a newer version of this record (its own
    /// clock; owners re-issue theirs every few rounds): a large age is a record nobody
    /// refreshed. Known for the answering peer's own zone only.
    pub age_ms: Option<u64>,
}

/// One zone row the answering peer holds (issue 11): how many machines, how many run a
/// peer, and how old the figures are.
#[derive(Clone, Debug, Serialize)]
pub struct ZoneSummary {
    pub zone: String,
    pub depth: u32,
    /// A leaf zone: its peers hold its machines' records.
    pub leaf: bool,
    pub machines: u32,
    /// Machines known to run a peer; null if no row of the zone was heard of yet.
    pub deployed: Option<u32>,
    /// Age of the oldest information the row is made of (the answering peer's clock).
    pub age_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub answered_by: String,
    pub machines: u32,
    pub membership_version: u64,
    /// Machines known to run a peer (running, disabled or removed).
    pub deployed: usize,
    pub running: usize,
    pub disabled: usize,
    pub unreachable: usize,
    /// Machines whose peer process is there but has not answered pings for several rounds
    /// (stopped, hung): not counted as deployed; killed and restarted after a grace period.
    pub unresponsive: usize,
    /// Machines whose address answered as another machine (see `PeerState::Conflict`).
    pub conflicts: Vec<String>,
    pub versions: BTreeMap<String, usize>,
    pub livetag: LiveTag,
    /// Deployed machines whose record carries the answering peer's livetag.
    pub livetag_agreeing: usize,
    /// Package copies per machine → machines.
    pub overhead_histogram: BTreeMap<u32, usize>,
    pub logins_histogram: BTreeMap<u32, usize>,
    /// Age of the counts: the oldest information the root aggregate is made of.
    pub age_ms: u64,
    /// The zone rows the answering peer holds, the root first.
    pub zones: Vec<ZoneSummary>,
    /// One row per machine with a record: fetched from every zone by `status`; the answering
    /// peer's own leaf zone only where a summary is made of one view.
    pub records: Vec<MachineRow>,
    /// Zones whose records could not all be fetched (no representative answered, or those
    /// that did hold only some), with why.
    pub unanswered_zones: Vec<String>,
    /// Versions marked bad (rolled back on a machine): which, where, why and when.
    pub bad_versions: Vec<BadVersionRow>,
    /// What the view said of them (the rows are made again with each set of records).
    #[serde(skip)]
    bad_in_view: BadInView,
    /// A row whose record is older than this (several heartbeats: its owner has not
    /// re-issued it) says how long ago it was seen in text; unset, none does.
    #[serde(skip)]
    pub stale_after_ms: Option<u64>,
    /// The answering peer's ages of the records it holds, by machine.
    #[serde(skip)]
    ages: std::collections::HashMap<MachineId, u64>,
}

impl Summary {
    /// The counts come from the root aggregate (the whole cluster, exact once it is quiet),
    /// the per-machine rows from the records the answering peer holds.
    pub fn new(view: &ClusterView) -> Self {
        let root = &view.root;
        let count = |state| root.count(state) as usize;
        let hist = |h: &[(u32, u32)]| h.iter().map(|&(k, n)| (k, n as usize)).collect();
        let age = |as_of: u64| view.now_ms.saturating_sub(as_of);
        let zones = view
            .zones
            .iter()
            .map(|z| ZoneSummary {
                zone: z.name.clone(),
                depth: z.depth,
                leaf: z.leaf,
                machines: z.row.as_ref().map_or(0, |(_, a)| a.machines),
                deployed: z.row.as_ref().map(|(_, a)| a.up()),
                age_ms: z.row.as_ref().map(|(o, _)| age(o.as_of_ms)),
            })
            .collect();
        let mut s = Summary {
            answered_by: view.answered_by.to_string(),
            machines: view.machines,
            membership_version: view.membership_version,
            deployed: root.up() as usize,
            running: count(PeerState::Running),
            disabled: count(PeerState::Disabled),
            unreachable: count(PeerState::Unreachable),
            unresponsive: count(PeerState::Unresponsive),
            conflicts: Vec::new(),
            versions: root
                .versions
                .iter()
                .map(|(v, n)| (v.to_string(), *n as usize))
                .collect(),
            livetag: view.livetag,
            livetag_agreeing: root
                .livetags
                .iter()
                .filter(|(t, _)| *t == view.livetag)
                .map(|(_, n)| *n as usize)
                .sum(),
            overhead_histogram: hist(&root.overhead),
            logins_histogram: hist(&root.logins),
            age_ms: age(view.as_of_ms),
            zones,
            records: Vec::new(),
            unanswered_zones: Vec::new(),
            bad_versions: Vec::new(),
            bad_in_view: BadInView::of(view),
            stale_after_ms: None,
            ages: (view.records.iter().map(|(m, _)| m.clone()))
                .zip(view.record_ages_ms.iter().copied())
                .collect(),
        };
        s.set_records(&view.records);
        s
    }

    /// Per-machine rows from `records` (every zone's, fetched from the zones), in place of
    /// the answering peer's own zone's.
    pub fn set_records(&mut self, records: &[(MachineId, MachineRecord)]) {
        self.bad_versions = bad_versions::gather(&self.bad_in_view, records);
        self.conflicts = records
            .iter()
            .filter(|(_, r)| r.state == PeerState::Conflict)
            .map(|(machine, _)| machine.to_string())
            .collect();
        self.records = records
            .iter()
            .map(|(machine, r)| MachineRow {
                machine: machine.to_string(),
                state: r.state.as_str().into(),
                version: r.peer_version.map(|v| v.to_string()),
                livetag: r.livetag,
                overhead: r.overhead,
                logins: r.logins,
                first_deployed_ms: r.first_deployed_ms,
                load: f64::from(r.load) / 100.0,
                answered_by: None,
                reason: reason_of(r),
                age_ms: self.ages.get(machine).copied(),
            })
            .collect();
    }

    /// Mark as stale in text the rows whose record is older than [`STALE_HEARTBEATS`]
    /// heartbeats of a cluster whose round is `interval_ms`.
    pub fn set_stale_after(&mut self, interval_ms: u64) {
        self.stale_after_ms = Some(STALE_HEARTBEATS * smon_proto::HEARTBEAT_ROUNDS * interval_ms);
    }

    /// `  (seen 12s ago)` for a row whose record is stale, else nothing.
    fn seen_ago(&self, row: &MachineRow) -> String {
        match (row.age_ms, self.stale_after_ms) {
            (Some(age), Some(after)) if age > after => format!("  (seen {}s ago)", age / 1000),
            _ => String::new(),
        }
    }

    /// Fill in who answers at the address of each `conflict` row, by `who_answers(machine)`.
    pub async fn find_answerers<F, Fut>(&mut self, who_answers: F)
    where
        F: Fn(MachineId) -> Fut,
        Fut: std::future::Future<Output = Option<MachineId>>,
    {
        for row in self.records.iter_mut().filter(|r| r.state == "conflict") {
            if let Ok(machine) = row.machine.parse::<MachineId>() {
                row.answered_by = who_answers(machine).await.map(|m| m.to_string());
            }
        }
    }

    /// A row for each of `listed` (membership order) with no record: state `unknown`, nothing
    /// else known. No peer has told the answering one about it (it never ran a peer, or a
    /// partition or restart left no copy): the machine is still shown, not silently left out.
    pub fn fill_unknown(&mut self, listed: &[MachineId]) {
        let mut rows: std::collections::HashMap<String, MachineRow> = self
            .records
            .drain(..)
            .map(|r| (r.machine.clone(), r))
            .collect();
        for machine in listed {
            let name = machine.to_string();
            let row = rows.remove(&name).unwrap_or_else(|| MachineRow {
                machine: name,
                state: "unknown".into(),
                version: None,
                livetag: LiveTag::default(),
                overhead: 0,
                logins: 0,
                first_deployed_ms: None,
                load: 0.0,
                answered_by: None,
                reason: Some("no peer has a record of it".into()),
                age_ms: None,
            });
            self.records.push(row);
        }
        // Rows of machines not listed (none, unless the list is of another version) stay.
        self.records.extend(rows.into_values());
    }

    pub fn human(&self) -> String {
        let mut t = format!(
            "{} machines (membership v{}), answered by {}\n",
            self.machines, self.membership_version, self.answered_by
        );
        t += &format!(
            "deployed {}/{}: running {}, disabled {}; unreachable {}{} (counts {:.1} s old)\n",
            self.deployed,
            self.machines,
            self.running,
            self.disabled,
            self.unreachable,
            if self.unresponsive > 0 {
                format!(", unresponsive {}", self.unresponsive)
            } else {
                String::new()
            },
            self.age_ms as f64 / 1000.0
        );
        if !self.conflicts.is_empty() {
            t += &format!(
                "CONFLICT: another machine's peer answers at the address of {}: two entries \
                 share an address and port (the same host under two names?); they are not \
                 deployed until that is fixed (the rows and peer logs say which answered)\n",
                self.conflicts.join(", ")
            );
        }
        for bad in &self.bad_versions {
            t += &format!("BAD VERSION: {}\n", bad.text());
        }
        let versions: Vec<_> = self
            .versions
            .iter()
            .map(|(v, n)| format!("{v} ×{n}"))
            .collect();
        t += &format!(
            "versions: {}\n",
            if versions.is_empty() {
                "-".into()
            } else {
                versions.join(", ")
            }
        );
        t += &format!(
            "livetag: {} (v{}), carried by {}/{} deployed\n",
            if self.livetag.enabled {
                "enabled"
            } else {
                "disabled"
            },
            self.livetag.version,
            self.livetag_agreeing,
            self.deployed
        );
        let hist: Vec<_> = self
            .overhead_histogram
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        t += &format!("overhead (copies: machines): {}\n", hist.join(", "));
        t += &format!(
            "{:<28} {:<12} {:<9} {:>8} {:>6}\n",
            "MACHINE", "STATE", "VERSION", "OVERHEAD", "LOGINS"
        );
        for zone in &self.unanswered_zones {
            t += &format!("records missing from zone {zone}\n");
        }
        for r in &self.records {
            t += &format!(
                "{:<28} {:<12} {:<9} {:>8} {:>6}{}",
                r.machine,
                r.state,
                r.version.as_deref().unwrap_or("-"),
                r.overhead,
                r.logins,
                r.reason
                    .as_ref()
                    .map_or_else(String::new, |why| format!("  {why}"))
            );
            if let Some(who) = &r.answered_by {
                t += &format!("  answered by {who}");
            }
            t += &self.seen_ago(r);
            t += "\n";
        }
        t
    }
}

/// Why a machine is in its state: its record's reason, else its applications' (`APP: WHY`,
/// joined with `; `).
pub fn reason_of(r: &MachineRecord) -> Option<String> {
    if let Some(why) = &r.reason {
        return Some(why.to_string());
    }
    let apps: Vec<String> = r
        .apps
        .iter()
        .filter_map(|a| a.reason.as_ref().map(|why| format!("{}: {why}", a.name)))
        .collect();
    (!apps.is_empty()).then(|| apps.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_machine_with_no_record_still_has_a_row() {
        let m = |i: u32| MachineId::local(format!("m{i}"));
        let records: Vec<_> = [1, 3]
            .into_iter()
            .map(|i| {
                let mut r = MachineRecord::empty(i);
                r.state = PeerState::Running;
                (m(i), r)
            })
            .collect();
        let view = ClusterView {
            membership_version: 1,
            machines: 4,
            records,
            ..ClusterView::empty(m(1))
        };
        let mut s = Summary::new(&view);
        s.fill_unknown(&[m(0), m(1), m(2), m(3)]);
        let rows: Vec<_> = s
            .records
            .iter()
            .map(|r| (r.machine.as_str(), r.state.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("local:m0", "unknown"),
                ("local:m1", "running"),
                ("local:m2", "unknown"),
                ("local:m3", "running")
            ]
        );
        assert!(s.human().contains("local:m2"), "{}", s.human());
    }

    /// Issue 15 kind 5: a conflict row names whose peer answered at its address.
    #[test]
    fn a_conflict_row_says_who_answered() {
        let (a, b): (MachineId, MachineId) = (
            "alice@box2:2222".parse().unwrap(),
            "alice@box2-alias:2222".parse().unwrap(),
        );
        let mut ra = MachineRecord::empty(0);
        ra.state = PeerState::Running;
        let mut rb = MachineRecord::empty(1);
        rb.state = PeerState::Conflict;
        let view = ClusterView {
            membership_version: 1,
            machines: 2,
            records: vec![(a.clone(), ra), (b.clone(), rb)],
            ..ClusterView::empty(a.clone())
        };
        let mut s = Summary::new(&view);
        let asked = std::sync::Mutex::new(Vec::new());
        futures::executor::block_on(s.find_answerers(|m| {
            asked.lock().unwrap().push(m);
            std::future::ready(Some(a.clone()))
        }));
        assert_eq!(
            *asked.lock().unwrap(),
            std::slice::from_ref(&b),
            "only conflict rows are asked"
        );
        assert_eq!(s.conflicts, [b.to_string()]);
        let human = s.human();
        let row = human
            .lines()
            .find(|l| l.starts_with(&b.to_string()))
            .unwrap();
        assert!(
            row.contains("conflict") && row.ends_with("answered by alice@box2:2222"),
            "{human}"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["records"][1]["answered_by"], "alice@box2:2222");
        assert!(json["records"][0].get("answered_by").is_none());
    }

    /// Kinds 7 and 2: why a machine cannot be managed, or an application cannot be tracked,
    /// shows in its row (`reason` in JSON, after the row in text); a running machine has none.
    #[test]
    fn a_row_says_why() {
        let m = |i: u32| MachineId::local(format!("m{i}"));
        let mut shell = MachineRecord::empty(0);
        shell.reason = Some(smon_proto::Reason::new(
            "pinged without answer; login failed: Unmatched '''.",
        ));
        let mut app = MachineRecord::empty(1);
        app.state = PeerState::Running;
        app.apps.push(smon_proto::AppStatus {
            name: "daemon".into(),
            version: smon_proto::Version::new(1, 0, 0),
            desired: smon_proto::DesiredState::Online,
            state: smon_proto::AppState::Failed,
            restarts: 0,
            reason: Some(smon_proto::Reason::new(
                "processes {42} could not be stopped",
            )),
        });
        let mut fine = MachineRecord::empty(2);
        fine.state = PeerState::Running;
        let view = ClusterView {
            membership_version: 1,
            machines: 3,
            records: vec![(m(0), shell), (m(1), app), (m(2), fine)],
            ..ClusterView::empty(m(0))
        };
        let s = Summary::new(&view);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json["records"][0]["reason"],
            "pinged without answer; login failed: Unmatched '''."
        );
        assert_eq!(
            json["records"][1]["reason"],
            "daemon: processes {42} could not be stopped"
        );
        assert!(json["records"][2]["reason"].is_null());
        let text = s.human();
        assert!(text.contains("Unmatched '''."), "{text}");
        assert!(text.contains("daemon: processes {42}"), "{text}");
    }

    /// Kind 1: text status says how long ago a row older than three heartbeats was seen,
    /// and nothing of a fresh one (or of any, when no round is known).
    #[test]
    fn a_stale_row_says_when_it_was_seen() {
        let m = |i: u32| MachineId::local(format!("m{i}"));
        let view = ClusterView {
            membership_version: 1,
            machines: 2,
            records: vec![
                (m(0), MachineRecord::empty(0)),
                (m(1), MachineRecord::empty(1)),
            ],
            record_ages_ms: vec![12_500, 3_000],
            ..ClusterView::empty(m(0))
        };
        let mut s = Summary::new(&view);
        assert!(!s.human().contains("(seen "), "{}", s.human());
        s.set_stale_after(1_000);
        let text = s.human();
        let line = |name: &str| text.lines().find(|l| l.starts_with(name)).unwrap();
        assert!(line("local:m0 ").ends_with("  (seen 12s ago)"), "{text}");
        assert!(!line("local:m1 ").contains("(seen "), "{text}");
    }
}
