//! The simulator reproduces the SMON paper's analysis (001 §IV) in its own model: synchronous
//! rounds, instantaneous deployment, a uniformly random ping target per peer and round.
//!
//! Expectations are computed here from the model, never copied from a run:
//! - the discrete mean-field recursion of that process,
//!   Y(r+1) = Y(r) + (1 − Y(r)) · (1 − (1 − 1/(n−1))^(n·Y(r)));
//! - the paper's closed form Y_r = 1 / (1 + n·e^(−r)), its continuous approximation;
//! - the overhead of the binomial model: copies on a machine deployed in a round with m
//!   deployed peers are k | k > 0 with k ~ Bin(m, 1/(n−1)), mean (m/(n−1)) / (1 − (1 − 1/(n−1))^m).

use smon_peer::{
    core::Strategy,
    sim::{self, Options, Scenario, SimParams},
};

fn paper_run(n: usize, seed: u64) -> sim::Report {
    let mut p = SimParams::new(n, seed).paper_analysis();
    p.strategy = Strategy::Smon;
    sim::run(Scenario::Deploy, p, &Options::default())
}

/// Mean-field recursion: expected deployed fraction after each round, and expected copies.
fn mean_field(n: usize, rounds: usize) -> (Vec<f64>, f64) {
    let n_f = n as f64;
    let miss = 1.0 - 1.0 / (n_f - 1.0);
    let mut y = vec![1.0 / n_f];
    let (mut copies, mut deployed) = (0.0, 0.0);
    for _ in 0..rounds {
        let m = y.last().unwrap() * n_f;
        let undeployed = n_f - m;
        let new = undeployed * (1.0 - miss.powf(m));
        copies += undeployed * m / (n_f - 1.0);
        deployed += new;
        y.push((m + new) / n_f);
    }
    (y, copies / deployed)
}

fn closed_form(n: usize, r: usize) -> f64 {
    1.0 / (1.0 + n as f64 * (-(r as f64)).exp())
}

fn averaged_curve(n: usize, seeds: u64, rounds: usize) -> (Vec<f64>, f64) {
    let mut sum = vec![0.0; rounds + 1];
    let mut overhead = 0.0;
    for seed in 0..seeds {
        let report = paper_run(n, seed);
        assert!(report.converged, "seed {seed} did not converge");
        for (r, slot) in sum.iter_mut().enumerate() {
            *slot += report.curve.get(r).copied().unwrap_or(1.0);
        }
        overhead += report.overhead_mean;
    }
    let s = seeds as f64;
    (sum.into_iter().map(|v| v / s).collect(), overhead / s)
}

#[test]
fn deployed_fraction_follows_the_epidemic_model() {
    // Tolerance: 0.05 absolute against the exact mean-field recursion of the model.
    for n in [117, 1000] {
        let rounds = 20;
        let (sim, _) = averaged_curve(n, 30, rounds);
        let (model, _) = mean_field(n, rounds);
        for r in 0..=rounds {
            let diff = (sim[r] - model[r]).abs();
            assert!(
                diff <= 0.05,
                "n={n} round {r}: simulated {:.3}, model {:.3}",
                sim[r],
                model[r]
            );
        }
    }
}

#[test]
fn deployed_fraction_is_within_two_and_a_half_rounds_of_the_papers_closed_form() {
    // The closed form grows by e per round where the discrete process doubles, so it leads;
    // tolerance: each level 10%..90% is reached within 2.5 rounds of the closed form's round.
    let n = 117;
    let rounds = 20;
    let (sim, _) = averaged_curve(n, 30, rounds);
    let crossing = |curve: &dyn Fn(usize) -> f64, level: f64| -> f64 {
        // Linear interpolation of the round at which `curve` reaches `level`.
        let mut prev = curve(0);
        for r in 1..=rounds {
            let now = curve(r);
            if now >= level {
                return (r - 1) as f64 + (level - prev) / (now - prev);
            }
            prev = now;
        }
        f64::INFINITY
    };
    for level in [0.1, 0.3, 0.5, 0.7, 0.9] {
        let paper = crossing(&|r| closed_form(n, r), level);
        let ours = crossing(&|r| sim[r], level);
        assert!(
            (ours - paper).abs() <= 2.5,
            "level {level}: simulated round {ours:.2}, closed form {paper:.2}"
        );
    }
}

#[test]
fn overhead_matches_the_binomial_model() {
    for n in [117, 1000] {
        let (_, overhead) = averaged_curve(n, 30, 0);
        let (_, model) = mean_field(n, 60);
        let error = (overhead - model).abs() / model;
        assert!(
            error <= 0.05,
            "n={n}: simulated overhead {overhead:.3}, model {model:.3}"
        );
        // And the paper's limit, 1/(1 − 1/e) ≈ 1.582 for the last machines, bounds the mean.
        assert!(overhead < 1.0 / (1.0 - (-1.0f64).exp()));
    }
}

#[test]
fn informed_beats_the_paper_on_the_same_seeds() {
    for seed in 0..5 {
        let smon = paper_run(117, seed);
        let mut p = SimParams::new(117, seed).paper_analysis();
        p.strategy = Strategy::Informed;
        let informed = sim::run(Scenario::Deploy, p, &Options::default());
        assert!(informed.converged);
        assert!(informed.rounds_to_all <= smon.rounds_to_all, "seed {seed}");
        assert!(informed.overhead_mean <= smon.overhead_mean, "seed {seed}");
        // log2(117) rounds is the floor for one deployment per peer and round.
        assert!(
            informed.rounds_to_all.unwrap() <= 9,
            "seed {seed}: {:?}",
            informed.rounds_to_all
        );
        assert!(informed.overhead_max <= 3);
    }
}
