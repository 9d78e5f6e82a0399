//! `smon-console app ...`: install applications and set their desired state.

use clap::Subcommand;

use crate::cluster_dir::ClusterDir;

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

pub async fn run(_dir: &ClusterDir, command: AppCommand) -> anyhow::Result<()> {
    anyhow::bail!("app {command:?}: applications are not implemented yet")
}
