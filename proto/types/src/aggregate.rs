//! Aggregate rows: the answers of Astrolabe's standing aggregation queries (paper 002, §2.1).
//!
//! The row of a zone summarises its children: the records of its machines (a leaf zone) or the
//! rows of its child zones. Counts are sums, and zones are disjoint, so nothing is counted
//! twice; once the cluster is quiet every peer computes the same row for the same zone, and
//! the counts are exact.
//!
//! Which row is newest, without trusting clocks ([`RowOrder`]): every part of a row's order is
//! the sum of the same part over its children, so a row computed from newer children is
//! greater, and a row computed once nothing changes any more is the greatest of all. Ties
//! (two computations from different children of equal revs) are decided by the summed content
//! hashes of the children; the issuing time only breaks ties between identical contents, so a
//! refreshed row replaces an older copy of itself.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::{AppState, BadMark, LiveTag, MachineRecord, PeerState, Version, ZoneIdx};

/// Machines known to run a peer that a row names, for finding a peer in a zone.
pub const UP_SAMPLE: usize = 3;
/// Machines without a peer that a row names, for target choice.
pub const MISSING_SAMPLE: usize = 4;

/// The summary of a zone: counts over its machines.
///
/// Peer version, livetag, overhead, logins, load and applications are counted over the
/// machines known to run a peer ([`PeerState::is_up`]); peer states over every machine with a
/// record. Histograms are sorted by key, so equal contents are equal values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Machines in the zone (listed, whether heard of or not).
    pub machines: u32,
    /// Machines by peer state, in [`PeerState::ALL`] order. Machines nobody in the zone has
    /// heard of yet are in none of them.
    #[serde(with = "crate::sparse_counts")]
    pub states: [u32; 8],
    pub versions: Vec<(Version, u32)>,
    /// Sorted by (version, enabled).
    pub livetags: Vec<(LiveTag, u32)>,
    /// Package copies before the peer ran → machines (the paper's Table II).
    pub overhead: Vec<(u32, u32)>,
    /// Logins → machines.
    pub logins: Vec<(u32, u32)>,
    /// Per application (by name), machines by application state.
    pub apps: Vec<AppCount>,
    pub load: LoadStats,
    /// The newest `changed_ms` of the zone's records (writers' clocks; 0 if unknown).
    pub newest_change_ms: u64,
    /// Up to [`UP_SAMPLE`] machines known to run a peer, first in tree order.
    pub up_sample: Vec<u32>,
    /// Up to [`MISSING_SAMPLE`] machines not known to run a peer, first in tree order.
    pub missing_sample: Vec<u32>,
    /// Versions marked bad → machines whose record marks them, over every machine with a
    /// record (a rolled-back machine may be down again). Sorted by version.
    pub bad_versions: Vec<(Version, u32)>,
    /// Up to [`crate::BAD_SAMPLE`] of those marks with where, why and when, first in tree
    /// order (as the samples above).
    pub bad_sample: Vec<BadMark>,
}

/// Load averages (× 100) over the machines known to run a peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadStats {
    pub min: u16,
    pub max: u16,
    pub sum: u64,
}

/// One application's machines by state, in [`AppState::ALL`] order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppCount {
    pub name: String,
    #[serde(with = "crate::sparse_counts")]
    pub states: [u32; 6],
}

impl AppCount {
    pub fn count(&self, state: AppState) -> u32 {
        self.states[state.index()]
    }

    pub fn total(&self) -> u32 {
        self.states.iter().sum()
    }
}

/// The order of a zone's rows, newest greatest (see the module's doc). Compared field by field.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct RowOrder {
    /// Sum of the children's news revisions.
    pub news: u64,
    /// Sum of the children's revisions.
    pub rev: u64,
    /// Sum of the children's content tiebreaks.
    pub tiebreak: u64,
    /// The oldest information the row is made of: the issuer's clock for a leaf zone's row,
    /// the oldest child's otherwise (milliseconds since the epoch; virtual in the simulator).
    pub as_of_ms: u64,
}

impl RowOrder {
    /// Add (`sign` +1) or take away (-1) a child's part.
    pub fn add(&mut self, news: u64, rev: u64, tiebreak: u64, sign: i64) {
        let apply = |x: &mut u64, v: u64| {
            *x = if sign > 0 {
                x.wrapping_add(v)
            } else {
                x.wrapping_sub(v)
            }
        };
        apply(&mut self.news, news);
        apply(&mut self.rev, rev);
        apply(&mut self.tiebreak, tiebreak);
    }

