//! What a simulation run reports (the JSON of `smon-sim ... --json`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::Strategy;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub machines: usize,
    pub seed: u64,
    pub strategy: Strategy,
    pub synchronous: bool,
    pub interval_ms: u64,
    pub deploy_time_ms: u64,
    /// Whether the scenario's goal was reached before `max_rounds`.
    pub converged: bool,
    /// Machines running a peer at the end (reachable ones only can).
    pub deployed: usize,
    pub reachable: usize,
    pub rounds_to_all: Option<u64>,
    pub seconds_to_all: Option<f64>,
    pub p50_rounds: Option<u64>,
    pub p90_rounds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rounds_after_heal: Option<u64>,
    /// Freeze: rounds until some peer's view first showed the frozen machine unresponsive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unresponsive_rounds: Option<u64>,
    /// Deploy: seconds from the first peer's start to the last one's (exact, where
    /// `seconds_to_all` counts whole rounds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_to_last_start_s: Option<f64>,
    /// Deploy: `first_to_last_start_s` in median install-times (`deploy_time_ms`); a doubling
    /// of the deployed peers per install-time would take `ceil_log2_machines`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_times_to_all: Option<f64>,
    /// Deploy: ⌈log2 N⌉, the number of doublings from one peer to N.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceil_log2_machines: Option<u32>,
    /// Deploy: the longest single deployment of the run (login, copy, install) in seconds; no
    /// schedule finishes before the slowest machine's own deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slowest_deploy_s: Option<f64>,
    pub overhead_mean: f64,
    pub overhead_max: u32,
    /// Package copies per machine → number of machines.
    pub overhead_histogram: BTreeMap<u32, usize>,
    pub logins_mean: f64,
    pub bytes_per_peer_per_round: f64,
    /// Rounds from the change until a peer's cluster view (its root aggregate) shows the
    /// goal: the median peer, the 99th percentile, the last one (null if some never did).
    pub view_rounds_p50: Option<u64>,
    pub view_rounds_p99: Option<u64>,
    pub view_rounds_max: Option<u64>,
    /// Records and aggregate rows each running peer holds at the end.
    pub rows_per_peer_mean: f64,
    pub rows_per_peer_max: usize,
    pub messages: u64,
    pub events: u64,
    pub wall_ms: u64,
    /// Forged: what a process holding only K_E made spread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forged: Option<ForgedOutcome>,
    /// Fraction of the goal reached after each round (round 0 first).
    #[serde(skip)]
    pub curve: Vec<f64>,
}

/// The `forged` scenario's count (issue 14's goal: 0 of each spread).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ForgedOutcome {
    /// Rounds the forger ran.
    pub rounds: u64,
    /// Peers running while it did.
    pub peers: usize,
    /// Peers that took its disabled livetag, its membership (left, or hold another list),
    /// its `offline` for the application, at any round's end.
    pub disabled: usize,
    pub membership_changed: usize,
    pub app_offline: usize,
    /// Refusals the cores reported (one per forged value received).
    pub refused: u64,
    /// Rounds for a signed disable, made after the forger's run through one peer, to reach
    /// every peer (the same path takes what is signed); None: never within `max_rounds`.
    pub signed_disable_rounds: Option<u64>,
}

impl Report {
    pub fn curve_csv(&self) -> String {
        let mut csv = String::from("round,fraction\n");
        for (round, fraction) in self.curve.iter().enumerate() {
            csv.push_str(&format!("{round},{fraction:.6}\n"));
        }
        csv
    }

    pub fn human(&self) -> String {
        let rounds = |r: Option<u64>| r.map_or("never".to_string(), |r| r.to_string());
        let mut text = format!(
            "{} on {} machines (seed {}, strategy {:?}, {}): {}\n",
            self.scenario,
            self.machines,
            self.seed,
            self.strategy,
            if self.synchronous {
                "synchronous rounds"
            } else {
                "asynchronous"
            },
            if self.converged {
                "done"
            } else {
                "NOT converged"
            },
        );
        text += &format!(
            "  rounds to all: {}   p50: {}   p90: {}\n",
            rounds(self.rounds_to_all),
            rounds(self.p50_rounds),
            rounds(self.p90_rounds)
        );
        if let Some(r) = self.rounds_after_heal {
            text += &format!("  rounds after heal: {r}\n");
        }
        if let Some(f) = &self.forged {
            text += &format!(
                "  forged for {} rounds on {} peers: {} disabled, {} membership changed, {} app \
                 offline ({} refusals); a signed disable then took {} rounds\n",
                f.rounds,
                f.peers,
                f.disabled,
                f.membership_changed,
                f.app_offline,
                f.refused,
                rounds(f.signed_disable_rounds)
            );
        }
        if let Some(r) = self.unresponsive_rounds {
            text += &format!("  rounds until shown unresponsive: {r}\n");
        }
        if let (Some(s), Some(log2)) = (self.first_to_last_start_s, self.ceil_log2_machines) {
            let times = self
                .install_times_to_all
                .map_or(String::new(), |t| format!(" = {t:.1} install-times"));
            let slowest = self
                .slowest_deploy_s
                .map_or(String::new(), |s| format!("   slowest deployment {s:.1} s"));
            text += &format!(
                "  first to last peer start: {s:.1} s{times} (⌈log2 N⌉ = {log2}){slowest}\n"
            );
        }
        text += &format!(
            "  deployed {}/{}   overhead mean {:.3} max {}   logins mean {:.2}\n",
            self.deployed, self.reachable, self.overhead_mean, self.overhead_max, self.logins_mean
        );
        text += &format!(
            "  view: p50 {}   p99 {}   all {} rounds   rows per peer mean {:.1} max {}\n",
            rounds(self.view_rounds_p50),
            rounds(self.view_rounds_p99),
            rounds(self.view_rounds_max),
            self.rows_per_peer_mean,
            self.rows_per_peer_max
        );
        text += &format!(
            "  gossip {:.0} bytes per peer per round   {} events   {} ms wall\n",
            self.bytes_per_peer_per_round, self.events, self.wall_ms
        );
        text
    }
}
