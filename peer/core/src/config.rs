//! Tunables of the epidemic core. All durations are in milliseconds of (virtual or real) time.

use std::time::Duration;

/// How a peer picks the machine it pings each round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The paper's: a uniformly random machine of the membership list, and deploy whatever
    /// does not answer.
    Smon,
    /// Spreading tree derived from the membership order, then machines not yet known to run
    /// a peer, with random probes kept for failure detection; and no package is copied where
    /// an install is already under way.
    #[default]
    Informed,
}

#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub interval_ms: u64,
    pub strategy: Strategy,
    /// Rounds start at multiples of the interval (the paper's analysis); otherwise each peer
    /// keeps its own phase.
    pub synchronous_rounds: bool,
    /// How many peers may fetch a package from this one at once (no flash crowd).
    pub fetch_cap: usize,
    /// A fetch slot nobody used for this long is freed.
    pub fetch_slot_idle_ms: u64,
    /// Bytes of rumors (records and zone rows) piggybacked on one ping or pong.
    pub gossip_budget: usize,
    /// Bytes a pong may add of what the pinger's digest shows it lacks: a new peer's tables,
    /// or a wave of news, catch up in an exchange or two instead of many.
    pub pull_budget: usize,
    /// How many peers a newly changed livetag is pushed to per round.
    pub livetag_fanout: usize,
    /// A removed peer exits after this long without hearing from anyone.
    pub removed_exit_after_ms: u64,
    /// A disabled peer goes silent (no pings at all, as in the paper) and exits after this
    /// long without hearing from anyone. None: it never exits, and keeps sending gossip-only
    /// pings so the cluster view stays current (never a login or a deployment).
    pub disabled_exit_after_ms: Option<u64>,
    /// Under `informed`, the share of rounds spent probing random machines (failure
    /// detection, upgrades, membership) once the spreading tree is done.
    pub probe_share: f64,
    /// Do not try to deploy the same machine again within this many rounds.
    pub retry_after_rounds: u64,
    /// A machine whose peer process exists but leaves this many pings in a row unanswered
    /// (each followed by a login that found the process) is recorded unresponsive.
    pub unresponsive_after_pings: u32,
    /// An unresponsive peer is killed and restarted once its silence has lasted this long
    /// (from the first unanswered ping of the run).
    pub unresponsive_grace_ms: u64,
    /// A peer re-issues its own record at least every this many rounds, news or not, so that
    /// a record nobody refreshes grows old in every view ([`crate::View::age_ms`]).
    pub heartbeat_rounds: u64,
    /// A machine found holding another cluster's install is deployed over (its installer
    /// stops that cluster's peer first: `init --take-over`); off, it is left alone and its
    /// row says why (issue 15, kind 11).
    pub take_over: bool,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            interval_ms: 5_000,
            strategy: Strategy::Informed,
            synchronous_rounds: false,
            fetch_cap: 4,
            fetch_slot_idle_ms: 30_000,
            gossip_budget: 640,
            pull_budget: 4096,
            livetag_fanout: 2,
            removed_exit_after_ms: 60_000,
            disabled_exit_after_ms: None,
            probe_share: 0.5,
            retry_after_rounds: 3,
            unresponsive_after_pings: 3,
            unresponsive_grace_ms: 60_000,
            heartbeat_rounds: smon_proto_types::HEARTBEAT_ROUNDS,
            take_over: false,
        }
    }
}

impl CoreConfig {
    /// Does the deployment path pipeline (`informed` with asynchronous rounds)? A peer deployed
    /// just now starts at once, a deployer goes on with its next machine as soon as one ends,
    /// and no ping is sent where the answer is known to be silence. The paper's strategy, and
    /// the synchronous rounds of its analysis (one action per peer and round), keep the loop of
    /// one attempt per round.
    pub fn pipelined(&self) -> bool {
        self.strategy == Strategy::Informed && !self.synchronous_rounds
    }

    pub fn with_interval(interval: Duration) -> Self {
        Self {
            interval_ms: interval.as_millis() as u64,
            ..Self::default()
        }
    }
}
