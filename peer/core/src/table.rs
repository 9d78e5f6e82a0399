//! One table of the cluster view: an entry per child of a zone (a machine's record in a leaf
//! zone, a child zone's aggregate row otherwise), kept by gossip (Astrolabe-style).
//!
//! Changed entries are "hot" and ride on the next few pings and pongs (rumor mongering); the
//! rest of a message's byte budget is filled with random known entries (anti-entropy), so every
//! entry eventually reaches every peer that shares the table while traffic stays bounded.
//!
//! Rumors come in two classes. A change of what a machine or zone *is* (peer states, versions,
//! livetags, application states) is news and goes first; a change of figures only (load,
//! counters, times), which every peer makes about every round, goes after. Otherwise an
//! application that stops on one machine would wait behind a hundred load averages before
//! anybody heard of it.

use std::{collections::VecDeque, sync::Arc};

use rand::{Rng, RngExt};
use serde::Serialize;
use smon_proto_types::{MachineRecord, RowOrder, ZoneRow, wire_size};

/// Rumors beyond what a few messages can carry would only go stale in the queue.
const MAX_HOT: usize = 128;
/// News rumors queued beyond this: feedback shortens them (see [`Table::merge`]).
const CONGESTED: usize = 16;

/// What a table holds: versions of an entry are totally ordered, newest greatest.
pub trait Entry: Serialize {
    type Order: Ord + Copy + std::fmt::Debug;

    fn order(&self) -> Self::Order;

    /// `Some(self.order())` if `self` is newer than an entry of order `held` (cheaper than
    /// `order` when it can tell without the whole order).
    fn newer_than(&self, held: &Self::Order) -> Option<Self::Order> {
        let order = self.order();
        (order > *held).then_some(order)
    }

    /// The news the entry tells (not its figures): equal keys are the same news. Its
    /// fingerprint goes into digests, and hearing the same news back is feedback.
    fn news_key(&self) -> (u64, u64);

    fn is_news(&self, old: &Self) -> bool {
        self.news_key() != old.news_key()
    }

    fn fingerprint(&self) -> u16 {
        fingerprint(self.news_key())
    }
}

impl Entry for MachineRecord {
    type Order = (u64, u64, u64);

    fn order(&self) -> Self::Order {
        MachineRecord::order(self)
    }

    fn newer_than(&self, held: &Self::Order) -> Option<Self::Order> {
        // The content hash is only needed at equal revs.
        match (self.news_rev, self.rev).cmp(&(held.0, held.1)) {
            std::cmp::Ordering::Less => None,
            std::cmp::Ordering::Greater => Some(self.order()),
            std::cmp::Ordering::Equal => {
                let order = self.order();
                (order > *held).then_some(order)
            }
        }
    }

    fn news_key(&self) -> (u64, u64) {
        MachineRecord::news_key(self)
    }
}

impl Entry for ZoneRow {
    type Order = RowOrder;

    fn order(&self) -> RowOrder {
        self.order
    }

    fn news_key(&self) -> (u64, u64) {
        ZoneRow::news_key(self)
    }
}

/// Bytes per place in a digest.
pub const DIGEST_BYTES: usize = 2;

/// What stands for the news of an entry in a digest; 0 stands for no entry. Two bytes: with
/// one, two versions collide once in 255 and the stale one is then never pulled.
pub fn fingerprint((news, tiebreak): (u64, u64)) -> u16 {
    // The splitmix64 finalizer: every bit of both parts moves every bit of the result.
    let mut z = news ^ tiebreak.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % 65_535) as u16 + 1
}

#[derive(Clone, Debug)]
struct Slot<E: Entry> {
    entry: Arc<E>,
    order: E::Order,
    /// Local change sequence number, for "what changed since" queries.
    seq: u64,
    /// [`Entry::fingerprint`], computed once.
    fingerprint: u16,
    /// Encoded size, computed when first needed (0: not yet): most entries are replaced
    /// before they are ever sent.
    size: u32,
    /// Times this entry will still be passed on as a rumor.
    hot_left: u32,
    /// The rumor queue that holds it: `Some(true)` news, `Some(false)` figures.
    queued: Option<bool>,
}

impl<E: Entry> Slot<E> {
    fn size(&mut self) -> usize {
        if self.size == 0 {
            self.size = wire_size(&*self.entry) as u32;
        }
        self.size as usize
    }
}