    /// Everything but the issuing time: equal keys mean equal contents.
    pub fn content(&self) -> (u64, u64, u64) {
        (self.news, self.rev, self.tiebreak)
    }
}

impl ZoneRow {
    /// The news of this version: its sums of the children's news, apart from its figures.
    pub fn news_key(&self) -> (u64, u64) {
        (self.order.news, self.order.tiebreak)
    }
}

/// One row of a zone table: the aggregate of zone `zone` (its index in the zone tree of the
/// membership version the gossip carrying it names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneRow {
    pub zone: ZoneIdx,
    pub order: RowOrder,
    pub agg: Aggregate,
}

fn livetag_key(t: &LiveTag) -> (u64, bool) {
    (t.version, t.enabled)
}

/// Add `delta` to the count of `key` in a histogram sorted by `cmp`; a count of 0 is removed.
fn bump<K: Clone>(hist: &mut Vec<(K, u32)>, key: &K, delta: i64, cmp: impl Fn(&K, &K) -> Ordering) {
    if delta == 0 {
        return;
    }
    match hist.binary_search_by(|(k, _)| cmp(k, key)) {
        Ok(i) => {
            let count = i64::from(hist[i].1) + delta;
            debug_assert!(count >= 0, "a count below zero");
            if count <= 0 {
                hist.remove(i);
            } else {
                hist[i].1 = count as u32;
            }
        }
        Err(i) => {
            debug_assert!(delta > 0, "taking away what was never added");
            if delta > 0 {
                hist.insert(i, (key.clone(), delta as u32));
            }
        }
    }
}

fn add_counts<const N: usize>(mine: &mut [u32; N], other: &[u32; N], sign: i64) {
    for (m, o) in mine.iter_mut().zip(other) {
        *m = (i64::from(*m) + sign * i64::from(*o)) as u32;
    }
}

impl Aggregate {
    /// Machines known to run a peer.
    pub fn up(&self) -> u32 {
        PeerState::ALL
            .iter()
            .filter(|s| s.is_up())
            .map(|s| self.states[s.index()])
            .sum()
    }

    /// Machines not known to run a peer (including those nobody has heard of).
    pub fn missing(&self) -> u32 {
        self.machines.saturating_sub(self.up())
    }

    /// Machines with a record.
    pub fn known(&self) -> u32 {
        self.states.iter().sum()
    }

    pub fn count(&self, state: PeerState) -> u32 {
        self.states[state.index()]
    }

    pub fn app(&self, name: &str) -> Option<&AppCount> {
        self.apps
            .binary_search_by(|a| a.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.apps[i])
    }

    pub fn load_mean(&self) -> Option<f64> {
        let up = self.up();
        (up > 0).then(|| self.load.sum as f64 / f64::from(up) / 100.0)
    }

    /// Add (`sign` +1) or take away (-1) one machine's record: the additive parts only.
    pub fn add_record(&mut self, r: &MachineRecord, sign: i64) {
        let slot = &mut self.states[r.state.index()];
        *slot = (i64::from(*slot) + sign) as u32;
        for bad in &r.bad_versions {
            bump(&mut self.bad_versions, &bad.version, sign, Ord::cmp);
        }
        if !r.state.is_up() {
            return;
        }
        if let Some(v) = r.peer_version {
            bump(&mut self.versions, &v, sign, Ord::cmp);
        }
        bump(&mut self.livetags, &r.livetag, sign, |a, b| {
            livetag_key(a).cmp(&livetag_key(b))
        });
        bump(&mut self.overhead, &r.overhead, sign, Ord::cmp);
        bump(&mut self.logins, &r.logins, sign, Ord::cmp);
        self.load.sum = (self.load.sum as i64 + sign * i64::from(r.load)) as u64;
        for app in &r.apps {
            let mut one = [0u32; 6];
            one[app.state.index()] = 1;
            self.add_app(&app.name, &one, sign);
        }
    }

    fn add_app(&mut self, name: &str, states: &[u32; 6], sign: i64) {
        if states.iter().all(|&n| n == 0) {
            return;
        }
        match self.apps.binary_search_by(|a| a.name.as_str().cmp(name)) {
            Ok(i) => {
                add_counts(&mut self.apps[i].states, states, sign);
                if self.apps[i].total() == 0 {
                    self.apps.remove(i);
                }
            }
            Err(i) => {
                debug_assert!(sign > 0, "taking away an application never added");
                if sign > 0 {
                    self.apps.insert(
                        i,
                        AppCount {
                            name: name.to_owned(),
                            states: *states,
                        },
                    );
                }
            }
        }
    }

