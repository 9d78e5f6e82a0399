//! The door of a server: which accepted connections may go on to a handshake. Caps on
//! connections and on handshakes in flight, globally and per source address, and a rate of new
//! connections per source (failed handshakes cost extra), so that one client holding many
//! connections, opening and dropping them in a loop, or sending handshakes with a wrong key at
//! full speed cannot take the server from its own cluster. A refused connection is closed at
//! once, before any handshake work; refusals are counted ([`DoorCounts`]) and logged at most
//! once per [`LOG_EVERY`], as a sum.
//!
//! The limits are those of nginx's `limit_conn`/`limit_req` and of HAProxy's `maxconn` and
//! stick tables, by source address: TCP vouches for it (unlike anything a client says).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub use smon_proto_types::DoorCounts;

use crate::token_bucket::{Bucket, Rate};

/// The door's limits. The defaults suit a peer or an agent of a cluster of up to ~10,000
/// machines; [`DoorLimits::fit_descriptors`] lowers the connection cap to what the process's
/// descriptor limit allows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DoorLimits {
    /// Connections open at once (handshaking or established), all sources together.
    pub max_connections: usize,
    /// Handshakes in flight at once, all sources together.
    pub max_handshakes: usize,
    /// Connections open at once from one source address.
    pub per_source_connections: usize,
    /// Handshakes in flight at once from one source address: well under `max_handshakes`,
    /// so that one source cannot take every handshake slot.
    pub per_source_handshakes: usize,
    /// New connections per second from one source address (the bucket's refill), and how many
    /// it may open at once (the burst).
    pub per_source_rate: Rate,
    /// Tokens a failed handshake (wrong key, garbage, silence) costs its source on top of the
    /// one its connection took: a wrong-key sender gets `1/(1 + cost)` of the rate.
    pub failed_handshake_cost: f64,
}

/// Default [`DoorLimits::max_connections`].
pub const MAX_CONNECTIONS: usize = 4_096;
/// Default [`DoorLimits::max_handshakes`].
pub const MAX_HANDSHAKES: usize = 256;
/// Default [`DoorLimits::per_source_connections`].
pub const PER_SOURCE_CONNECTIONS: usize = 512;
/// Default [`DoorLimits::per_source_handshakes`]: local clusters connect from one loopback
/// address, and a handshake there takes well under a millisecond.
pub const PER_SOURCE_HANDSHAKES: usize = 32;
/// Default [`DoorLimits::per_source_rate`]: 200 new connections a second, 400 at once.
pub const PER_SOURCE_RATE: Rate = Rate {
    per_second: 200.0,
    burst: 400.0,
};
/// Default [`DoorLimits::failed_handshake_cost`].
pub const FAILED_HANDSHAKE_COST: f64 = 9.0;
/// Descriptors a process keeps for itself beyond its served connections (its database, logs,
/// logins, its own calls, applications' pipes): [`DoorLimits::fit_descriptors`].
pub const RESERVED_DESCRIPTORS: u64 = 256;
/// At most one log line of refusals per this much time (a sum of what was refused since).
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// Source addresses tracked at most; beyond, idle ones (no connection, full bucket) are
/// forgotten, and if none is idle a new source is refused (`refused_source`).
pub const MAX_SOURCES: usize = 65_536;

impl Default for DoorLimits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            max_handshakes: MAX_HANDSHAKES,
            per_source_connections: PER_SOURCE_CONNECTIONS,
            per_source_handshakes: PER_SOURCE_HANDSHAKES,
            per_source_rate: PER_SOURCE_RATE,
            failed_handshake_cost: FAILED_HANDSHAKE_COST,
        }
    }
}

