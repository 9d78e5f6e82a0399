//! `smon-console demo`: a cluster of N local machines in a temporary directory, deployed from
//! one peer. With a terminal it is watched in the TUI until the operator quits; with
//! `--headless` the console waits until every machine runs a peer and prints a summary
//! (`--json`: [`DemoSummary`]). Either way everything is shut down at the end, also after an
//! error or Ctrl-C: no peer is left running and the temporary directory is removed.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use rand::RngExt;
use serde::Serialize;

use crate::{
    cli::DemoArgs,
    cluster_dir::ClusterDir,
    cmd_cluster, cmd_init,
    cmd_wait::{self, Goal},
    connect,
    run::default_peer_binary,
    summary::Summary,
    tui,
};

/// How long `shutdown` may take before it kills what is left.
const SHUTDOWN: Duration = Duration::from_secs(60);
/// After every machine is deployed, the records may still be on their way to the peer that
/// answers: wait at most this many rounds for them to settle.
const SETTLE_ROUNDS: u32 = 10;

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !args.headless {
        tui::require_terminal("the demo")?;
    }
    if args.machines == 0 {
        bail!("--machines must be at least 1");
    }
    let peer_binary = args.peer_binary.clone().unwrap_or_else(default_peer_binary);
    let demo = DemoCluster::create(args.machines, args.interval, &peer_binary).await?;
    let result = tokio::select! {
        result = demo.play(&args) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let stopped = demo.remove().await;
    let summary = result?;
    stopped?;
    match summary {
        Some(s) if args.json => println!("{}", serde_json::to_string_pretty(&s)?),
        Some(s) => println!("{}", s.human()),
        None => {}
    }
    Ok(())
}

/// The temporary cluster: its directory, under the system's temporary directory.
struct DemoCluster {
    base: PathBuf,
    dir: ClusterDir,
}

impl DemoCluster {
    /// `init` a cluster of `machines` local machines (`local:demo001`, ...).
    async fn create(
        machines: usize,
        interval: Duration,
        peer_binary: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let base = std::env::temp_dir().join(format!(
            "smon-demo-{}-{:08x}",
            std::process::id(),
            rand::rng().random::<u32>()
        ));
        std::fs::create_dir_all(&base).with_context(|| format!("{}", base.display()))?;
        let made = async {
            let list: String = (1..=machines)
                .map(|i| format!("local:demo{i:03}\n"))
                .collect();
            let machines_file = base.join("machines");
            std::fs::write(&machines_file, list)?;
            let path = base.join("cluster");
            let options = cmd_init::InitOptions::with_interval(interval);
            eprintln!(
                "{}",
                cmd_init::init(&path, &machines_file, &options, peer_binary).await?
            );
            ClusterDir::open(&path)
        }
        .await;
        match made {
            Ok(dir) => Ok(Self { base, dir }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&base);
                Err(e)
            }
        }
    }

    /// Deploy, then watch in the TUI (`None`) or wait for all and sum up (headless).
    async fn play(&self, args: &DemoArgs) -> anyhow::Result<Option<DemoSummary>> {
        eprintln!(
            "demo: {} local machines in {}, {} rounds",
            args.machines,
            self.base.display(),
            humantime::format_duration(args.interval)
        );
        let started = Instant::now();
        eprintln!("{}", cmd_cluster::deploy(&self.dir, None).await?);
        if !args.headless {
            let source = tui::Source::Dir(Box::new(ClusterDir::open(&self.dir.path)?));
            tui::run(source, args.readonly).await?;
            return Ok(None);
        }
        let reached = cmd_wait::wait(&self.dir, Goal::Deployed(None), args.timeout).await?;
        let seconds = started.elapsed().as_secs_f64();
        eprintln!("{reached} after {seconds:.1} s");
        let summary = Summary::new(&self.settled_view().await?);
        let size = |path: PathBuf| std::fs::metadata(path).map(|m| m.len()).ok();
        let mut demo = DemoSummary::new(&summary, seconds, self.dir.config.interval_ms);
        demo.package_bytes = size(self.dir.files().package()).unwrap_or(0);
        // A local cluster never needs the gzip form (local machines get the package as is):
        // made here, after the deployment, for the size an SSH machine would be sent.
        let package = self.dir.files().package();
        demo.package_gzip_bytes = smon_login::machine_ops::compressed_package(&package)
            .await
            .ok()
            .and_then(size);
        Ok(Some(demo))
    }

    /// The cluster view once every deployed machine's record says when it was deployed and
    /// two views a round apart agree (at most [`SETTLE_ROUNDS`] rounds).
    async fn settled_view(&self) -> anyhow::Result<smon_proto::ClusterView> {
        let round = Duration::from_millis(self.dir.config.interval_ms);
        let mut previous = None;
        for _ in 0..SETTLE_ROUNDS {
            let view = connect::view(&self.dir).await?;
            let s = Summary::new(&view);
            let dated = view
                .records
                .iter()
                .filter(|(_, r)| r.state.is_up())
                .all(|(_, r)| r.first_deployed_ms.is_some());
            let key = (s.deployed, s.overhead_histogram.clone(), dated);
            if dated && previous.as_ref() == Some(&key) {
                return Ok(view);
            }
            previous = Some(key);
            tokio::time::sleep(round).await;
        }
        connect::view(&self.dir).await
    }

    /// Stop every peer, then remove the temporary directory.
    async fn remove(self) -> anyhow::Result<()> {
        eprintln!("shutting the demo cluster down…");
        let stopped = cmd_cluster::shutdown(&self.dir, SHUTDOWN, true).await;
        let removed = std::fs::remove_dir_all(&self.base)
            .with_context(|| format!("removing {}", self.base.display()));
        eprintln!("{}", stopped?);
        removed
    }
}

