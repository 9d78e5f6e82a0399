//! The cluster view as Astrolabe zones (paper 002, §2.1): a peer holds the records of the
//! machines of its own leaf zone, and for each zone on its path up to the root one aggregate
//! row per child of that zone. That is O(k · log_k N) entries, not N.
//!
//! ```text
//!   level 0   root table:  [ zone A ][ zone B ][ zone C ]      rows of the root's children
//!   level 1   table of B:  [ B1 ][ B2 ][ B3 ]...               rows of B's children
//!   level 2   table of B2: [ m17 ][ m18 ][ me ][ m20 ]...      records of B2's machines
//! ```
//!
//! The rows of its own zones (B2 in B's table, B in the root's, and the root's aggregate) a
//! peer computes itself from the table below, and never takes from gossip; the others come
//! from peers of those zones. Two peers share the tables of their common zones, and an
//! exchange carries the rumors of exactly those (`select_gossip`).
//!
//! Each table keeps running sums of its entries (counts are additive), so a changed entry
//! costs O(entry), not O(table). News is passed up at once; figures (load, times) at most once
//! a round, when the peer's own rows are also re-issued so that their age stays meaningful.

mod choice;
mod gossip;

use std::sync::Arc;

use rand::{Rng, RngExt};
use smon_proto_types::{
    Aggregate, BAD_SAMPLE, BadMark, MAX_BAD_VERSIONS, MachineRecord, Membership, PeerState, Reason,
    RowOrder, ZoneIdx, ZoneRow, ZoneTree,
    aggregate::{MISSING_SAMPLE, UP_SAMPLE},
};

use crate::table::{DIGEST_BYTES, Stored, Table};

/// Random known entries added to each message (anti-entropy).
const ANTI_ENTROPY_ENTRIES: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Dirty {
    Clean,
    Figures,
    News,
}

#[derive(Clone, Debug)]
enum Entries {
    Records(Table<MachineRecord>),
    Rows(Table<ZoneRow>),
}

/// The table of one zone on the peer's path, with the running sums of its entries.
#[derive(Clone, Debug)]
struct Level {
    zone: ZoneIdx,
    entries: Entries,
    sum: Aggregate,
    order: RowOrder,
    /// Per place, what a row needs beyond the sums, kept next to each other so that
    /// computing a row reads one small array rather than every entry.
    marks: Vec<Mark>,
    dirty: Dirty,
}

/// The non-additive parts of an entry (or, unknown, of a place nothing was heard of).
#[derive(Clone, Copy, Debug, Default)]
struct Mark {
    known: bool,
    /// Machines known to run a peer, and the others.
    up: u32,
    missing: u32,
    load_min: u16,
    load_max: u16,
    newest_ms: u64,
    as_of_ms: u64,
    /// The entry marks versions bad (a record's own, or a row's sample).
    bad: bool,
}

impl Mark {
    fn unknown(machines: usize) -> Self {
        Mark {
            missing: machines as u32,
            ..Mark::default()
        }
    }

    fn of_record(r: &MachineRecord) -> Self {
        let up = r.state.is_up();
        Mark {
            known: true,
            up: u32::from(up),
            missing: u32::from(!up),
            load_min: r.load,
            load_max: r.load,
            newest_ms: r.changed_ms,
            as_of_ms: 0,
            bad: !r.bad_versions.is_empty(),
        }
    }

    fn of_row(r: &ZoneRow) -> Self {
        Mark {
            known: true,
            up: r.agg.up(),
            missing: r.agg.missing(),
            load_min: r.agg.load.min,
            load_max: r.agg.load.max,
            newest_ms: r.agg.newest_change_ms,
            as_of_ms: r.order.as_of_ms,
            bad: !r.agg.bad_sample.is_empty(),
        }
    }
}

impl Level {
    fn note<E: crate::table::Entry>(&mut self, stored: &Stored<E>) {
        let d = if stored.news {
            Dirty::News
        } else {
            Dirty::Figures
        };
        self.dirty = self.dirty.max(d);
    }
}

#[derive(Clone, Debug)]
pub struct View {
    membership: Arc<Membership>,
    tree: Arc<ZoneTree>,
    me: Option<u32>,
    levels: Vec<Level>,
    /// This peer's computation of the root's row: the whole cluster.
    root: Arc<ZoneRow>,
    /// Partner choice by level ([`View::level_weights`]).
    weights: Vec<u32>,
    /// The deepest of our zones whose row, as another peer computed it, knows news that
    /// ours does not: the next partner comes from there.
    behind: Option<usize>,
    seq: u64,
    /// Per place of the leaf table: when (this peer's clock, [`View::set_clock`]) a newer
    /// version of its record was last taken. Owners re-issue their records every few rounds
    /// (a heartbeat), so a record nobody refreshed grows old here, whatever the clocks of
    /// other machines say (Astrolabe's and SWIM's ageing by the viewer's own clock).
    heard_ms: Vec<u64>,
    clock: u64,
}