impl DoorLimits {
    /// These limits with the connection caps lowered so that served connections leave
    /// [`RESERVED_DESCRIPTORS`] of `nofile` (the soft `RLIMIT_NOFILE`) to the process: at
    /// the cap the door refuses, instead of `accept` failing with `EMFILE` for everyone. At
    /// least 16 connections.
    pub fn fit_descriptors(mut self, nofile: u64) -> Self {
        let room = usize::try_from(nofile.saturating_sub(RESERVED_DESCRIPTORS))
            .unwrap_or(usize::MAX)
            .max(16);
        self.max_connections = self.max_connections.min(room);
        self.max_handshakes = self.max_handshakes.min(self.max_connections);
        self.per_source_connections = self.per_source_connections.min(self.max_connections);
        self.per_source_handshakes = self.per_source_handshakes.min(self.max_handshakes);
        self
    }

    /// The defaults fitted to this process: the soft descriptor limit raised to the hard one
    /// first (a server needs descriptors; the default soft limit is often 1,024), then
    /// [`DoorLimits::fit_descriptors`]. The caps are logged once (info).
    pub fn for_this_process() -> Self {
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        let nofile = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1_024, |(soft, _)| soft);
        let limits = Self::default().fit_descriptors(nofile);
        tracing::info!(
            "door: at most {} connections ({} per source), {} handshakes in flight ({} per \
             source), {}/s new connections per source (burst {}); descriptor limit {nofile}",
            limits.max_connections,
            limits.per_source_connections,
            limits.max_handshakes,
            limits.per_source_handshakes,
            limits.per_source_rate.per_second,
            limits.per_source_rate.burst,
        );
        limits
    }
}

/// Why the door turned a connection away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// [`DoorLimits::max_connections`] open.
    Full,
    /// [`DoorLimits::max_handshakes`] in flight.
    Handshakes,
    /// The source's [`DoorLimits::per_source_connections`] or
    /// [`DoorLimits::per_source_handshakes`], or too many sources tracked.
    Source,
    /// The source's [`DoorLimits::per_source_rate`].
    Rate,
}

/// How a handshake the door let in ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    Done,
    Failed,
    TimedOut,
}

struct Source {
    connections: usize,
    handshakes: usize,
    bucket: Bucket,
}

#[derive(Default)]
struct State {
    sources: HashMap<IpAddr, Source>,
    connections: usize,
    handshakes: usize,
    counts: DoorCounts,
    /// The counts as of the last log line, and when it was written.
    logged: (DoorCounts, Option<Instant>),
}

/// A server's door: [`Door::admit`] each accepted connection; keep the [`Ticket`] for as long
/// as the connection lives.
pub struct Door {
    limits: DoorLimits,
    state: Mutex<State>,
}

