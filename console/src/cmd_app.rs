//! `smon-console app ...`: install applications and set their desired state.
//!
//! - `app install DIR_OR_PACKAGE`: a directory with `app.toml` is packaged and signed with the
//!   cluster's release key (a package file is taken as it is); either way it is verified here,
//!   then pushed to one peer, which verifies it again, installs it and spreads it.
//! - `app set NAME online|offline|ignore`: cluster-wide (it spreads to every peer), or with
//!   `--machine M` on that machine only (`set_app_status` on its peer).
//! - `app status [NAME] [--json]`: every machine's application states, from the gossiped view
//!   of any one peer.

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::Serialize;
use smon_proto::{
    AppState, ClusterView, ControlAction, DesiredState, MachineAppDesired, MachineId, app_package,
    chunked,
};

use crate::{cluster_dir::ClusterDir, connect};

#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Install an application (a directory with app.toml, or a package file) on the cluster.
    Install { source: std::path::PathBuf },
    /// Set an application's desired state.
    Set {
        name: String,
        /// online, offline or ignore
        state: String,
        /// Only on this machine (default: all).
        #[arg(long, conflicts_with = "all")]
        machine: Option<smon_proto::MachineId>,
        #[arg(long)]
        all: bool,
    },
    /// Application states per machine.
    Status {
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(dir: &ClusterDir, command: AppCommand) -> anyhow::Result<()> {
    match command {
        AppCommand::Install { source } => install(dir, &source).await,
        AppCommand::Set {
            name,
            state,
            machine,
            all: _,
        } => {
            let desired: DesiredState = state.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            set(dir, &name, desired, machine).await
        }
        AppCommand::Status { name, json } => {
            let view = connect::view(dir).await?;
            let status = AppsStatus::new(&view, name.as_deref());
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status.human());
            }
            Ok(())
        }
    }
}

/// The signed package of `source` (a directory with app.toml, or a package file), verified
/// against the cluster's release key.
pub async fn package(dir: &ClusterDir, source: &Path) -> anyhow::Result<(Vec<u8>, String)> {
    let trusted = dir.trusted_release_key()?;
    let package = if source.is_dir() {
        let (spec, files) = app_package::read_app_dir(source)?;
        let mut manifest = app_package::app_manifest(&spec, &files);
        crate::signing::sign(dir, &mut manifest).await?;
        app_package::encode_app_package(&manifest, &files)
    } else {
        std::fs::read(source).with_context(|| format!("{}", source.display()))?
    };
    let app = app_package::verify_app_package(&package, &trusted)
        .with_context(|| format!("{}", source.display()))?;
    let label = format!("{} {}", app.manifest.name, app.manifest.version);
    Ok((package, label))
}

async fn install(dir: &ClusterDir, source: &Path) -> anyhow::Result<()> {
    let (package, label) = package(dir, source).await?;
    let (machine, client) = connect::any_peer(dir).await?;
    let answer = chunked::push(chunked::Kind::App, &package, |action| {
        connect::control_one(&machine, &client, action)
    })
    .await
    .with_context(|| format!("installing {label}"))?;
    println!("{answer}");
    Ok(())
}

async fn set(
    dir: &ClusterDir,
    name: &str,
    desired: DesiredState,
    machine: Option<MachineId>,
) -> anyhow::Result<()> {
    // A revision above any made before: this console's clock (as the peers' own settings
    // were), signed with the cluster's release key; a peer refuses it otherwise.
    let rev = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    let Some(machine) = machine else {
        let signature = crate::signing::sign_app_desired(dir, name, desired, rev).await?;
        let action = ControlAction::SetAppDesired {
            name: name.to_owned(),
            desired,
            rev,
            signature,
        };
        let answer = connect::control(dir, action).await?;
        println!("{answer}");
        return Ok(());
    };
    if dir.membership.index_of(&machine).is_none() {
        bail!(
            "{machine} is not in the membership list of {}",
            dir.path.display()
        );
    }
    let unsigned = MachineAppDesired {
        machine: machine.clone(),
        name: name.to_owned(),
        desired,
        rev,
        signature: Vec::new(),
    };
    let signed = crate::signing::sign_machine_app_desired(dir, unsigned).await?;
    let client = connect::peer_of(dir, &machine).await?;
    client
        .set_app_status(connect::ctx(Duration::from_secs(10)), signed)
        .await
        .map_err(|e| anyhow::anyhow!("{machine}: {e}"))?
        .map_err(|refusal| anyhow::anyhow!("{machine} refused: {refusal}"))?;
    println!("{name} set {desired} on {machine}");
    Ok(())
}

