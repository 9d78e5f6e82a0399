//! Which machine a peer pings this round.
//!
//! `smon` is the paper's uniform random choice. `informed` first walks a binomial spreading
//! tree rooted at the first peer (rank r deploys r+2^k for every 2^k > r: with instantaneous
//! deployment everything is covered in ⌈log2 N⌉ rounds, each machine by exactly one parent),
//! then spends rounds on machines the zones' aggregates say lack a peer ("zone Z has machines
//! without a peer"), keeping a share of probes for failure detection. Probes go to the zone
//! partners of [`View::partner`]: every machine is probed about as often as with a uniform
//! choice, and the pings carry the gossip of every level of the zone tree.

use rand::{Rng, RngExt};
use rustc_hash::FxHashMap;

use super::{
    config::{CoreConfig, Strategy},
    io::{Millis, SpreadHint},
    view::View,
};

#[derive(Clone, Debug)]
struct Tree {
    origin: u32,
    rank: u64,
    /// The next child is rank + 2^step.
    step: u32,
}

#[derive(Clone, Debug, Default)]
pub struct Targeting {
    tree: Option<Tree>,
    /// machine → when we last tried to deploy or restart it.
    attempts: FxHashMap<u32, Millis>,
}

impl Targeting {
    pub fn new(me: Option<u32>, hint: Option<SpreadHint>, view: &View) -> Self {
        let n = view.membership().len() as u64;
        let tree = match (me, hint) {
            (Some(me), Some(hint))
                if hint.membership_version == view.membership().version && n > 0 =>
            {
                let rank = (u64::from(me) + n - u64::from(hint.origin) % n) % n;
                Some(Tree {
                    origin: hint.origin,
                    rank,
                    step: u64::BITS - rank.leading_zeros(),
                })
            }
            _ => None,
        };
        Self {
            tree,
            attempts: FxHashMap::default(),
        }
    }

    /// The hint to give a peer we deploy: the same tree.
    pub fn hint(&self, membership_version: u64, me: u32) -> SpreadHint {
        SpreadHint {
            origin: self.tree.as_ref().map_or(me, |t| t.origin),
            membership_version,
        }
    }

    pub fn note_attempt(&mut self, machine: u32, now: Millis) {
        self.attempts.insert(machine, now);
    }

    fn recently_attempted(&self, machine: u32, now: Millis, cfg: &CoreConfig) -> bool {
        self.attempts
            .get(&machine)
            .is_some_and(|&at| now.saturating_sub(at) < cfg.retry_after_rounds * cfg.interval_ms)
    }

    pub fn next(
        &mut self,
        me: u32,
        view: &mut View,
        cfg: &CoreConfig,
        now: Millis,
        rng: &mut impl Rng,
    ) -> Option<u32> {
        let n = view.membership().len() as u32;
        if n < 2 {
            return None;
        }
        let random_other = |rng: &mut dyn FnMut(u32) -> u32| {
            let pick = rng(n - 1);
            if pick >= me { pick + 1 } else { pick }
        };
        let mut draw = |bound: u32| rng.random_range(0..bound);
        match cfg.strategy {
            Strategy::Smon => Some(random_other(&mut draw)),
            Strategy::Informed => {
                if let Some(child) = self.next_child(view) {
                    return Some(child);
                }
                if draw(1_000_000) < (cfg.probe_share * 1_000_000.0) as u32 {
                    return view.partner(rng);
                }
                let skip = |m: u32| m == me || self.recently_attempted(m, now, cfg);
                view.pick_missing(rng, skip).or_else(|| view.partner(rng))
            }
        }
    }

    fn next_child(&mut self, view: &View) -> Option<u32> {
        let n = view.membership().len() as u64;
        let tree = self.tree.as_mut()?;
        while tree.step < 64 {
            let child_rank = tree.rank + (1u64 << tree.step);
            if child_rank >= n {
                break;
            }
            tree.step += 1;
            let child = ((u64::from(tree.origin) + child_rank) % n) as u32;
            if !view.is_known_up(child) {
                return Some(child);
            }
        }
        None
    }
}
