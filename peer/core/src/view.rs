//! The cluster view: one record per machine, kept by gossip (Astrolabe-style).
//!
//! Changed records are "hot" and ride on the next few pings and pongs (rumor mongering);
//! the rest of a message's byte budget is filled with random known records (anti-entropy),
//! so every record eventually reaches every peer while traffic per round stays bounded.
//!
//! Rumors come in two classes. A change of what a machine *is* (peer state, version, livetag,
//! application states) is news and goes first; a change of its figures only (load, counters),
//! which every peer makes about every round, goes after. Otherwise an application that stops
//! on one machine would wait behind a hundred load averages before anybody heard of it.

use std::{collections::VecDeque, sync::Arc};

use rand::{Rng, RngExt};
use rustc_hash::FxHashMap;
use smon_proto_types::{MachineRecord, Membership, wire_size};

/// Rumors beyond what a few messages can carry would only go stale in the queue.
const MAX_HOT: usize = 128;
/// Random known records added to each message (anti-entropy).
const ANTI_ENTROPY_RECORDS: usize = 6;
/// News rumors queued beyond this: feedback shortens them (see `merge`).
const CONGESTED: usize = 16;

#[derive(Clone, Debug)]
struct Slot {
    record: Arc<MachineRecord>,
    /// Local change sequence number, for "what changed since" queries.
    seq: u64,
    /// Encoded size, computed once.
    size: u32,
    /// Times this record will still be passed on as a rumor.
    hot_left: u32,
    /// The rumor queue that holds it: `Some(true)` news, `Some(false)` figures.
    queued: Option<bool>,
}

#[derive(Clone, Debug)]
pub struct View {
    membership: Arc<Membership>,
    slots: FxHashMap<u32, Slot>,
    /// The keys of `slots`, for uniform random picks.
    known: Vec<u32>,
    /// Rumors of news, then rumors of figures (see the module's doc).
    news: VecDeque<u32>,
    hot: VecDeque<u32>,
    seq: u64,
}

/// True when `new` should replace `old`: higher rev, and at equal revs the owner's word that
/// a peer is up beats a third party's observation.
pub fn supersedes(new: &MachineRecord, old: &MachineRecord) -> bool {
    (new.rev, new.state.is_up()) > (old.rev, old.state.is_up())
}

/// Does `new` tell something other than new figures (load, counters) about its machine?
pub fn is_news(new: &MachineRecord, old: &MachineRecord) -> bool {
    new.state != old.state
        || new.peer_version != old.peer_version
        || new.livetag != old.livetag
        || new.apps != old.apps
        || new.first_deployed_ms != old.first_deployed_ms
}

impl View {
    pub fn new(membership: Arc<Membership>) -> Self {
        Self {
            membership,
            slots: FxHashMap::default(),
            known: Vec::new(),
            news: VecDeque::new(),
            hot: VecDeque::new(),
            seq: 0,
        }
    }

    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn get(&self, machine: u32) -> Option<&MachineRecord> {
        self.slots.get(&machine).map(|s| &*s.record)
    }

    pub fn is_known_up(&self, machine: u32) -> bool {
        self.get(machine).is_some_and(|r| r.state.is_up())
    }