impl Door {
    pub fn new(limits: DoorLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::new(State::default()),
        })
    }

    pub fn limits(&self) -> DoorLimits {
        self.limits
    }

    /// What the door did so far.
    pub fn counts(&self) -> DoorCounts {
        let state = self.state.lock().expect("door");
        DoorCounts {
            open: state.connections as u64,
            ..state.counts
        }
    }

    /// Let a connection from `source` in to its handshake, or say why not (counted, and
    /// logged at most once per [`LOG_EVERY`]). The caller closes a refused connection at once.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Ticket, Refused> {
        self.admit_at(source, Instant::now())
    }

    fn admit_at(self: &Arc<Self>, source: IpAddr, now: Instant) -> Result<Ticket, Refused> {
        let mut state = self.state.lock().expect("door");
        match self.check(&mut state, source, now) {
            Ok(()) => {
                state.counts.admitted += 1;
                Ok(Ticket {
                    door: self.clone(),
                    source,
                    handshaking: true,
                })
            }
            Err(why) => {
                let c = &mut state.counts;
                *match why {
                    Refused::Full => &mut c.refused_full,
                    Refused::Handshakes => &mut c.refused_handshakes,
                    Refused::Source => &mut c.refused_source,
                    Refused::Rate => &mut c.refused_rate,
                } += 1;
                self.log_refusals(&mut state, source, why, now);
                Err(why)
            }
        }
    }

    /// The checks, cheapest first; on success the connection is counted in.
    fn check(&self, state: &mut State, source: IpAddr, now: Instant) -> Result<(), Refused> {
        let l = &self.limits;
        if state.connections >= l.max_connections {
            return Err(Refused::Full);
        }
        if state.handshakes >= l.max_handshakes {
            return Err(Refused::Handshakes);
        }
        if state.sources.len() >= MAX_SOURCES && !state.sources.contains_key(&source) {
            let rate = l.per_source_rate;
            state
                .sources
                .retain(|_, s| s.connections > 0 || !s.bucket.is_full_at(rate, now));
            if state.sources.len() >= MAX_SOURCES {
                return Err(Refused::Source);
            }
        }
        let s = state.sources.entry(source).or_insert_with(|| Source {
            connections: 0,
            handshakes: 0,
            bucket: Bucket::full(l.per_source_rate, now),
        });
        if s.connections >= l.per_source_connections || s.handshakes >= l.per_source_handshakes {
            return Err(Refused::Source);
        }
        if !s.bucket.take(l.per_source_rate, now) {
            return Err(Refused::Rate);
        }
        s.connections += 1;
        s.handshakes += 1;
        state.connections += 1;
        state.handshakes += 1;
        Ok(())
    }

    /// One warn line for the first refusal after a quiet [`LOG_EVERY`], then one per
    /// [`LOG_EVERY`] summing what was refused since: a flood never writes a line per
    /// connection. (Refusals of the last window are in the counters, and in the next line.)
    fn log_refusals(&self, state: &mut State, source: IpAddr, why: Refused, now: Instant) {
        let (before, at) = state.logged;
        if at.is_some_and(|at| now.saturating_duration_since(at) < LOG_EVERY) {
            return;
        }
        let c = state.counts;
        tracing::warn!(
            "door: refused {} connections since the last line (full {}, handshakes in flight \
             {}, per-source caps {}, per-source rate {}); latest from {source} ({why:?}); {} \
             open, {} handshaking; next line in {}s at the earliest",
            c.refused() - before.refused(),
            c.refused_full - before.refused_full,
            c.refused_handshakes - before.refused_handshakes,
            c.refused_source - before.refused_source,
            c.refused_rate - before.refused_rate,
            state.connections,
            state.handshakes,
            LOG_EVERY.as_secs(),
        );
        state.logged = (c, Some(now));
    }

    fn handshake_ended(&self, source: IpAddr, how: Handshake) {
        let now = Instant::now();
        let mut state = self.state.lock().expect("door");
        state.handshakes -= 1;
        match how {
            Handshake::Done => {}
            Handshake::Failed => state.counts.handshake_failures += 1,
            Handshake::TimedOut => state.counts.handshake_timeouts += 1,
        }
        let (rate, cost) = (
            self.limits.per_source_rate,
            self.limits.failed_handshake_cost,
        );
        if let Some(s) = state.sources.get_mut(&source) {
            s.handshakes -= 1;
            if how != Handshake::Done {
                s.bucket.charge(rate, cost, now);
            }
        }
    }

    fn closed(&self, source: IpAddr, handshaking: bool) {
        let mut state = self.state.lock().expect("door");
        state.connections -= 1;
        if handshaking {
            state.handshakes -= 1;
        }
        let rate = self.limits.per_source_rate;
        let now = Instant::now();
        if let Some(s) = state.sources.get_mut(&source) {
            s.connections -= 1;
            if handshaking {
                s.handshakes -= 1;
            }
            // Forget a source as soon as remembering it changes nothing.
            if s.connections == 0 && s.bucket.is_full_at(rate, now) {
                state.sources.remove(&source);
            }
        }
    }
}

/// One admitted connection: counted as open until dropped, and as handshaking until
/// [`Ticket::handshake`] says how its handshake ended.
pub struct Ticket {
    door: Arc<Door>,
    source: IpAddr,
    handshaking: bool,
}

impl Ticket {
    /// The handshake ended `how`; a failed or timed-out one costs its source
    /// [`DoorLimits::failed_handshake_cost`] tokens.
    pub fn handshake(&mut self, how: Handshake) {
        if std::mem::take(&mut self.handshaking) {
            self.door.handshake_ended(self.source, how);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.door.closed(self.source, self.handshaking);
    }
}

#[cfg(test)]
mod tests;
