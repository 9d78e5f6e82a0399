//! What the cluster view says, counted: the numbers `status` prints and `wait` waits for.

use std::collections::BTreeMap;

use serde::Serialize;
use smon_proto::{ClusterView, LiveTag, PeerState};

#[derive(Clone, Debug, Serialize)]
pub struct MachineRow {
    pub machine: String,
    pub state: String,
    pub version: Option<String>,
    pub livetag: LiveTag,
    pub overhead: u32,
    pub logins: u32,
    pub first_deployed_ms: Option<u64>,
    pub load: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub answered_by: String,
    pub machines: u32,
    pub membership_version: u64,
    /// Machines known to run a peer (running, disabled or removed).
    pub deployed: usize,
    pub running: usize,
    pub disabled: usize,
    pub unreachable: usize,
    /// Machines whose address answered as another machine (see `PeerState::Conflict`).
    pub conflicts: Vec<String>,
    pub versions: BTreeMap<String, usize>,
    pub livetag: LiveTag,
    /// Deployed machines whose record carries the answering peer's livetag.
    pub livetag_agreeing: usize,
    /// Package copies per machine → machines.
    pub overhead_histogram: BTreeMap<u32, usize>,
    pub logins_histogram: BTreeMap<u32, usize>,
    pub records: Vec<MachineRow>,
}

impl Summary {
    pub fn new(view: &ClusterView) -> Self {
        let mut s = Summary {
            answered_by: view.answered_by.to_string(),
            machines: view.machines,
            membership_version: view.membership_version,
            deployed: 0,
            running: 0,
            disabled: 0,
            unreachable: 0,
            conflicts: Vec::new(),
            versions: BTreeMap::new(),
            livetag: view.livetag,
            livetag_agreeing: 0,
            overhead_histogram: BTreeMap::new(),
            logins_histogram: BTreeMap::new(),
            records: Vec::new(),
        };
        for (machine, r) in &view.records {
            if r.state.is_up() {
                s.deployed += 1;
                if let Some(v) = r.peer_version {
                    *s.versions.entry(v.to_string()).or_default() += 1;
                }
                *s.overhead_histogram.entry(r.overhead).or_default() += 1;
                *s.logins_histogram.entry(r.logins).or_default() += 1;
                if r.livetag == view.livetag {
                    s.livetag_agreeing += 1;
                }
            }
            match r.state {
                PeerState::Running => s.running += 1,
                PeerState::Disabled => s.disabled += 1,
                PeerState::Unreachable => s.unreachable += 1,
                PeerState::Conflict => s.conflicts.push(machine.to_string()),
                _ => {}
            }
            s.records.push(MachineRow {
                machine: machine.to_string(),
                state: format!("{:?}", r.state).to_lowercase(),
                version: r.peer_version.map(|v| v.to_string()),
                livetag: r.livetag,
                overhead: r.overhead,
                logins: r.logins,
                first_deployed_ms: r.first_deployed_ms,
                load: f64::from(r.load) / 100.0,
            });
        }
        s
    }

    pub fn human(&self) -> String {
        let mut t = format!(
            "{} machines (membership v{}), answered by {}\n",
            self.machines, self.membership_version, self.answered_by
        );
        t += &format!(
            "deployed {}/{}: running {}, disabled {}; unreachable {}\n",
            self.deployed, self.machines, self.running, self.disabled, self.unreachable
        );
        if !self.conflicts.is_empty() {
            t += &format!(
                "CONFLICT: another machine's peer answers at the address of {}: two entries \
                 share an address and port (the same host under two names?); they are not \
                 deployed until that is fixed (peer logs say which answered)\n",
                self.conflicts.join(", ")
            );
        }
        let versions: Vec<_> = self
            .versions
            .iter()
            .map(|(v, n)| format!("{v} ×{n}"))
            .collect();
        t += &format!(
            "versions: {}\n",
            if versions.is_empty() {
                "-".into()
            } else {
                versions.join(", ")
            }
        );
        t += &format!(
            "livetag: {} (v{}), carried by {}/{} deployed\n",
            if self.livetag.enabled {
                "enabled"
            } else {
                "disabled"
            },
            self.livetag.version,
            self.livetag_agreeing,
            self.deployed
        );
        let hist: Vec<_> = self
            .overhead_histogram
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        t += &format!("overhead (copies: machines): {}\n", hist.join(", "));
        t += &format!(
            "{:<28} {:<12} {:<9} {:>8} {:>6}\n",
            "MACHINE", "STATE", "VERSION", "OVERHEAD", "LOGINS"
        );
        for r in &self.records {
            t += &format!(
                "{:<28} {:<12} {:<9} {:>8} {:>6}\n",
                r.machine,
                r.state,
                r.version.as_deref().unwrap_or("-"),
                r.overhead,
                r.logins
            );
        }
        t
    }
}
