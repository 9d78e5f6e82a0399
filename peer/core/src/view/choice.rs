//! Choosing machines from the zones: gossip partners weighted by level, and machines that may
//! lack a peer (deployment targets).

use super::*;

impl View {
    /// Machines of the zone at `depth` on this peer's path that are not in the zone below
    /// it (for the leaf zone: all but this peer).
    fn siblings(&self, depth: usize) -> u32 {
        let here = self.tree.zone(self.levels[depth].zone).len() as u32;
        let below = self
            .levels
            .get(depth + 1)
            .map_or(1, |l| self.tree.zone(l.zone).len() as u32);
        here - below
    }

    /// How often [`View::partner`] picks each level, in parts of 2^20: a partner within the
    /// zone at depth d (a level at or below d) with probability ln|zone| / ln N. A table
    /// shared by n peers then spreads its news in about as many rounds as the root's, which
    /// every exchange carries: log n rounds at a rate of ln n / ln N exchanges per round.
    /// (With a uniform choice of level the leaf table, shared by a few dozen peers, would be
    /// exchanged in one round of D+1 and be the slowest.)
    pub(super) fn level_weights(&self) -> Vec<u32> {
        let ln_n = (self.tree.machine_count().max(2) as f64).ln();
        let within = |d: usize| match d {
            0 => 1.0,
            d if d < self.levels.len() => {
                (self.tree.zone(self.levels[d].zone).len().max(1) as f64).ln() / ln_n
            }
            _ => 0.0,
        };
        (0..self.levels.len())
            .map(|d| {
                let w = (within(d) - within(d + 1)).max(0.0);
                if self.siblings(d) > 0 {
                    (w * f64::from(1u32 << 20)) as u32
                } else {
                    0
                }
            })
            .collect()
    }

    /// A gossip partner: a uniformly random machine of a sibling zone at a random level
    /// (at the leaf level, another machine of the leaf zone), levels weighted as
    /// [`View::level_weights`] says. Every machine is picked about as often as with a
    /// uniform choice, while every table gets exchanged.
    pub fn partner(&mut self, rng: &mut impl Rng) -> Option<u32> {
        let n = self.tree.machine_count() as u32;
        let Some(me) = self.me else {
            return (n > 0).then(|| rng.random_range(0..n));
        };
        let total: u32 = self.weights.iter().sum();
        if total == 0 {
            return None;
        }
        let depth = match self.behind.take() {
            Some(d) if self.siblings(d) > 0 => d,
            _ => {
                let mut pick = rng.random_range(0..total);
                self.weights.iter().position(|&w| {
                    let hit = pick < w;
                    pick = pick.saturating_sub(w);
                    hit
                })?
            }
        };
        let here = self.tree.zone(self.levels[depth].zone).span.clone();
        let below = match self.levels.get(depth + 1) {
            Some(l) => self.tree.zone(l.zone).span.clone(),
            None => {
                let slot = self.tree.slot_in_leaf(me)? + here.start;
                slot..slot + 1
            }
        };
        let mut at = here.start + rng.random_range(0..self.siblings(depth));
        if at >= below.start {
            at += below.len() as u32;
        }
        Some(self.tree.order()[at as usize])
    }

    /// A random other machine of this peer's leaf zone (or, alone in it, any partner).
    pub fn leaf_partner(&mut self, rng: &mut impl Rng) -> Option<u32> {
        let depth = self.levels.len().checked_sub(1)?;
        if self.me.is_some() && self.siblings(depth) > 0 {
            self.behind = Some(depth);
        }
        self.partner(rng)
    }

    /// A machine that may lack a peer, for target choice: a zone is picked in proportion to
    /// its machines not known to run a peer (exactly known in this peer's leaf zone, from
    /// the rows elsewhere), then one of them (from the row's sample, or any of the zone's
    /// when it has none). `skip`: machines not to pick (tried lately, or this one).
    pub fn pick_missing(&self, rng: &mut impl Rng, skip: impl Fn(u32) -> bool) -> Option<u32> {
        let total = self.missing_candidates(&skip, |_, _| {});
        if total == 0 {
            return None;
        }
        let mut pick = rng.random_range(0..total);
        let mut chosen = None;
        self.missing_candidates(&skip, |weight, candidate| {
            if chosen.is_none() {
                if pick < weight {
                    chosen = Some(candidate);
                } else {
                    pick -= weight;
                }
            }
        });
        match chosen? {
            Candidate::Machine(m) => Some(m),
            Candidate::Zone(z, sample) => {
                let sample: Vec<u32> = sample.iter().copied().filter(|&m| !skip(m)).collect();
                if sample.is_empty() {
                    let machines = self.tree.machines(z);
                    let m = machines[rng.random_range(0..machines.len())];
                    (!skip(m)).then_some(m)
                } else {
                    Some(sample[rng.random_range(0..sample.len())])
                }
            }
        }
    }

    /// Call `each(weight, candidate)` for every candidate of [`View::pick_missing`]; returns
    /// the total weight.
    fn missing_candidates<'a>(
        &'a self,
        skip: &impl Fn(u32) -> bool,
        mut each: impl FnMut(u64, Candidate<'a>),
    ) -> u64 {
        let mut total = 0u64;
        for level in &self.levels {
            match &level.entries {
                Entries::Records(table) => {
                    let machines = self.tree.machines(level.zone);
                    for (slot, record) in table.places().enumerate() {
                        let m = machines[slot];
                        if Some(m) != self.me
                            && !record.is_some_and(|r| r.state.is_up())
                            && !skip(m)
                        {
                            total += 1;
                            each(1, Candidate::Machine(m));
                        }
                    }
                }
                Entries::Rows(table) => {
                    let children = self.tree.zone(level.zone).children.clone();
                    for (child, row) in children.zip(table.places()) {
                        if self.is_own(child) {
                            continue;
                        }
                        let (weight, sample) = match row {
                            Some(row) => (row.agg.missing(), row.agg.missing_sample.as_slice()),
                            None => (self.tree.zone(child).len() as u32, &[][..]),
                        };
                        if weight > 0 {
                            total += u64::from(weight);
                            each(u64::from(weight), Candidate::Zone(child, sample));
                        }
                    }
                }
            }
        }
        total
    }
}

enum Candidate<'a> {
    Machine(u32),
    Zone(ZoneIdx, &'a [u32]),
}
