//! What the simulator models: timing, network and failures.

use crate::core::{CoreConfig, Strategy};

#[derive(Clone, Debug)]
pub struct SimParams {
    pub machines: usize,
    pub seed: u64,
    pub strategy: Strategy,
    pub interval_ms: u64,
    /// Synchronous rounds with instantaneous deployment: the paper's analysis (§IV).
    pub synchronous: bool,
    /// Median time to copy and install a package (0 = instantaneous).
    pub deploy_time_ms: u64,
    /// Spread of deployment times (sigma of the log-normal).
    pub deploy_sigma: f64,
    /// Share of machines that are slow (overloaded, far away), and how much slower.
    pub slow_share: f64,
    pub slow_factor: f64,
    pub latency_ms: (u64, u64),
    pub loss: f64,
    pub ping_timeout_ms: u64,
    pub login_time_ms: u64,
    pub restart_time_ms: u64,
    /// Time to fetch a release from another peer.
    pub fetch_time_ms: u64,
    /// Share of machines that can never be reached.
    pub unreachable_share: f64,
    /// Give up after this many rounds.
    pub max_rounds: u64,
    pub fetch_cap: usize,
    pub gossip_budget: usize,
}

impl SimParams {
    pub fn new(machines: usize, seed: u64) -> Self {
        Self {
            machines,
            seed,
            strategy: Strategy::Informed,
            interval_ms: 5_000,
            synchronous: false,
            deploy_time_ms: 5_000,
            deploy_sigma: 0.5,
            slow_share: 0.05,
            slow_factor: 4.0,
            latency_ms: (10, 80),
            loss: 0.0,
            ping_timeout_ms: 2_000,
            login_time_ms: 500,
            restart_time_ms: 1_000,
            fetch_time_ms: 2_000,
            unreachable_share: 0.0,
            max_rounds: 400,
            fetch_cap: 4,
            gossip_budget: CoreConfig::default().gossip_budget,
        }
    }

    /// The paper's analysis: synchronous rounds, instantaneous deployment, no latency.
    pub fn paper_analysis(mut self) -> Self {
        self.synchronous = true;
        self.deploy_time_ms = 0;
        self.slow_share = 0.0;
        self.latency_ms = (0, 0);
        self.login_time_ms = 0;
        self.restart_time_ms = 0;
        self.ping_timeout_ms = self.interval_ms / 5;
        self
    }

    pub fn core_config(&self) -> CoreConfig {
        CoreConfig {
            interval_ms: self.interval_ms,
            strategy: self.strategy,
            synchronous_rounds: self.synchronous,
            fetch_cap: self.fetch_cap,
            gossip_budget: self.gossip_budget,
            ..CoreConfig::default()
        }
    }
}