/// What storing an entry replaced, for the running sums of the view.
pub struct Stored<E: Entry> {
    pub old: Option<(Arc<E>, E::Order)>,
    pub order: E::Order,
    pub news: bool,
}

#[derive(Clone, Debug)]
pub struct Table<E: Entry> {
    /// By the child's place in the zone.
    slots: Vec<Option<Slot<E>>>,
    /// The occupied places, for uniform random picks.
    known: Vec<u32>,
    /// Rumors of news, then rumors of figures (see the module's doc).
    news: VecDeque<u32>,
    hot: VecDeque<u32>,
    /// How many times a changed entry is passed on: about log2 of the peers that share the
    /// table, enough for a rumor to reach them all with high probability together with
    /// anti-entropy.
    retransmits: u32,
}

impl<E: Entry> Table<E> {
    /// A table of `width` places, shared by `sharers` peers.
    pub fn new(width: usize, sharers: usize) -> Self {
        Self {
            slots: (0..width).map(|_| None).collect(),
            known: Vec::new(),
            news: VecDeque::new(),
            hot: VecDeque::new(),
            retransmits: (usize::BITS - sharers.leading_zeros()) + 2,
        }
    }

    pub fn width(&self) -> usize {
        self.slots.len()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn get(&self, slot: u32) -> Option<&Arc<E>> {
        self.slots.get(slot as usize)?.as_ref().map(|s| &s.entry)
    }

    /// The entry at `slot` and its change sequence number.
    pub fn get_seq(&self, slot: u32) -> Option<(&Arc<E>, u64)> {
        self.slots
            .get(slot as usize)?
            .as_ref()
            .map(|s| (&s.entry, s.seq))
    }

    /// Entries by place: `None` where nothing is known.
    pub fn places(&self) -> impl Iterator<Item = Option<&Arc<E>>> {
        self.slots.iter().map(|s| s.as_ref().map(|s| &s.entry))
    }

    /// Rumors waiting: (news, figures).
    pub fn rumors(&self) -> (usize, usize) {
        (self.news.len(), self.hot.len())
    }

    /// Store `entry` at `slot` if it is newer than what is held; `None` if it was not.
    pub fn merge(&mut self, slot: u32, entry: Arc<E>, seq: u64) -> Option<Stored<E>> {
        let congested = self.news.len() > CONGESTED;
        let held = self.slots.get_mut(slot as usize)?;
        let Some(held) = held else {
            let order = entry.order();
            return Some(self.store(slot, entry, order, seq));
        };
        // Whoever sent us the news we hold knows it (whatever its figures). When news piles
        // up (everybody's record changed at once), a rumor told to those who know it already
        // is passed on fewer times (rumor mongering with feedback, Demers et al.), so the
        // pile drains and later news is not stuck behind it; otherwise every rumor gets all
        // its retransmissions, which keeps the tail short.
        let feedback = congested && entry.fingerprint() == held.fingerprint;
        let stored = entry
            .newer_than(&held.order)
            .map(|order| self.store(slot, entry, order, seq));
        if feedback && let Some(held) = self.slots[slot as usize].as_mut() {
            held.hot_left = held.hot_left.saturating_sub(1);
        }
        stored
    }

    /// The fingerprint of each place (see [`fingerprint`]), appended to `out`.
    pub fn digest(&self, out: &mut Vec<u8>) {
        for slot in &self.slots {
            let fp = slot.as_ref().map_or(0, |s| s.fingerprint);
            out.extend(fp.to_le_bytes());
        }
    }

    /// Add the entries whose fingerprint differs from `digest` (the partner's of this
    /// table) to a message, except at `skip` (what the partner computes itself).
    pub fn select_differing(
        &mut self,
        digest: &[u8],
        skip: Option<u32>,
        budget: usize,
        used: &mut usize,
        out: &mut Vec<Arc<E>>,
    ) {
        let theirs = digest
            .chunks_exact(DIGEST_BYTES)
            .map(|b| u16::from_le_bytes([b[0], b[1]]));
        for (slot, (held, theirs)) in self.slots.iter_mut().zip(theirs).enumerate() {
            let Some(held) = held else { continue };
            if held.fingerprint == theirs {
                // The partner knows this news: a rumor of it told to those who know it
                // already is passed on fewer times (feedback, Demers et al.), so a wave of
                // news drains once it has spread, and later news is not stuck behind it.
                if held.queued == Some(true) {
                    held.hot_left = held.hot_left.saturating_sub(1);
                }
                continue;
            }
            if Some(slot as u32) == skip {
                continue;
            }
            let size = held.size();
            if *used + size > budget {
                continue;
            }
            *used += size;
            out.push(held.entry.clone());
        }
    }

    /// Store `entry` at `slot` unconditionally (the owner writing its own record, a peer its
    /// own computation of a zone's row).
    pub fn store(&mut self, slot: u32, entry: Arc<E>, order: E::Order, seq: u64) -> Stored<E> {
        let retransmits = self.retransmits;
        let old = self.slots[slot as usize].take();
        let was = old.as_ref().and_then(|o| o.queued);
        let is_news = old.as_ref().is_none_or(|o| entry.is_news(&o.entry));
        let (news, hot_left) = match &old {
            Some(o) if !is_news => {
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
        if old.is_none() {
            self.known.push(slot);
        }
        let fingerprint = entry.fingerprint();
        self.slots[slot as usize] = Some(Slot {
            entry,
            order,
            seq,
            fingerprint,
            size: 0,
            hot_left,
            queued: Some(news),
        });
        // The newest rumor goes first: it is the one fewest peers know.
        match was {
            Some(q) if q == news => {} // already queued
            Some(q) => {
                self.queue(q).retain(|&s| s != slot);
                self.queue(news).push_front(slot);
            }
            None => self.queue(news).push_front(slot),
        }
        // Bound the rumor queues: the oldest rumors are the ones most already know.
        for news in [true, false] {
            while self.queue(news).len() > MAX_HOT {
                if let Some(dropped) = self.queue(news).pop_back()
                    && let Some(slot) = self.slots[dropped as usize].as_mut()
                {
                    slot.hot_left = 0;
                    slot.queued = None;
                }
            }
        }
        Stored {
            old: old.map(|o| (o.entry, o.order)),
            order,
            news: is_news,
        }
    }

    fn queue(&mut self, news: bool) -> &mut VecDeque<u32> {
        if news { &mut self.news } else { &mut self.hot }
    }

    /// Add up to `max` of this table's rumors of one class (`news` or figures) to a message,
    /// within `budget` bytes of which `used` are taken. Returns how many were added.
    pub fn select_rumors(
        &mut self,
        news: bool,
        (budget, max): (usize, usize),
        used: &mut usize,
        out: &mut Vec<Arc<E>>,
    ) -> usize {
        let mut requeue = Vec::new();
        let mut added = 0;
        let queue = if news { &mut self.news } else { &mut self.hot };
        while added < max
            && let Some(slot) = queue.pop_front()
        {
            let Some(held) = self.slots[slot as usize].as_mut() else {
                continue;
            };
            if held.hot_left == 0 {
                held.queued = None; // the peers we talked to knew it already
                continue;
            }
            if out.iter().any(|e| Arc::ptr_eq(e, &held.entry)) {
                requeue.push(slot); // already in the message (pulled by a digest)
                continue;
            }
            if *used + held.size() > budget {
                queue.push_front(slot);
                break;
            }
            *used += held.size();
            out.push(held.entry.clone());
            added += 1;
            held.hot_left -= 1;
            if held.hot_left > 0 {
                requeue.push(slot);
            } else {
                held.queued = None;
            }
        }
        queue.extend(requeue);
        added
    }

    /// Anti-entropy: add one random known entry if it fits and is not in `out` yet; false
    /// if it did not fit.
    pub fn select_random(
        &mut self,
        rng: &mut impl Rng,
        budget: usize,
        used: &mut usize,
        out: &mut Vec<Arc<E>>,
    ) -> bool {
        if self.known.is_empty() {
            return true;
        }
        let slot = self.known[rng.random_range(0..self.known.len())];
        let held = self.slots[slot as usize].as_mut().expect("known");
        if out.iter().any(|e| Arc::ptr_eq(e, &held.entry)) {
            return true;
        }
        let size = held.size();
        if *used + size > budget {
            return false;
        }
        *used += size;
        out.push(held.entry.clone());
        true
    }

    #[cfg(test)]
    pub fn hot_left(&self, slot: u32) -> Option<(u32, Option<bool>)> {
        self.slots[slot as usize]
            .as_ref()
            .map(|s| (s.hot_left, s.queued))
    }

    #[cfg(test)]
    pub fn retransmits(&self) -> u32 {
        self.retransmits
    }
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::Xoshiro256PlusPlus};
    use smon_proto_types::{AppState, AppStatus, DesiredState, PeerState, Version};

    use super::*;

    fn record(machine: u32, rev: u64, load: u16, app: AppState) -> Arc<MachineRecord> {
        Arc::new(MachineRecord {
            rev,
            // News revisions change with what the record tells, not with its figures.
            news_rev: match app {
                AppState::Running => 1,
                AppState::Stopped => 3,
                _ => 10,
            },
            state: PeerState::Running,
            load,
            apps: vec![AppStatus {
                name: "a".into(),
                version: Version::new(1, 0, 0),
                desired: DesiredState::Online,
                state: app,
                restarts: 0,
                reason: None,
            }],
            ..MachineRecord::empty(machine)
        })
    }

    fn select(t: &mut Table<MachineRecord>, budget: usize) -> Vec<Arc<MachineRecord>> {
        let mut out = Vec::new();
        let mut used = 0;
        for news in [true, false] {
            t.select_rumors(news, (budget, usize::MAX), &mut used, &mut out);
        }
        out
    }

    #[test]
    fn news_goes_before_figures_and_figures_do_not_prolong_it() {
        let mut t = Table::new(64, 64);
        let _rng = Xoshiro256PlusPlus::seed_from_u64(1);
        for m in 0..64 {
            t.merge(m, record(m, 1, 0, AppState::Running), 0);
        }
        // Drain the first news (every record was new).
        while t.rumors().0 > 0 {
            select(&mut t, 640);
        }
        // Every machine's load changes (figures), then one application stops (news).
        for m in 0..64 {
            assert!(t.merge(m, record(m, 2, 7, AppState::Running), 0).is_some());
        }
        assert_eq!(t.rumors(), (0, 64));
        assert!(
            t.merge(40, record(40, 3, 7, AppState::Stopped), 0)
                .is_some()
        );
        assert_eq!(t.rumors(), (1, 63));
        let first = select(&mut t, 640);
        assert_eq!(first[0].machine, 40, "the news leads the message");
        // Figures that follow the news keep it news, without extending it.
        let left = t.retransmits() - 1;
        assert!(
            t.merge(40, record(40, 4, 9, AppState::Stopped), 0)
                .is_some()
        );
        assert_eq!(t.hot_left(40), Some((left, Some(true))));
        // Hearing it back from a peer that knows it: no effect while news is scarce.
        assert!(
            t.merge(40, record(40, 4, 9, AppState::Stopped), 0)
                .is_none()
        );
        assert_eq!(t.hot_left(40), Some((left, Some(true))));
        let mut sent = 0;
        for _ in 0..100 {
            sent += select(&mut t, 640)
                .iter()
                .filter(|r| r.machine == 40)
                .count();
        }
        assert!(sent >= left as usize, "sent {sent}");
        assert_eq!(t.rumors().0, 0);
        assert_eq!(t.hot_left(40).unwrap().1, None);

        // News piles up (every application stopped at once): feedback shortens the rumors.
        for m in 0..64 {
            assert!(t.merge(m, record(m, 10, 7, AppState::Failed), 0).is_some());
        }
        assert!(t.rumors().0 > CONGESTED);
        let before = t.hot_left(3).unwrap().0;
        assert!(t.merge(3, record(3, 10, 7, AppState::Failed), 0).is_none());
        assert_eq!(t.hot_left(3).unwrap().0, before - 1);
    }

    #[test]
    fn news_outranks_any_number_of_figures_and_ties_resolve_the_same_everywhere() {
        let mut t = Table::new(1, 2);
        let news = Arc::new(MachineRecord {
            news_rev: 5,
            rev: 5,
            state: PeerState::Stopped,
            ..MachineRecord::empty(0)
        });
        let figures = Arc::new(MachineRecord {
            news_rev: 4,
            rev: 90,
            state: PeerState::Running,
            load: 3,
            ..MachineRecord::empty(0)
        });
        assert!(t.merge(0, figures.clone(), 0).is_some());
        assert!(t.merge(0, news.clone(), 0).is_some());
        assert!(t.merge(0, figures, 0).is_none());
        // Two observers wrote different things at the same revs: both tables end on one.
        let other = Arc::new(MachineRecord {
            state: PeerState::Unreachable,
            ..(*news).clone()
        });
        let mut u = Table::new(1, 2);
        u.merge(0, other.clone(), 0);
        u.merge(0, news.clone(), 0);
        t.merge(0, other, 0);
        assert_eq!(t.get(0), u.get(0));
    }
}