    /// Add (`sign` +1) or take away (-1) a child zone's aggregate: the additive parts only
    /// (not the load's minimum and maximum, the newest change or the samples).
    pub fn add(&mut self, other: &Aggregate, sign: i64) {
        self.machines = (i64::from(self.machines) + sign * i64::from(other.machines)) as u32;
        add_counts(&mut self.states, &other.states, sign);
        for (v, n) in &other.versions {
            bump(&mut self.versions, v, sign * i64::from(*n), Ord::cmp);
        }
        for (t, n) in &other.livetags {
            bump(&mut self.livetags, t, sign * i64::from(*n), |a, b| {
                livetag_key(a).cmp(&livetag_key(b))
            });
        }
        for (k, n) in &other.overhead {
            bump(&mut self.overhead, k, sign * i64::from(*n), Ord::cmp);
        }
        for (k, n) in &other.logins {
            bump(&mut self.logins, k, sign * i64::from(*n), Ord::cmp);
        }
        for app in &other.apps {
            self.add_app(&app.name, &app.states, sign);
        }
        for (v, n) in &other.bad_versions {
            bump(&mut self.bad_versions, v, sign * i64::from(*n), Ord::cmp);
        }
        self.load.sum = (self.load.sum as i64 + sign * other.load.sum as i64) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppStatus, DesiredState};

    fn record(state: PeerState, version: u32, load: u16, app: Option<AppState>) -> MachineRecord {
        MachineRecord {
            state,
            peer_version: Some(Version::new(version, 0, 0)),
            load,
            overhead: 1,
            apps: app
                .map(|state| AppStatus {
                    name: "web".into(),
                    version: Version::new(1, 0, 0),
                    desired: DesiredState::Online,
                    state,
                    restarts: 0,
                    reason: None,
                })
                .into_iter()
                .collect(),
            ..MachineRecord::empty(0)
        }
    }

    #[test]
    fn records_and_rows_add_up_and_take_away_exactly() {
        let records = [
            record(PeerState::Running, 1, 50, Some(AppState::Running)),
            record(PeerState::Running, 2, 150, Some(AppState::Stopped)),
            record(PeerState::Disabled, 2, 10, None),
            record(PeerState::Unreachable, 1, 0, Some(AppState::Running)),
        ];
        let mut a = Aggregate::default();
        for r in &records {
            a.add_record(r, 1);
        }
        assert_eq!(a.up(), 3);
        assert_eq!(a.count(PeerState::Unreachable), 1);
        assert_eq!(
            a.versions,
            vec![(Version::new(1, 0, 0), 1), (Version::new(2, 0, 0), 2)]
        );
        let web = a.app("web").unwrap();
        assert_eq!(
            (web.count(AppState::Running), web.count(AppState::Stopped)),
            (1, 1)
        );
        assert_eq!(a.load.sum, 210);

        let mut twice = a.clone();
        twice.add(&a, 1);
        assert_eq!(twice.up(), 6);
        twice.add(&a, -1);
        assert_eq!(twice, a);

        for r in &records {
            a.add_record(r, -1);
        }
        assert_eq!(a, Aggregate::default());
    }

    #[test]
    fn bad_versions_are_counted_on_every_machine_with_a_record() {
        let bad = |minor| crate::BadVersion {
            version: Version::new(0, minor, 0),
            reason: crate::BadReason::Exited { code: 3 },
            at_ms: 1,
        };
        let mut up = record(PeerState::Running, 1, 0, None);
        up.bad_versions = vec![bad(5)];
        // Rolled back, then down again: its mark still counts.
        let mut down = record(PeerState::Unreachable, 1, 0, None);
        down.bad_versions = vec![bad(5), bad(6)];
        let mut a = Aggregate::default();
        a.add_record(&up, 1);
        a.add_record(&down, 1);
        assert_eq!(
            a.bad_versions,
            vec![(Version::new(0, 5, 0), 2), (Version::new(0, 6, 0), 1)]
        );
        let mut twice = a.clone();
        twice.add(&a, 1);
        assert_eq!(twice.bad_versions[0], (Version::new(0, 5, 0), 4));
        twice.add(&a, -1);
        assert_eq!(twice, a);
        a.add_record(&down, -1);
        assert_eq!(a.bad_versions, vec![(Version::new(0, 5, 0), 1)]);
    }
}