/// What `demo --headless --json` prints: how the overlay deployed itself.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DemoSummary {
    /// Machines in the membership.
    pub machines: usize,
    /// Machines seen running a peer when the console stopped waiting.
    pub deployed: usize,
    /// Wall-clock seconds from `deploy` until every machine was seen running a peer.
    pub seconds: f64,
    /// Rounds from the first peer's start to the last one's (their `first_deployed_ms`
    /// apart, over the round length): the paper's deployment time.
    pub rounds: f64,
    /// Rounds after the first start by which half, and nine tenths, of the peers ran.
    pub rounds_p50: f64,
    pub rounds_p90: f64,
    /// The round length, milliseconds.
    pub interval_ms: u64,
    /// Package copies per deployed machine (the paper's deployment overhead): mean, maximum
    /// and copies → machines.
    pub overhead_mean: f64,
    pub overhead_max: u32,
    pub overhead_histogram: BTreeMap<u32, usize>,
    /// Logins per deployed machine, mean.
    pub logins_mean: f64,
    /// Size of the peer package, bytes: installed (as copied to a local machine), and as
    /// copied to an SSH machine (gzip).
    pub package_bytes: u64,
    pub package_gzip_bytes: Option<u64>,
}

impl DemoSummary {
    /// The summary of a cluster that `summary` describes, deployed in `seconds` with rounds
    /// of `interval_ms`; the package sizes are left for the caller to fill in.
    pub fn new(summary: &Summary, seconds: f64, interval_ms: u64) -> Self {
        let mut firsts: Vec<u64> = summary
            .records
            .iter()
            .filter_map(|r| r.first_deployed_ms)
            .collect();
        firsts.sort_unstable();
        let round = interval_ms.max(1) as f64;
        let after_first = |q: f64| match firsts.first() {
            Some(first) => {
                let i = ((firsts.len() as f64 * q) as usize).min(firsts.len() - 1);
                (firsts[i] - first) as f64 / round
            }
            None => 0.0,
        };
        let mean = |histogram: &BTreeMap<u32, usize>| {
            let n: usize = histogram.values().sum();
            let total: u64 = histogram
                .iter()
                .map(|(k, m)| u64::from(*k) * *m as u64)
                .sum();
            if n == 0 { 0.0 } else { total as f64 / n as f64 }
        };
        Self {
            machines: summary.machines as usize,
            deployed: summary.deployed,
            seconds,
            rounds: after_first(1.0),
            rounds_p50: after_first(0.5),
            rounds_p90: after_first(0.9),
            interval_ms,
            overhead_mean: mean(&summary.overhead_histogram),
            overhead_max: summary
                .overhead_histogram
                .keys()
                .max()
                .copied()
                .unwrap_or(0),
            overhead_histogram: summary.overhead_histogram.clone(),
            logins_mean: mean(&summary.logins_histogram),
            package_bytes: 0,
            package_gzip_bytes: None,
        }
    }

    /// The summary in two lines for a person.
    pub fn human(&self) -> String {
        format!(
            "{} of {} machines deployed in {:.1} s; the last peer started {:.1} rounds after \
             the first (p50 {:.1}, p90 {:.1}; rounds of {} ms)\noverhead: mean {:.3}, max {} \
             package copies per machine; package {:.2} MB installed{}",
            self.deployed,
            self.machines,
            self.seconds,
            self.rounds,
            self.rounds_p50,
            self.rounds_p90,
            self.interval_ms,
            self.overhead_mean,
            self.overhead_max,
            self.package_bytes as f64 / 1e6,
            self.package_gzip_bytes
                .map(|b| format!(", {:.2} MB as copied (gzip)", b as f64 / 1e6))
                .unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use smon_proto::{ClusterView, LiveTag, MachineId, MachineRecord, PeerState};

    use super::*;

    #[test]
    fn the_summary_counts_rounds_from_the_first_start_and_overhead_per_deployed_machine() {
        let tag = LiveTag {
            enabled: true,
            version: 0,
        };
        // Ten machines, nine deployed at 0, 1, ..., 8 rounds of 500 ms; overhead 1 but 2 on
        // one; the tenth not deployed.
        let records = (0..10u32)
            .map(|i| {
                let mut r = MachineRecord::empty(i);
                if i < 9 {
                    r.state = PeerState::Running;
                    r.first_deployed_ms = Some(10_000 + 500 * u64::from(i));
                    r.overhead = if i == 4 { 2 } else { 1 };
                    r.logins = 1;
                    r.livetag = tag;
                }
                (MachineId::local(format!("m{i}")), r)
            })
            .collect::<Vec<_>>();
        // The root aggregate of these records, as the answering peer computes it.
        let mut root = smon_proto::Aggregate {
            machines: 10,
            ..Default::default()
        };
        for (_, r) in &records {
            root.add_record(r, 1);
        }
        let view = ClusterView {
            seq: 1,
            membership_version: 1,
            machines: 10,
            livetag: tag,
            records,
            root,
            ..ClusterView::empty(MachineId::local("m0"))
        };
        let s = DemoSummary::new(&Summary::new(&view), 5.5, 500);
        assert_eq!((s.machines, s.deployed), (10, 9));
        assert_eq!(s.rounds, 8.0);
        assert_eq!(s.rounds_p50, 4.0);
        assert_eq!(s.rounds_p90, 8.0);
        assert!((s.overhead_mean - 10.0 / 9.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.overhead_max, 2);
        assert_eq!(s.logins_mean, 1.0);
        let json = serde_json::to_value(&s).unwrap();
        for field in [
            "machines",
            "deployed",
            "seconds",
            "rounds",
            "overhead_mean",
            "overhead_max",
        ] {
            assert!(json.get(field).is_some(), "{field} missing from {json}");
        }
    }
}