/// True when `new` should replace `old` (see [`MachineRecord::order`]).
pub fn supersedes(new: &MachineRecord, old: &MachineRecord) -> bool {
    new.order() > old.order()
}

impl View {
    /// The view of machine `me` (None: a machine not in the list, which holds the root's
    /// table only).
    pub fn new(membership: Arc<Membership>, me: Option<u32>) -> Self {
        let tree = membership.zones().clone();
        let path = match me {
            Some(m) => tree.path(m),
            None if tree.is_empty() => Vec::new(),
            None => vec![ZoneTree::ROOT],
        };
        let levels = path
            .iter()
            .map(|&z| {
                let zone = tree.zone(z);
                let (entries, marks) = if zone.is_leaf() {
                    let marks = vec![Mark::unknown(1); zone.len()];
                    (Entries::Records(Table::new(zone.len(), zone.len())), marks)
                } else {
                    let marks = zone
                        .children
                        .clone()
                        .map(|c| Mark::unknown(tree.zone(c).len()))
                        .collect();
                    let table = Table::new(zone.children.len(), zone.len());
                    (Entries::Rows(table), marks)
                };
                Level {
                    zone: z,
                    entries,
                    sum: Aggregate::default(),
                    order: RowOrder::default(),
                    marks,
                    dirty: Dirty::News,
                }
            })
            .collect();
        let root = Arc::new(ZoneRow {
            zone: ZoneTree::ROOT,
            order: RowOrder::default(),
            agg: Aggregate {
                machines: tree.machine_count() as u32,
                ..Aggregate::default()
            },
        });
        let mut view = Self {
            membership,
            tree,
            me,
            levels,
            root,
            weights: Vec::new(),
            behind: None,
            seq: 0,
            heard_ms: Vec::new(),
            clock: 0,
        };
        view.weights = view.level_weights();
        view
    }

    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    pub fn tree(&self) -> &Arc<ZoneTree> {
        &self.tree
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The zones from the root down to this peer's leaf zone.
    pub fn path(&self) -> impl Iterator<Item = ZoneIdx> + '_ {
        self.levels.iter().map(|l| l.zone)
    }

    /// The whole cluster as this peer computed it (after the last [`View::flush`]).
    pub fn root(&self) -> &Arc<ZoneRow> {
        &self.root
    }

    /// Records and rows held.
    pub fn rows_held(&self) -> usize {
        self.levels
            .iter()
            .map(|l| match &l.entries {
                Entries::Records(t) => t.len(),
                Entries::Rows(t) => t.len(),
            })
            .sum()
    }

    /// Rumors waiting in all tables: (news, figures).
    pub fn rumors(&self) -> (usize, usize) {
        self.levels.iter().fold((0, 0), |(n, f), l| {
            let (a, b) = match &l.entries {
                Entries::Records(t) => t.rumors(),
                Entries::Rows(t) => t.rumors(),
            };
            (n + a, f + b)
        })
    }

    fn leaf(&self) -> Option<&Table<MachineRecord>> {
        match &self.levels.last()?.entries {
            Entries::Records(t) => Some(t),
            Entries::Rows(_) => None,
        }
    }

    /// The record of `machine`, if it is one of this peer's leaf zone and known.
    pub fn get(&self, machine: u32) -> Option<&MachineRecord> {
        let slot = self.leaf_slot(machine)?;
        self.leaf()?.get(slot).map(|r| &**r)
    }

    pub fn is_known_up(&self, machine: u32) -> bool {
        self.get(machine).is_some_and(|r| r.state.is_up())
    }

    /// The records of this peer's leaf zone, with their change sequence numbers.
    pub fn records(&self) -> impl Iterator<Item = (&MachineRecord, u64)> {
        let leaf = self.leaf();
        (0..leaf.map_or(0, |t| t.width() as u32))
            .filter_map(move |s| leaf.and_then(|t| t.get_seq(s)).map(|(r, q)| (&**r, q)))
    }

