//! The serving side's cap on concurrent package fetches: when one peer gets a new version,
//! everybody wants it from that peer at once; admitting only a few spreads the load over
//! the peers that already upgraded (no flash crowd).

use rustc_hash::FxHashMap;

use super::io::Millis;

#[derive(Clone, Debug, Default)]
pub struct FetchSlots {
    /// session → last time it asked for a chunk.
    active: FxHashMap<u64, Millis>,
}

impl FetchSlots {
    /// Admit a chunk request of `session`: a known session always continues; a new one gets a
    /// slot if fewer than `cap` are in use (idle ones are freed first).
    pub fn admit(&mut self, now: Millis, session: u64, cap: usize, idle_ms: Millis) -> bool {
        if let Some(last) = self.active.get_mut(&session) {
            *last = now;
            return true;
        }
        self.active
            .retain(|_, last| now.saturating_sub(*last) < idle_ms);
        if self.active.len() >= cap {
            return false;
        }
        self.active.insert(session, now);
        true
    }

    /// The fetcher is done (it read the last chunk).
    pub fn release(&mut self, session: u64) {
        self.active.remove(&session);
    }

    pub fn in_use(&self) -> usize {
        self.active.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_new_sessions_and_frees_idle_ones() {
        let mut slots = FetchSlots::default();
        assert!(slots.admit(0, 1, 2, 100));
        assert!(slots.admit(0, 2, 2, 100));
        assert!(!slots.admit(10, 3, 2, 100), "cap reached");
        assert!(slots.admit(50, 1, 2, 100), "a running session continues");
        slots.release(1);
        assert!(slots.admit(60, 3, 2, 100));
        assert!(!slots.admit(99, 4, 2, 100));
        assert!(slots.admit(200, 4, 2, 100), "idle sessions were freed");
    }
}