    /// Rumors waiting: (news, figures).
    pub fn rumors(&self) -> (usize, usize) {
        (self.news.len(), self.hot.len())
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// How many times a changed record is passed on: about log2 N, enough for a rumor to
    /// reach everyone with high probability when combined with anti-entropy.
    fn retransmits(&self) -> u32 {
        (usize::BITS - self.membership.len().leading_zeros()) + 2
    }

    /// Store `record` if it is newer than what we have; returns whether it was.
    pub fn merge(&mut self, record: Arc<MachineRecord>) -> bool {
        if record.machine as usize >= self.membership.len() {
            return false;
        }
        if let Some(slot) = self.slots.get_mut(&record.machine)
            && !supersedes(&record, &slot.record)
        {
            // Whoever sent us what we hold knows it. When news piles up (everybody's record
            // changed at once), a rumor told to those who know it already is passed on fewer
            // times (rumor mongering with feedback, Demers et al.), so the pile drains and later
            // news is not stuck behind it; otherwise every rumor gets all its retransmissions,
            // which keeps the tail short.
            if record.rev == slot.record.rev && self.news.len() > CONGESTED {
                slot.hot_left = slot.hot_left.saturating_sub(1);
            }
            return false;
        }
        self.store(record);
        true
    }

    /// Store `record` unconditionally (the owner writing its own record).
    pub fn store(&mut self, record: Arc<MachineRecord>) {
        self.seq += 1;
        let machine = record.machine;
        let size = wire_size(&*record) as u32;
        let retransmits = self.retransmits();
        let old = self.slots.get(&machine);
        let was = old.and_then(|o| o.queued);
        let (news, hot_left) = match old {
            Some(o) if !is_news(&record, &o.record) => {
                if o.queued == Some(true) && o.hot_left > 0 {
                    // News stays news until it has been passed on, whatever figures follow
                    // it; they do not make it last longer.
                    (true, o.hot_left)
                } else {
                    (false, retransmits)
                }
            }
            _ => (true, retransmits),
        };
        let slot = Slot {
            record,
            seq: self.seq,
            size,
            hot_left,
            queued: Some(news),
        };
        if self.slots.insert(machine, slot).is_none() {
            self.known.push(machine);
        }
        // The newest rumor goes first: it is the one fewest peers know.
        match was {
            Some(q) if q == news => {} // already queued
            Some(q) => {
                self.queue(q).retain(|&m| m != machine);
                self.queue(news).push_front(machine);
            }
            None => self.queue(news).push_front(machine),
        }
        // Bound the rumor queues: the oldest rumors are the ones most already know.
        for news in [true, false] {
            while self.queue(news).len() > MAX_HOT {
                if let Some(dropped) = self.queue(news).pop_back()
                    && let Some(slot) = self.slots.get_mut(&dropped)
                {
                    slot.hot_left = 0;
                    slot.queued = None;
                }
            }
        }
    }

    fn queue(&mut self, news: bool) -> &mut VecDeque<u32> {
        if news { &mut self.news } else { &mut self.hot }
    }

    /// Records for one outgoing message, within `budget` bytes.
    pub fn select_gossip(&mut self, budget: usize, rng: &mut impl Rng) -> Vec<Arc<MachineRecord>> {
        let mut out: Vec<Arc<MachineRecord>> = Vec::new();
        let mut used = 0usize;
        for queue in [&mut self.news, &mut self.hot] {
            let mut requeue = Vec::new();
            while let Some(machine) = queue.pop_front() {
                let Some(slot) = self.slots.get_mut(&machine) else {
                    continue;
                };
                if slot.hot_left == 0 {
                    slot.queued = None; // the peers we talked to knew it already
                    continue;
                }
                if used + slot.size as usize > budget {
                    queue.push_front(machine);
                    break;
                }
                used += slot.size as usize;
                out.push(slot.record.clone());
                slot.hot_left -= 1;
                if slot.hot_left > 0 {
                    requeue.push(machine);
                } else {
                    slot.queued = None;
                }
            }
            queue.extend(requeue);
        }
        // Anti-entropy: a few random known records, so nothing depends on rumors alone.
        for _ in 0..self.known.len().min(ANTI_ENTROPY_RECORDS) {
            let machine = self.known[rng.random_range(0..self.known.len())];
            if out.iter().any(|r| r.machine == machine) {
                continue;
            }
            let slot = &self.slots[&machine];
            if used + slot.size as usize > budget {
                break;
            }
            used += slot.size as usize;
            out.push(slot.record.clone());
        }
        out
    }

    /// All records, with their change sequence numbers.
    pub fn records(&self) -> impl Iterator<Item = (&MachineRecord, u64)> {
        self.known.iter().map(|m| {
            let slot = &self.slots[m];
            (&*slot.record, slot.seq)
        })
    }

    /// Switch to a new membership list: records are re-keyed by the new indexes; those of
    /// machines no longer listed are dropped.
    pub fn remap(&mut self, membership: Arc<Membership>) {
        let old = std::mem::replace(&mut self.membership, membership);
        let mut slots: Vec<_> = std::mem::take(&mut self.slots).into_iter().collect();
        slots.sort_unstable_by_key(|(index, _)| *index);
        self.known.clear();
        self.news.clear();
        self.hot.clear();
        for (old_index, slot) in slots {
            let Some(machine) = old.get(old_index) else {
                continue;
            };
            if let Some(new_index) = self.membership.index_of(machine) {
                let mut record = (*slot.record).clone();
                record.machine = new_index;
                self.store(Arc::new(record));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::Xoshiro256PlusPlus};
    use smon_proto_types::{AppState, AppStatus, DesiredState, MachineId, PeerState, Version};

    use super::*;

    fn record(machine: u32, rev: u64, load: u16, app: AppState) -> Arc<MachineRecord> {
        Arc::new(MachineRecord {
            rev,
            state: PeerState::Running,
            load,
            apps: vec![AppStatus {
                name: "a".into(),
                version: Version::new(1, 0, 0),
                desired: DesiredState::Online,
                state: app,
                restarts: 0,
            }],
            ..MachineRecord::empty(machine)
        })
    }

    fn view(n: usize) -> View {
        let machines = (0..n)
            .map(|i| MachineId::local(format!("m{i:03}")))
            .collect();
        View::new(Arc::new(Membership::new(1, machines)))
    }

    #[test]
    fn news_goes_before_figures_and_figures_do_not_prolong_it() {
        let mut v = view(64);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        for m in 0..64 {
            v.merge(record(m, 1, 0, AppState::Running));
        }
        // Drain the first news (every record was new).
        while v.rumors().0 > 0 {
            v.select_gossip(640, &mut rng);
        }
        // Every machine's load changes (figures), then one application stops (news).
        for m in 0..64 {
            assert!(v.merge(record(m, 2, 7, AppState::Running)));
        }
        assert_eq!(v.rumors(), (0, 64));
        assert!(v.merge(record(40, 3, 7, AppState::Stopped)));
        assert_eq!(v.rumors(), (1, 63));
        let first = v.select_gossip(640, &mut rng);
        assert_eq!(first[0].machine, 40, "the news leads the message");
        // Figures that follow the news keep it news, without extending it.
        let left = v.retransmits() - 1;
        assert!(v.merge(record(40, 4, 9, AppState::Stopped)));
        assert_eq!(v.slots[&40].hot_left, left);
        assert_eq!(v.slots[&40].queued, Some(true));
        // Hearing it back from a peer that knows it: no effect while news is scarce.
        assert!(!v.merge(record(40, 4, 9, AppState::Stopped)));
        assert_eq!(v.slots[&40].hot_left, left);
        let mut sent = 0;
        for _ in 0..100 {
            sent += v
                .select_gossip(640, &mut rng)
                .iter()
                .filter(|r| r.machine == 40)
                .count();
        }
        assert!(sent >= left as usize, "sent {sent}");
        assert_eq!(v.rumors().0, 0);
        assert_eq!(v.slots[&40].queued, None);

        // News piles up (every application stopped at once): feedback shortens the rumors.
        for m in 0..64 {
            assert!(v.merge(record(m, 10, 7, AppState::Failed)));
        }
        assert!(v.rumors().0 > CONGESTED);
        let before = v.slots[&3].hot_left;
        assert!(!v.merge(record(3, 10, 7, AppState::Failed)));
        assert_eq!(v.slots[&3].hot_left, before - 1);
    }
}
