//! The cluster view: one record per machine, kept by gossip (Astrolabe-style).
//!
//! Changed records are "hot" and ride on the next few pings and pongs (rumor mongering);
//! the rest of a message's byte budget is filled with random known records (anti-entropy),
//! so every record eventually reaches every peer while traffic per round stays bounded.

use std::{collections::VecDeque, sync::Arc};

use rand::{Rng, RngExt};
use rustc_hash::FxHashMap;
use smon_proto::{MachineRecord, Membership, wire_size};

/// Rumors beyond what a few messages can carry would only go stale in the queue.
const MAX_HOT: usize = 128;
/// Random known records added to each message (anti-entropy).
const ANTI_ENTROPY_RECORDS: usize = 6;

#[derive(Clone, Debug)]
struct Slot {
    record: Arc<MachineRecord>,
    /// Local change sequence number, for "what changed since" queries.
    seq: u64,
    /// Encoded size, computed once.
    size: u32,
    /// Times this record will still be passed on as a rumor (0: not in the hot queue).
    hot_left: u32,
}

#[derive(Clone, Debug)]
pub struct View {
    membership: Arc<Membership>,
    slots: FxHashMap<u32, Slot>,
    /// The keys of `slots`, for uniform random picks.
    known: Vec<u32>,
    hot: VecDeque<u32>,
    seq: u64,
}

/// True when `new` should replace `old`: higher rev, and at equal revs the owner's word that
/// a peer is up beats a third party's observation.
pub fn supersedes(new: &MachineRecord, old: &MachineRecord) -> bool {
    (new.rev, new.state.is_up()) > (old.rev, old.state.is_up())
}

impl View {
    pub fn new(membership: Arc<Membership>) -> Self {
        Self {
            membership,
            slots: FxHashMap::default(),
            known: Vec::new(),
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
        if let Some(slot) = self.slots.get(&record.machine)
            && !supersedes(&record, &slot.record)
        {
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
        let slot = Slot {
            record,
            seq: self.seq,
            size,
            hot_left: retransmits,
        };
        // The newest rumor goes first: it is the one fewest peers know.
        match self.slots.insert(machine, slot) {
            None => {
                self.known.push(machine);
                self.hot.push_front(machine);
            }
            Some(old) if old.hot_left == 0 => self.hot.push_front(machine),
            Some(_) => {} // already queued
        }
        // Bound the rumor queue: the oldest rumors are the ones most already know.
        while self.hot.len() > MAX_HOT {
            if let Some(dropped) = self.hot.pop_back()
                && let Some(slot) = self.slots.get_mut(&dropped)
            {
                slot.hot_left = 0;
            }
        }
    }

    /// Records for one outgoing message, within `budget` bytes.
    pub fn select_gossip(&mut self, budget: usize, rng: &mut impl Rng) -> Vec<Arc<MachineRecord>> {
        let mut out: Vec<Arc<MachineRecord>> = Vec::new();
        let mut used = 0usize;
        let mut requeue = Vec::new();
        while let Some(machine) = self.hot.pop_front() {
            let Some(slot) = self.slots.get_mut(&machine) else {
                continue;
            };
            if used + slot.size as usize > budget {
                self.hot.push_front(machine);
                break;
            }
            used += slot.size as usize;
            out.push(slot.record.clone());
            slot.hot_left = slot.hot_left.saturating_sub(1);
            if slot.hot_left > 0 {
                requeue.push(machine);
            }
        }
        self.hot.extend(requeue);
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
