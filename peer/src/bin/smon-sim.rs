//! `smon-sim`: run the real peer core of every machine of a simulated cluster in virtual time.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use smon_peer::{
    core::Strategy,
    sim::{self, Options, Scenario, SimParams},
};

#[derive(Parser)]
#[command(
    version,
    about = "Deterministic simulation of an smon cluster (same seed, same output)"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Self-deployment from one peer.
    Deploy(Common),
    /// All deployed, then livetag=false on one peer: rounds until every peer is disabled.
    Disable(Common),
    /// All deployed, then one peer gets a newer version: rounds until every peer runs it.
    Upgrade(Common),
    /// Halves apart for K rounds (an upgrade on one side, a livetag flip and a membership
    /// change on the other), then healed: rounds until everyone agrees.
    Partition {
        #[command(flatten)]
        common: Common,
        /// Rounds the halves stay apart.
        #[arg(long, default_value_t = 10)]
        rounds: u64,
    },
    /// A share of the peers crash at once: rounds until all run again.
    Churn {
        #[command(flatten)]
        common: Common,
        /// Share of peers crashed.
        #[arg(long, default_value_t = 0.3)]
        fraction: f64,
    },
    /// All deployed, then an application is installed on one peer: rounds until every peer
    /// has fetched it.
    AppInstall(Common),
    /// All deployed and running an application, and the last machine holds only the cluster
    /// key: it sends forged control state (disable, a membership without the others, the
    /// application offline) to every peer for R rounds. Counts what spread (goal: nothing),
    /// then a signed disable: rounds until every peer is disabled.
    Forged {
        #[command(flatten)]
        common: Common,
        /// Rounds the forger runs.
        #[arg(long, default_value_t = 10)]
        rounds: u64,
    },
    /// All deployed and running an application; then its state changes on one machine:
    /// rounds until every other peer's view shows it.
    AppState {
        #[command(flatten)]
        common: Common,
        /// Do not change every peer's load (and so its record) every round.
        #[arg(long)]
        no_load_churn: bool,
        /// Rounds between the cluster-wide start of the application (a change of every
        /// machine's record at once) and the change measured.
        #[arg(long, default_value_t = 60)]
        settle: u64,
    },
    /// All deployed, then one peer freezes (its process stays, it answers nothing, as after
    /// `kill -STOP`): rounds until it was shown unresponsive, killed and restarted, and every
    /// view counts it as running again.
    Freeze(Common),
}

#[derive(Args)]
struct Common {
    #[arg(long, default_value_t = 117)]
    machines: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = StrategyArg::Informed)]
    strategy: StrategyArg,
    /// Median time to copy and install a package; 0 selects the paper's analysis model
    /// (synchronous rounds, instantaneous deployment).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    deploy_time: Duration,
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Share of messages lost.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Share of machines that can never be reached.
    #[arg(long, default_value_t = 0.0)]
    unreachable: f64,
    /// Share of machines that are slow to deploy to.
    #[arg(long)]
    slow_share: Option<f64>,
    /// Give up after this many rounds.
    #[arg(long, default_value_t = 400)]
    max_rounds: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Write the per-round progress as CSV.
    #[arg(long)]
    curve: Option<PathBuf>,
    /// Report wall_ms as 0, so that runs with the same seed are byte-identical.
    #[arg(long)]
    no_wall_clock: bool,
}

/// The command line's names for the core's [`Strategy`] (the core knows no CLI).
#[derive(Clone, Copy, clap::ValueEnum)]
enum StrategyArg {
    /// The paper's: a uniformly random machine of the membership list, and deploy whatever
    /// does not answer.
    Smon,
    /// Spreading tree derived from the membership order, then machines not yet known to run
    /// a peer, with random probes kept for failure detection; and no package is copied where
    /// an install is already under way.
    Informed,
}

impl From<StrategyArg> for Strategy {
    fn from(arg: StrategyArg) -> Self {
        match arg {
            StrategyArg::Smon => Strategy::Smon,
            StrategyArg::Informed => Strategy::Informed,
        }
    }
}

impl Common {
    fn params(&self) -> anyhow::Result<SimParams> {
        if self.machines < 1 {
            anyhow::bail!("--machines must be at least 1");
        }
        for (name, v) in [("--loss", self.loss), ("--unreachable", self.unreachable)] {
            if !(0.0..1.0).contains(&v) {
                anyhow::bail!("{name} {v}: a share must be in [0, 1)");
            }
        }
        let mut p = SimParams::new(self.machines, self.seed);
        p.strategy = self.strategy.into();
        p.interval_ms = self.interval.as_millis() as u64;
        if p.interval_ms < 10 {
            anyhow::bail!("--interval must be at least 10ms");
        }
        p.deploy_time_ms = self.deploy_time.as_millis() as u64;
        p.loss = self.loss;
        p.unreachable_share = self.unreachable;
        p.max_rounds = self.max_rounds;
        if let Some(s) = self.slow_share {
            p.slow_share = s;
        }
        if p.deploy_time_ms == 0 {
            p = p.paper_analysis();
        }
        Ok(p)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut options = Options::default();
    let (scenario, common) = match &cli.scenario {
        Command::Deploy(c) => (Scenario::Deploy, c),
        Command::Disable(c) => (Scenario::Disable, c),
        Command::Upgrade(c) => (Scenario::Upgrade, c),
        Command::Partition { common, rounds } => {
            options.partition_rounds = *rounds;
            (Scenario::Partition, common)
        }
        Command::Churn { common, fraction } => {
            if !(0.0..=1.0).contains(fraction) {
                anyhow::bail!("--fraction {fraction}: a share must be in [0, 1]");
            }
            options.crash_share = *fraction;
            (Scenario::Churn, common)
        }
        Command::AppInstall(c) => (Scenario::AppInstall, c),
        Command::Forged { common, rounds } => {
            options.forged_rounds = *rounds;
            (Scenario::Forged, common)
        }
        Command::AppState {
            common,
            no_load_churn,
            settle,
        } => {
            options.load_churn = !no_load_churn;
            options.settle_rounds = *settle;
            (Scenario::AppState, common)
        }
        Command::Freeze(c) => (Scenario::Freeze, c),
    };
    let mut report = sim::run(scenario, common.params()?, &options);
    if common.no_wall_clock {
        report.wall_ms = 0;
    }
    if let Some(path) = &common.curve {
        std::fs::write(path, report.curve_csv())
            .with_context(|| format!("writing the curve to {}", path.display()))?;
    }
    if common.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.human());
    }
    Ok(())
}
