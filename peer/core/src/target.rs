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
use smon_proto_types::PeerState;

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
    /// This peer was just deployed at this position: nobody else deploys its children, so no
    /// peer runs on them yet.
    fresh: bool,
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
                    fresh: false,
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

    /// This peer was just deployed at its place in the tree (not restarted, not re-placed by a
    /// new membership): its children are taken to have no peer yet.
    pub fn set_fresh(&mut self) {
        if let Some(tree) = self.tree.as_mut() {
            tree.fresh = true;
        }
    }

    /// Is `machine` a child of this peer in the spreading tree of `n` machines (rank r deploys
    /// r + 2^k for every 2^k > r)?
    pub fn is_child(&self, machine: u32, n: usize) -> bool {
        let (Some(tree), n) = (self.tree.as_ref(), n as u64) else {
            return false;
        };
        if n == 0 {
            return false;
        }
        let rank = (u64::from(machine) + n - u64::from(tree.origin) % n) % n;
        let gap = rank.wrapping_sub(tree.rank);
        rank > tree.rank && gap.is_power_of_two() && gap > tree.rank
    }

    /// Is `machine` a child of this freshly deployed peer, which nobody else deploys, so that
    /// the answer to a ping is known to be silence?
    pub fn expects_no_peer(&self, machine: u32, n: usize) -> bool {
        self.tree.as_ref().is_some_and(|t| t.fresh) && self.is_child(machine, n)
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

    /// The next machine to deploy without waiting for a round (`informed` only): a child of
    /// the spreading tree, else a machine not known to run a peer and not tried lately. None
    /// when a few draws find none: the next round's tick takes over, with its random probes.
    pub fn next_deploy(
        &mut self,
        me: u32,
        view: &View,
        cfg: &CoreConfig,
        now: Millis,
        rng: &mut impl Rng,
    ) -> Option<u32> {
        if view.membership().len() < 2 {
            return None;
        }
        self.next_child(view)
            .or_else(|| self.draw_undeployed(me, view, cfg, now, rng, true))
    }

    /// A machine not known to run a peer and not tried lately (with `unclaimed`, nor known
    /// to be deployed by somebody right now), drawn by the zoned view ([`View::pick_missing`]:
    /// machines of this peer's own zone by their records, others through their zones'
    /// aggregate rows, which know how many machines lack a peer there).
    fn draw_undeployed(
        &self,
        me: u32,
        view: &View,
        cfg: &CoreConfig,
        now: Millis,
        rng: &mut impl Rng,
        unclaimed: bool,
    ) -> Option<u32> {
        let skip = |m: u32| {
            m == me
                || self.recently_attempted(m, now, cfg)
                || (unclaimed && view.get(m).is_some_and(|r| r.state == PeerState::Deploying))
        };
        view.pick_missing(rng, skip)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use smon_proto_types::{MachineId, Membership};

    use super::*;

    #[test]
    fn is_child_names_exactly_the_children_the_tree_walk_visits() {
        for n in 1..40u32 {
            let machines = (0..n)
                .map(|i| MachineId::local(format!("m{i:02}")))
                .collect();
            let view = View::new(Arc::new(Membership::new(1, machines)), None);
            for origin in 0..n {
                for me in 0..n {
                    let hint = SpreadHint {
                        origin,
                        membership_version: 1,
                    };
                    let mut walk = Targeting::new(Some(me), Some(hint), &view);
                    let fixed = walk.clone();
                    let mut children = Vec::new();
                    while let Some(child) = walk.next_child(&view) {
                        children.push(child);
                    }
                    for m in 0..n {
                        assert_eq!(
                            fixed.is_child(m, n as usize),
                            children.contains(&m),
                            "n {n} origin {origin} me {me} machine {m}"
                        );
                    }
                    assert!(
                        !fixed.expects_no_peer(children.first().copied().unwrap_or(0), n as usize)
                    );
                }
            }
        }
    }
}