    /// The rows this peer holds, level by level: (level's zone, child zone, row).
    pub fn rows(&self) -> impl Iterator<Item = (ZoneIdx, ZoneIdx, Option<&Arc<ZoneRow>>)> {
        self.levels.iter().flat_map(move |l| {
            let children = self.tree.zone(l.zone).children.clone();
            let table = match &l.entries {
                Entries::Rows(t) => Some(t),
                Entries::Records(_) => None,
            };
            children.map(move |c| {
                let slot = self.tree.zone(c).slot;
                (l.zone, c, table.and_then(|t| t.get(slot)))
            })
        })
    }

    /// Whether zone `z` is one of this peer's own (on its path).
    pub fn is_own(&self, z: ZoneIdx) -> bool {
        self.levels.iter().any(|l| l.zone == z)
    }

    fn leaf_slot(&self, machine: u32) -> Option<u32> {
        let leaf = self.levels.last()?.zone;
        (self.tree.leaf_of(machine)? == leaf).then(|| self.tree.slot_in_leaf(machine))?
    }

    // ---- storing ---------------------------------------------------------------------------

    /// Store a record of this peer's leaf zone if it is newer than the one held; returns
    /// whether it was. Records of other zones are not this peer's to hold.
    pub fn merge(&mut self, record: Arc<MachineRecord>) -> bool {
        self.put_record(record, false)
    }

    /// Store a record unconditionally (the owner writing its own, or an observation).
    pub fn store(&mut self, record: Arc<MachineRecord>) {
        self.put_record(record, true);
    }

    fn put_record(&mut self, record: Arc<MachineRecord>, force: bool) -> bool {
        let Some(slot) = self.leaf_slot(record.machine) else {
            return false;
        };
        if record.bad_versions.len() > MAX_BAD_VERSIONS {
            return false; // not a record any peer writes: ignored, so no sum can overflow
        }
        self.seq += 1;
        let seq = self.seq;
        let level = self.levels.last_mut().expect("a leaf slot has a level");
        let Entries::Records(table) = &mut level.entries else {
            return false;
        };
        let stored = if force {
            let order = record.order();
            Some(table.store(slot, record.clone(), order, seq))
        } else {
            table.merge(slot, record.clone(), seq)
        };
        let Some(stored) = stored else {
            self.seq -= 1;
            return false;
        };
        if let Some((old, (n, r, t))) = &stored.old {
            level.order.add(*n, *r, *t, -1);
            level.sum.add_record(old, -1);
        }
        let (n, r, t) = stored.order;
        level.order.add(n, r, t, 1);
        level.sum.add_record(&record, 1);
        level.marks[slot as usize] = Mark::of_record(&record);
        level.note(&stored);
        let slot = slot as usize;
        if self.heard_ms.len() <= slot {
            self.heard_ms.resize(slot + 1, 0);
        }
        self.heard_ms[slot] = self.clock;
        true
    }

    /// The time of the input being handled (this peer's clock, ms), for the records' ages.
    pub fn set_clock(&mut self, now: u64) {
        self.clock = now;
    }

    /// How long ago (this peer's clock) a newer version of `machine`'s record was last
    /// taken, if it is of this peer's leaf zone and known.
    pub fn age_ms(&self, machine: u32) -> Option<u64> {
        self.get(machine)?;
        let slot = self.leaf_slot(machine)? as usize;
        Some(self.clock.saturating_sub(*self.heard_ms.get(slot)?))
    }

    /// Store a row of a sibling zone of one of this peer's zones, if it is newer.
    fn merge_row(&mut self, row: Arc<ZoneRow>) -> bool {
        let Some(zone) = self.tree.get(row.zone) else {
            return false;
        };
        let Some(parent) = zone.parent else {
            return false; // the root's row is everybody's own computation
        };
        let depth = self.tree.zone(parent).depth as usize;
        if self.levels.get(depth).map(|l| l.zone) != Some(parent)
            || !plausible(&row.agg, zone.len())
        {
            return false;
        }
        if self.levels.get(depth + 1).map(|l| l.zone) == Some(row.zone) {
            // A row of one of our own zones, computed by another peer of it: never taken,
            // but if it knows news we do not, the news is in that zone's table (or below):
            // the next partner comes from that zone, and its digest answer brings the news.
            let Entries::Rows(table) = &self.levels[depth].entries else {
                return false;
            };
            let mine = table.get(zone.slot).map_or(0, |r| r.order.news);
            if row.order.news > mine {
                self.behind = self.behind.max(Some(depth + 1));
            }
            return false;
        }
        self.put_row(depth, zone.slot, row, false)
    }

