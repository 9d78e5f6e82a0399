//! Rate limits: a token bucket per requesting peer and one for the whole agent.

use std::{collections::HashMap, sync::Mutex, time::Instant};

pub use smon_proto::token_bucket::{Bucket, Rate};

/// At most this many peers are tracked; beyond, full buckets are forgotten first.
const MAX_TRACKED: usize = 100_000;

pub struct Limiter {
    per_peer: Rate,
    global: Rate,
    peers: Mutex<HashMap<String, Bucket>>,
    all: Mutex<Bucket>,
}

impl Limiter {
    pub fn new(per_peer: Rate, global: Rate) -> Self {
        Limiter {
            per_peer,
            global,
            peers: Mutex::new(HashMap::new()),
            all: Mutex::new(Bucket::full(global, Instant::now())),
        }
    }

    /// Take one token for `peer`; the reason when refused.
    pub fn check(&self, peer: &str) -> Result<(), &'static str> {
        let now = Instant::now();
        {
            let mut peers = self.peers.lock().expect("limiter");
            if peers.len() >= MAX_TRACKED && !peers.contains_key(peer) {
                let rate = self.per_peer;
                peers.retain(|_, b| !b.is_full_at(rate, now));
                if peers.len() >= MAX_TRACKED {
                    return Err("too many peers");
                }
            }
            let bucket = peers
                .entry(peer.to_owned())
                .or_insert_with(|| Bucket::full(self.per_peer, now));
            if !bucket.take(self.per_peer, now) {
                return Err("per-peer rate limit");
            }
        }
        if !self.all.lock().expect("limiter").take(self.global, now) {
            return Err("global rate limit");
        }
        Ok(())
    }
}
