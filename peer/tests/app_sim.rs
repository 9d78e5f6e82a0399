//! Applications in the simulator: they spread to every peer, and a state change on one
//! machine reaches every other peer's view within log2(N) + 2 rounds (the goal of issue 6).

use smon_peer::sim::{self, Options, Scenario, SimParams};

#[test]
fn an_application_reaches_every_peer() {
    for seed in 1..=3 {
        let report = sim::run(
            Scenario::AppInstall,
            SimParams::new(117, seed),
            &Options::default(),
        );
        assert!(report.converged, "seed {seed}: {}", report.human());
    }
}

#[test]
fn a_state_change_is_seen_everywhere_within_log2_n_plus_2_rounds() {
    let goal = (117f64).log2() + 2.0;
    for seed in 1..=5 {
        let report = sim::run(
            Scenario::AppState,
            SimParams::new(117, seed),
            &Options::default(),
        );
        let rounds = report.rounds_to_all.expect("converged") as f64;
        assert!(
            rounds <= goal,
            "seed {seed}: {rounds} rounds > {goal:.2}: {}",
            report.human()
        );
    }
}
