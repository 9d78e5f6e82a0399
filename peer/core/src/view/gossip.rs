//! What a peer sends a partner (paper 002, §2.2): the tables the two share, reconciled by
//! digest, then rumors within a byte budget.

use super::*;

impl View {
    /// The depth of the deepest zone this peer and `partner` are both in: they share the
    /// tables of levels 0 to that depth.
    pub fn shared_depth(&self, partner: Option<u32>) -> usize {
        let Some(partner) = partner else { return 0 };
        self.levels
            .iter()
            .rposition(|l| self.tree.contains(l.zone, partner))
            .unwrap_or(0)
    }

    /// The place, in this peer's table at `depth`, of `partner`'s own record, when the two
    /// share that leaf table: the partner's own is always newest. (Rows of the partner's
    /// own zones are sent when they differ: it does not take them, but learns from them
    /// that it is behind.)
    fn partner_own(&self, depth: usize, partner: u32) -> Option<u32> {
        let zone = self.levels.get(depth)?.zone;
        self.tree
            .zone(zone)
            .is_leaf()
            .then(|| self.tree.slot_in_leaf(partner))?
    }

    /// What this peer holds of the tables it shares with `partner`: a two-byte fingerprint
    /// per place, root table first. The partner answers with what differs (Scuttlebutt-style
    /// reconciliation, van Renesse et al. 2008), so a peer that is behind, or a wave of news
    /// that rumors alone would take long to spread, is caught up without redundant sends.
    pub fn digest(&self, partner: Option<u32>) -> Vec<u8> {
        let mut out = Vec::new();
        if self.levels.is_empty() {
            return out;
        }
        for level in &self.levels[..=self.shared_depth(partner)] {
            match &level.entries {
                Entries::Records(t) => t.digest(&mut out),
                Entries::Rows(t) => t.digest(&mut out),
            }
        }
        out
    }

    /// Entries for one message to `partner`, within `budget` bytes: what differs from the
    /// partner's `digest` if it sent one, then the rumors of the tables the two share (news
    /// first, the deepest table first: the partners that share it are the fewest), then a few
    /// random entries of those tables.
    pub fn select_gossip(
        &mut self,
        partner: Option<u32>,
        digest: &[u8],
        (pull_budget, budget): (usize, usize),
        rng: &mut impl Rng,
    ) -> (Vec<Arc<MachineRecord>>, Vec<Arc<ZoneRow>>) {
        let (mut records, mut rows) = (Vec::new(), Vec::new());
        if self.levels.is_empty() {
            return (records, rows);
        }
        let shared = self.shared_depth(partner);
        let mut used = 0;
        let widths: usize = self.levels[..=shared]
            .iter()
            .map(|l| match &l.entries {
                Entries::Records(t) => t.width(),
                Entries::Rows(t) => t.width(),
            })
            .sum::<usize>()
            * DIGEST_BYTES;
        if let Some(partner) = partner
            && digest.len() == widths
        {
            let mut start = widths;
            for depth in (0..=shared).rev() {
                let skip = self.partner_own(depth, partner);
                match &mut self.levels[depth].entries {
                    Entries::Records(t) => {
                        start -= t.width() * DIGEST_BYTES;
                        let theirs = &digest[start..start + t.width() * DIGEST_BYTES];
                        t.select_differing(theirs, skip, pull_budget, &mut used, &mut records)
                    }
                    Entries::Rows(t) => {
                        start -= t.width() * DIGEST_BYTES;
                        let theirs = &digest[start..start + t.width() * DIGEST_BYTES];
                        t.select_differing(theirs, skip, pull_budget, &mut used, &mut rows)
                    }
                }
            }
        }
        // The rumors have a budget of their own. News first, the deepest table first; then
        // figures, one per table in turn, so that a leaf's stream of figures (loads, records
        // re-issued as heartbeats) does not starve the rows' ages above it.
        let budget = used + budget;
        for level in self.levels[..=shared].iter_mut().rev() {
            level.select_rumors(
                true,
                (budget, usize::MAX),
                &mut used,
                (&mut records, &mut rows),
            );
        }
        loop {
            let mut added = 0;
            for level in self.levels[..=shared].iter_mut().rev() {
                added +=
                    level.select_rumors(false, (budget, 1), &mut used, (&mut records, &mut rows));
            }
            if added == 0 {
                break;
            }
        }
        for _ in 0..ANTI_ENTROPY_ENTRIES {
            let level = &mut self.levels[rng.random_range(0..=shared)];
            let fits = match &mut level.entries {
                Entries::Records(t) => t.select_random(rng, budget, &mut used, &mut records),
                Entries::Rows(t) => t.select_random(rng, budget, &mut used, &mut rows),
            };
            if !fits {
                break;
            }
        }
        (records, rows)
    }
}

impl Level {
    /// [`Table::select_rumors`](crate::table::Table::select_rumors) of this level's table, into
    /// the records or the rows of a message.
    fn select_rumors(
        &mut self,
        news: bool,
        limits: (usize, usize),
        used: &mut usize,
        (records, rows): (&mut Vec<Arc<MachineRecord>>, &mut Vec<Arc<ZoneRow>>),
    ) -> usize {
        match &mut self.entries {
            Entries::Records(t) => t.select_rumors(news, limits, used, records),
            Entries::Rows(t) => t.select_rumors(news, limits, used, rows),
        }
    }
}
