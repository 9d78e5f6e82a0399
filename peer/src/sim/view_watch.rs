//! How fast the cluster view follows a change: for every peer, the first round at which its
//! root aggregate (what `status` asked of that peer answers) reflects the change.

use super::world::World;
use crate::core::Core;

/// Per machine, the first round its peer's view reflected the change.
pub struct ViewWatch {
    first: Vec<Option<u64>>,
}

/// The distribution over the peers running at the end: rounds until their view reflected the
/// change (`None`: some never did by then).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ViewRounds {
    pub p50: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
}

impl ViewWatch {
    pub fn new(w: &World) -> Self {
        Self {
            first: vec![None; w.machines.len()],
        }
    }

    /// Note, after round `round`, the peers whose view reflects the change.
    pub fn observe(&mut self, w: &World, round: u64, reflects: impl Fn(&Core) -> bool) {
        for (m, core) in w.running() {
            if self.first[m].is_none() && reflects(core) {
                self.first[m] = Some(round);
            }
        }
    }

    /// Whether every running peer's view has reflected the change.
    pub fn all(&self, w: &World) -> bool {
        w.running().all(|(m, _)| self.first[m].is_some())
    }

    pub fn rounds(&self, w: &World) -> ViewRounds {
        let mut rounds: Vec<Option<u64>> = w.running().map(|(m, _)| self.first[m]).collect();
        // Never (None) sorts after every round.
        rounds.sort_by_key(|r| (r.is_none(), *r));
        let at = |q: f64| -> Option<u64> {
            if rounds.is_empty() {
                return None;
            }
            let i = ((q * rounds.len() as f64).ceil() as usize).clamp(1, rounds.len()) - 1;
            rounds[i]
        };
        ViewRounds {
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Rows (records and aggregate rows) held per running peer: (mean, max).
pub fn rows_per_peer(w: &World) -> (f64, usize) {
    let (mut total, mut most, mut peers) = (0usize, 0usize, 0usize);
    for (_, core) in w.running() {
        let rows = core.view().rows_held();
        total += rows;
        most = most.max(rows);
        peers += 1;
    }
    (total as f64 / peers.max(1) as f64, most)
}