    fn put_row(&mut self, depth: usize, slot: u32, row: Arc<ZoneRow>, force: bool) -> bool {
        self.seq += 1;
        let seq = self.seq;
        let level = &mut self.levels[depth];
        let Entries::Rows(table) = &mut level.entries else {
            return false;
        };
        let stored = if force {
            Some(table.store(slot, row.clone(), row.order, seq))
        } else {
            table.merge(slot, row.clone(), seq)
        };
        let Some(stored) = stored else {
            self.seq -= 1;
            return false;
        };
        if let Some((old, o)) = &stored.old {
            level.order.add(o.news, o.rev, o.tiebreak, -1);
            level.sum.add(&old.agg, -1);
        }
        level
            .order
            .add(row.order.news, row.order.rev, row.order.tiebreak, 1);
        level.sum.add(&row.agg, 1);
        level.marks[slot as usize] = Mark::of_row(&row);
        level.note(&stored);
        true
    }

    /// Take in what a peer sent: records of this peer's leaf zone, rows of the tables it
    /// holds. Anything else (another zone's, a bad index, an impossible count) is ignored.
    pub fn absorb(&mut self, records: Vec<Arc<MachineRecord>>, rows: Vec<Arc<ZoneRow>>) {
        for record in records {
            self.merge(record);
        }
        for row in rows {
            self.merge_row(row);
        }
    }

    // ---- computing this peer's own rows ------------------------------------------------------

    /// Recompute this peer's own rows from its tables, bottom up: those whose tables changed
    /// news at once, all of them (re-issued at `now`) when `refresh`.
    pub fn flush(&mut self, now: u64, refresh: bool) {
        for depth in (0..self.levels.len()).rev() {
            let dirty = self.levels[depth].dirty;
            if !(dirty == Dirty::News || refresh) {
                continue;
            }
            let row = Arc::new(self.compute(depth, now));
            self.levels[depth].dirty = Dirty::Clean;
            if depth == 0 {
                self.root = row;
            } else {
                let slot = self.tree.zone(self.levels[depth].zone).slot;
                self.put_row(depth - 1, slot, row, true);
            }
        }
    }

    /// The row of the zone at `depth` on this peer's path, from its table: the running sums,
    /// and what the marks say of the rest.
    fn compute(&self, depth: usize, now: u64) -> ZoneRow {
        let level = &self.levels[depth];
        let zone = self.tree.zone(level.zone);
        let mut agg = level.sum.clone();
        agg.machines = zone.len() as u32;
        let mut order = level.order;
        order.as_of_ms = now;
        let (mut lo, mut hi) = (u16::MAX, 0u16);
        let (mut ups, mut missing, mut bad) = (Vec::new(), Vec::new(), Vec::new());
        for (slot, mark) in level.marks.iter().enumerate() {
            if mark.up > 0 {
                (lo, hi) = (lo.min(mark.load_min), hi.max(mark.load_max));
            }
            agg.newest_change_ms = agg.newest_change_ms.max(mark.newest_ms);
            if mark.known && matches!(level.entries, Entries::Rows(_)) {
                order.as_of_ms = order.as_of_ms.min(mark.as_of_ms);
            }
            if mark.up > 0 && ups.len() < UP_SAMPLE {
                ups.push(slot);
            }
            if mark.missing > 0 && missing.len() < MISSING_SAMPLE {
                missing.push(slot);
            }
            if mark.bad && bad.len() < BAD_SAMPLE {
                bad.push(slot as u32);
            }
        }
        agg.load.min = if hi >= lo { lo } else { 0 };
        agg.load.max = hi;
        match &level.entries {
            Entries::Records(table) => {
                let machines = self.tree.machines(level.zone);
                agg.up_sample = ups.iter().map(|&s| machines[s]).collect();
                agg.missing_sample = missing.iter().map(|&s| machines[s]).collect();
                let marks = bad.iter().filter_map(|&s| table.get(s)).flat_map(|r| {
                    r.bad_versions.iter().map(|&bad| BadMark {
                        machine: r.machine,
                        bad,
                    })
                });
                agg.bad_sample = marks.take(BAD_SAMPLE).collect();
            }
            Entries::Rows(table) => {
                let first = zone.children.start;
                for s in ups {
                    let row = table.get(s as u32).expect("up is known");
                    let take = UP_SAMPLE - agg.up_sample.len();
                    agg.up_sample
                        .extend(row.agg.up_sample.iter().take(take).copied());
                }
                for s in missing {
                    let take = MISSING_SAMPLE - agg.missing_sample.len();
                    let sample = match table.get(s as u32) {
                        Some(row) => &row.agg.missing_sample[..],
                        // Nothing heard of that zone yet: its machines are not known to run.
                        None => self.tree.machines(first + s as u32),
                    };
                    agg.missing_sample.extend(sample.iter().take(take).copied());
                }
                let marks = bad.iter().filter_map(|&s| table.get(s));
                let marks = marks.flat_map(|row| row.agg.bad_sample.iter().copied());
                agg.bad_sample = marks.take(BAD_SAMPLE).collect();
            }
        }
        ZoneRow {
            zone: level.zone,
            order,
            agg,
        }
    }