/// One application on one machine.
#[derive(Clone, Debug, Serialize)]
pub struct AppRow {
    pub machine: String,
    pub app: String,
    pub version: String,
    pub desired: DesiredState,
    pub state: smon_proto::AppState,
    pub restarts: u32,
    /// The machine's peer, as the view knows it (a stopped peer's app states are its last).
    pub peer: String,
    /// Why the application is in its state, when its peer says (it cannot be tracked).
    pub reason: Option<String>,
}

/// One application over the cluster.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AppSummary {
    pub name: String,
    /// Machines reporting it (over the whole cluster, from the root aggregate).
    pub machines: usize,
    pub versions: BTreeMap<String, usize>,
    pub desired: BTreeMap<String, usize>,
    pub states: BTreeMap<String, usize>,
    pub restarts: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct AppsStatus {
    pub answered_by: String,
    pub machines: u32,
    pub apps: Vec<AppSummary>,
    pub rows: Vec<AppRow>,
}

impl AppsStatus {
    pub fn new(view: &ClusterView, name: Option<&str>) -> Self {
        let mut rows = Vec::new();
        let mut apps: BTreeMap<String, AppSummary> = BTreeMap::new();
        for (machine, record) in &view.records {
            for app in &record.apps {
                if name.is_some_and(|n| n != app.name) {
                    continue;
                }
                let s = apps.entry(app.name.clone()).or_insert_with(|| AppSummary {
                    name: app.name.clone(),
                    ..AppSummary::default()
                });
                s.machines += 1;
                *s.versions.entry(app.version.to_string()).or_default() += 1;
                *s.desired.entry(app.desired.to_string()).or_default() += 1;
                *s.states.entry(app.state.to_string()).or_default() += 1;
                s.restarts += u64::from(app.restarts);
                rows.push(AppRow {
                    machine: machine.to_string(),
                    app: app.name.clone(),
                    version: app.version.to_string(),
                    desired: app.desired,
                    state: app.state,
                    restarts: app.restarts,
                    peer: record.state.as_str().into(),
                    reason: app.reason.as_ref().map(ToString::to_string),
                });
            }
        }
        // Machines and states over the whole cluster come from the root aggregate; versions,
        // desired states and restarts from the records the answering peer holds.
        for count in &view.root.apps {
            if name.is_some_and(|n| n != count.name) {
                continue;
            }
            let s = apps
                .entry(count.name.clone())
                .or_insert_with(|| AppSummary {
                    name: count.name.clone(),
                    ..AppSummary::default()
                });
            s.machines = count.total() as usize;
            s.states = AppState::ALL
                .iter()
                .filter(|st| count.count(**st) > 0)
                .map(|st| (st.to_string(), count.count(*st) as usize))
                .collect();
        }
        Self {
            answered_by: view.answered_by.to_string(),
            machines: view.machines,
            apps: apps.into_values().collect(),
            rows,
        }
    }

    pub fn human(&self) -> String {
        let count = |m: &BTreeMap<String, usize>| {
            m.iter()
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut t = format!(
            "{} machines, answered by {}\n",
            self.machines, self.answered_by
        );
        if self.apps.is_empty() {
            t += "no application reported\n";
            return t;
        }
        for a in &self.apps {
            t += &format!(
                "{}: on {}/{} machines; {}; versions {}; desired {}; {} restarts\n",
                a.name,
                a.machines,
                self.machines,
                count(&a.states),
                count(&a.versions),
                count(&a.desired),
                a.restarts
            );
        }
        t += &format!(
            "{:<28} {:<16} {:<9} {:<8} {:<10} {:>8}  {}\n",
            "MACHINE", "APP", "VERSION", "DESIRED", "STATE", "RESTARTS", "PEER"
        );
        for r in &self.rows {
            t += &format!(
                "{:<28} {:<16} {:<9} {:<8} {:<10} {:>8}  {}\n",
                r.machine,
                r.app,
                r.version,
                r.desired.as_str(),
                r.state.as_str(),
                r.restarts,
                r.peer
            );
            if let Some(why) = &r.reason {
                t += &format!("{:<28} why: {why}\n", "");
            }
        }
        t
    }
}
