//! Versions marked bad (issue 16): a release that could not run or rejoin on some machine and
//! was rolled back there. Gathered once here from what the view carries (the machines'
//! records, the root aggregate's sample and counts) for `status`, the TUI, `wait` and
//! `events`.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use smon_proto::{BadReason, BadVersion, ClusterView, MachineId, MachineRecord, Version};

/// One version marked bad, as `status --json` lists it (`bad_versions`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BadVersionRow {
    pub version: String,
    /// The machine that marked it; null when the view only counts it (its sample names
    /// other machines' marks).
    pub machine: Option<String>,
    /// Why, in words: `exited with code 3 at start`, `did not rejoin the cluster within 20s`.
    pub reason: String,
    /// The exit code, when the reason is one.
    pub exit_code: Option<i32>,
    /// When it was marked, RFC 3339 UTC (the machine's clock); null if unknown.
    pub at: Option<String>,
    pub at_ms: Option<u64>,
    /// Machines that marked this version bad, in the whole cluster (the root's count).
    pub machines: u32,
}

impl BadVersionRow {
    fn of(machine: &MachineId, bad: &BadVersion, count: u32) -> Self {
        BadVersionRow {
            version: bad.version.to_string(),
            machine: Some(machine.to_string()),
            reason: bad.reason.to_string(),
            exit_code: match bad.reason {
                BadReason::Exited { code } => Some(code),
                _ => None,
            },
            at: Some(rfc3339(bad.at_ms)),
            at_ms: Some(bad.at_ms),
            machines: count,
        }
    }

    /// A mark of `version` on local:m1, exit code 3 (for tests).
    #[cfg(test)]
    pub fn example(version: &str) -> Self {
        BadVersionRow {
            version: version.into(),
            machine: Some("local:m1".into()),
            reason: "exited with code 3 at start".into(),
            exit_code: Some(3),
            at: None,
            at_ms: None,
            machines: 1,
        }
    }

    /// One line of text: `0.5.0 marked bad on local:m1 at …: exited with code 3 at start`.
    pub fn text(&self) -> String {
        let on = self.machine.as_deref().map_or_else(
            || format!("on {} machine(s)", self.machines),
            |m| format!("on {m}"),
        );
        let at = self
            .at
            .as_deref()
            .map_or_else(String::new, |t| format!(" at {t}"));
        let more = match self.machines {
            0 | 1 => String::new(),
            n => format!(" ({n} machines in all)"),
        };
        format!(
            "version {} marked bad {on}{at}: {}{more}",
            self.version, self.reason
        )
    }
}

/// RFC 3339 UTC with seconds, of milliseconds since the Unix epoch.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// What a view says of versions marked bad: the root's counts and its named sample.
#[derive(Clone, Debug, Default)]
pub struct BadInView {
    pub counts: Vec<(Version, u32)>,
    pub sample: Vec<(MachineId, BadVersion)>,
}

impl BadInView {
    pub fn of(view: &ClusterView) -> Self {
        BadInView {
            counts: view.root.bad_versions.clone(),
            sample: view.bad_versions.clone(),
        }
    }
}

/// Every version marked bad that the view and `records` tell of: each mark with its machine
/// (from the records, and from the root's sample for machines whose records are not there),
/// then a row without a machine for each counted version no mark at hand names. Sorted by
/// version, then machine.
pub fn gather(view: &BadInView, records: &[(MachineId, MachineRecord)]) -> Vec<BadVersionRow> {
    let count = |v: Version| {
        (view.counts.iter())
            .find(|(bad, _)| *bad == v)
            .map_or(0, |(_, n)| *n)
    };
    let from_records = records
        .iter()
        .flat_map(|(m, r)| r.bad_versions.iter().map(move |b| (m, b)));
    let from_sample = view.sample.iter().map(|(m, b)| (m, b));
    let mut rows: Vec<BadVersionRow> = Vec::new();
    for (machine, bad) in from_records.chain(from_sample) {
        let row = BadVersionRow::of(machine, bad, count(bad.version).max(1));
        let same = |r: &BadVersionRow| (&r.version, &r.machine) == (&row.version, &row.machine);
        if !rows.iter().any(same) {
            rows.push(row);
        }
    }
    for &(version, n) in &view.counts {
        if !rows.iter().any(|r| r.version == version.to_string()) {
            rows.push(BadVersionRow {
                version: version.to_string(),
                machine: None,
                reason: "rolled back (the view names no machine yet)".into(),
                exit_code: None,
                at: None,
                at_ms: None,
                machines: n,
            });
        }
    }
    rows.sort_by(|a, b| {
        let key = |r: &BadVersionRow| (r.version.parse::<Version>().ok(), r.machine.clone());
        key(a).cmp(&key(b))
    });
    rows
}

#[cfg(test)]
mod tests {
    use smon_proto::PeerState;

    use super::*;

    fn bad(minor: u32, reason: BadReason) -> BadVersion {
        BadVersion {
            version: Version::new(0, minor, 0),
            reason,
            at_ms: 1_795_000_000_000,
        }
    }

    #[test]
    fn marks_come_from_records_the_sample_and_the_counts() {
        let m = |i: u32| MachineId::local(format!("m{i}"));
        let exited = bad(5, BadReason::Exited { code: 3 });
        let late = bad(6, BadReason::NotRejoined { within_ms: 20_000 });
        let mut record = MachineRecord::empty(1);
        record.state = PeerState::Running;
        record.bad_versions = vec![exited];
        let mut view = ClusterView::empty(m(0));
        view.root.add_record(&record, 1);
        view.root.bad_versions.push((Version::new(0, 6, 0), 2));
        view.root.bad_versions.push((Version::new(0, 7, 0), 1));
        // The sample names m1's mark again (deduplicated) and m2's.
        view.bad_versions = vec![(m(1), exited), (m(2), late)];
        let rows = gather(&BadInView::of(&view), &[(m(1), record)]);
        let brief: Vec<_> = rows
            .iter()
            .map(|r| (r.version.as_str(), r.machine.as_deref(), r.exit_code))
            .collect();
        assert_eq!(
            brief,
            [
                ("0.5.0", Some("local:m1"), Some(3)),
                ("0.6.0", Some("local:m2"), None),
                ("0.7.0", None, None)
            ]
        );
        assert_eq!(rows[0].at.as_deref(), Some("2026-11-18T11:06:40Z"));
        assert_eq!(
            rows[0].text(),
            "version 0.5.0 marked bad on local:m1 at 2026-11-18T11:06:40Z: exited with code 3 at start"
        );
        assert!(rows[1].text().ends_with("within 20s (2 machines in all)"));
        let json = serde_json::to_value(&rows[0]).unwrap();
        assert_eq!(json["reason"], "exited with code 3 at start");
        assert_eq!(json["machine"], "local:m1");
    }
}