    /// The newest livetag this peer has heard of, in records or rows: what machines *claim*
    /// (records are not signed), so never a version for the operator to sign above.
    pub fn newest_livetag(&self) -> Option<smon_proto_types::LiveTag> {
        let from_root = self.root.agg.livetags.iter().map(|(t, _)| *t);
        let from_records = self.records().map(|(r, _)| r.livetag);
        from_root
            .chain(from_records)
            .reduce(|a, b| if a.is_superseded_by(&b) { b } else { a })
    }

    /// Write an observation about a machine of this peer's leaf zone (one rev above what is
    /// known), with why when that needs saying; observations of other zones' machines are
    /// for their own peers to make.
    pub fn observe(&mut self, machine: u32, state: PeerState, reason: Option<Reason>, now: u64) {
        if self.leaf_slot(machine).is_none() {
            return;
        }
        let mut record = self
            .get(machine)
            .cloned()
            .unwrap_or_else(|| MachineRecord::empty(machine));
        if record.state == state && record.reason == reason {
            return;
        }
        record.rev += 1;
        record.news_rev += 1;
        record.state = state;
        record.reason = reason;
        record.changed_ms = now;
        self.store(Arc::new(record));
    }

    /// Switch to a new membership list: records are re-keyed by the new indexes (those of
    /// machines no longer listed are dropped); rows are kept for the zones whose machines are
    /// the same in the new tree (their samples re-keyed), the others are computed or heard
    /// anew.
    pub fn remap(&mut self, membership: Arc<Membership>, me: Option<u32>, now: u64) {
        let old = std::mem::replace(self, View::new(membership, me));
        let membership = self.membership.clone();
        let renumber = |m: u32| old.membership.get(m).and_then(|id| membership.index_of(id));
        for (record, _) in old.records() {
            if let Some(index) = renumber(record.machine) {
                let mut record = record.clone();
                record.machine = index;
                self.store(Arc::new(record));
            }
        }
        let keys: rustc_hash::FxHashMap<u64, ZoneIdx> =
            self.tree.zones().map(|(z, zone)| (zone.key, z)).collect();
        for (_, child, row) in old.rows() {
            let (Some(row), Some(&z)) = (row, keys.get(&old.tree.zone(child).key)) else {
                continue;
            };
            let mut row = (**row).clone();
            row.zone = z;
            for list in [&mut row.agg.up_sample, &mut row.agg.missing_sample] {
                *list = list.iter().filter_map(|&m| renumber(m)).collect();
            }
            let marks = row.agg.bad_sample.iter();
            let marks = marks.filter_map(|m| {
                Some(BadMark {
                    machine: renumber(m.machine)?,
                    ..*m
                })
            });
            row.agg.bad_sample = marks.collect();
            self.merge_row(Arc::new(row));
        }
        self.flush(now, true);
    }
}

/// Could a row of a zone of `machines` machines be true? Rows that could not are dropped,
/// so that no sum can overflow, whatever peers send.
fn plausible(agg: &Aggregate, machines: usize) -> bool {
    let m = machines as u64;
    let total = |counts: &mut dyn Iterator<Item = u32>| counts.map(u64::from).sum::<u64>() <= m;
    u64::from(agg.machines) == m
        && total(&mut agg.states.iter().copied())
        && total(&mut agg.versions.iter().map(|(_, n)| *n))
        && total(&mut agg.livetags.iter().map(|(_, n)| *n))
        && total(&mut agg.overhead.iter().map(|(_, n)| *n))
        && total(&mut agg.logins.iter().map(|(_, n)| *n))
        && agg
            .apps
            .iter()
            .all(|a| total(&mut a.states.iter().copied()))
        && agg.load.sum <= m * u64::from(u16::MAX)
        && agg.up_sample.len() <= UP_SAMPLE
        && agg.missing_sample.len() <= MISSING_SAMPLE
        && agg.bad_sample.len() <= BAD_SAMPLE
        && agg.bad_versions.len() <= MAX_BAD_VERSIONS * machines.max(1)
        && agg
            .bad_versions
            .iter()
            .map(|(_, n)| u64::from(*n))
            .sum::<u64>()
            <= m * MAX_BAD_VERSIONS as u64
}
