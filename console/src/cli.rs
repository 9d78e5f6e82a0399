//! The command line: batch commands, and the same words typed on the TUI's `:` line.

use std::{path::PathBuf, time::Duration};

use crate::{
    cluster_dir::ClusterDir, cmd_app, cmd_cluster, cmd_cluster::Goal, cmd_init,
    host_keys::PinPolicy,
};
use anyhow::Context;
use clap::{Parser, Subcommand};
use smon_proto::{MachineId, Version};

#[derive(Parser, Debug)]
#[command(version, about = "Operate an smon cluster")]
pub struct Cli {
    /// The cluster directory (made by `init`).
    #[arg(short = 'C', long = "cluster", global = true, default_value = ".")]
    pub cluster: PathBuf,
    /// Ask and act through this machine's peer only (default: the first that answers, in
    /// membership order).
    #[arg(long, global = true, value_name = "MACHINE")]
    pub via: Option<MachineId>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parse words typed on the TUI's command line; the error is clap's message.
    pub fn try_parse_from_words(words: impl IntoIterator<Item = String>) -> Result<Self, String> {
        Self::try_parse_from(words).map_err(|e| e.to_string())
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a cluster directory: keys, settings, the machine list, the signed package.
    Init {
        dir: PathBuf,
        /// The machines file: one `[user@]host[:port]` or `local:NAME` per line.
        #[arg(long)]
        machines: PathBuf,
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// The smon-peer binary to package (default: next to smon-console).
        #[arg(long)]
        peer_binary: Option<PathBuf>,
        /// Disabled peers go silent and exit after this long without hearing from anyone
        /// (default: they stay, answering and keeping the cluster view current).
        #[arg(long, value_parser = humantime::parse_duration)]
        disabled_exit_after: Option<Duration>,
        /// A peer removed from the membership exits after this long without hearing from
        /// anyone (default: 12 rounds).
        #[arg(long, value_parser = humantime::parse_duration)]
        removed_exit_after: Option<Duration>,
        /// The key the cluster's agent will hold (SSH logins); it is the release key too, so
        /// packages are signed by the agent. Without it, the directory gets a release key of
        /// its own (enough for local machines).
        #[command(flatten)]
        agent_key: crate::cmd_agent::KeyArgs,
        /// An OpenSSH known_hosts file with the SSH machines' host keys: they are pinned in
        /// the membership, which every peer checks logins against.
        #[arg(long)]
        known_hosts: Option<PathBuf>,
        /// Fetch the host keys of SSH machines that are not pinned yet, print their
        /// fingerprints and pin them (trust on first use, once, here).
        #[arg(long)]
        scan_host_keys: bool,
        /// Let peers accept the host key of an SSH machine the membership does not pin, the
        /// first time they log in to it (never a key that differs from a pinned one).
        #[arg(long)]
        ssh_trust_on_first_use: bool,
    },
    /// Start the first peer; the others deploy themselves from it.
    Deploy { machine: Option<MachineId> },
    /// The cluster as any peer sees it.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Wait until the cluster reaches a state; non-zero exit at the timeout.
    Wait {
        /// A number of machines, or `all`.
        #[arg(long, group = "goal")]
        deployed: Option<String>,
        #[arg(long, group = "goal")]
        version: Option<Version>,
        #[arg(long, group = "goal")]
        disabled: bool,
        #[arg(long, group = "goal")]
        enabled: bool,
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Build a signed package of the peer labelled VERSION.
    Package {
        #[arg(long)]
        version: Version,
        #[arg(long)]
        out: PathBuf,
        /// Package this smon-peer binary instead of the cluster's current one.
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// Give a package to one peer: it upgrades, and the others follow.
    Upgrade { file: PathBuf },
    /// Switch self-management off everywhere (livetag = false).
    Disable,
    /// Switch self-management back on.
    Enable,
    /// Change the membership list.
    Membership {
        #[command(subcommand)]
        command: MembershipCommand,
    },
    /// Applications: install, set desired state, status.
    App {
        #[command(subcommand)]
        command: cmd_app::AppCommand,
    },
    /// The cluster's authentication agent (SSH machines): start, stop, status.
    Agent {
        #[command(subcommand)]
        command: crate::cmd_agent::AgentCommand,
    },
    /// Disable, then stop every peer.
    Shutdown {
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Watch and steer the cluster in a terminal UI.
    Tui {
        /// Watch through this peer (`host:port`) instead of the cluster directory's machines.
        #[arg(long, requires = "key")]
        peer: Option<String>,
        /// The cluster key file, with --peer.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Watch only: no action changes the cluster.
        #[arg(long)]
        readonly: bool,
    },
    /// Start a local demo cluster and watch it deploy itself; quitting shuts it down.
    Demo {
        #[arg(long, default_value_t = 60)]
        machines: usize,
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: Duration,
        #[arg(long)]
        readonly: bool,
        /// The smon-peer binary to package (default: next to smon-console).
        #[arg(long)]
        peer_binary: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum MembershipCommand {
    /// Replace the list with the machines of FILE. SSH machines get their host keys pinned
    /// from DIR/known_hosts.
    Set {
        file: PathBuf,
        /// Fetch the host keys of SSH machines not pinned yet, print and pin them.
        #[arg(long)]
        scan_host_keys: bool,
    },
}

fn default_peer_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("smon-peer")))
        .unwrap_or_else(|| PathBuf::from("smon-peer"))
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let open = || ClusterDir::open(&cli.cluster).map(|dir| dir.through(cli.via.clone()));
    match cli.command {
        Command::Init {
            dir,
            machines,
            interval,
            peer_binary,
            disabled_exit_after,
            removed_exit_after,
            agent_key,
            known_hosts,
            scan_host_keys,
            ssh_trust_on_first_use,
        } => {
            let options = cmd_init::InitOptions {
                interval,
                disabled_exit_after,
                removed_exit_after,
                agent_key: crate::cmd_agent::AgentKey::from_args(agent_key)?,
                known_hosts,
                pins: PinPolicy {
                    scan: scan_host_keys,
                    trust_on_first_use: ssh_trust_on_first_use,
                },
            };
            cmd_init::init(
                &dir,
                &machines,
                &options,
                &peer_binary.unwrap_or_else(default_peer_binary),
            )
            .await
        }
        Command::Deploy { machine } => cmd_cluster::deploy(&open()?, machine).await,
        Command::Status { json } => cmd_cluster::status(&open()?, json).await,
        Command::Wait {
            deployed,
            version,
            disabled,
            enabled,
            timeout,
        } => {
            let goal = match (deployed, version) {
                (Some(n), _) if n == "all" => Goal::Deployed(None),
                (Some(n), _) => Goal::Deployed(Some(
                    n.parse()
                        .with_context(|| format!("--deployed {n:?}: a number or `all`"))?,
                )),
                (None, Some(v)) => Goal::Version(v),
                (None, None) if disabled => Goal::Disabled,
                (None, None) if enabled => Goal::Enabled,
                _ => anyhow::bail!(
                    "wait for what? --deployed N|all, --version V, --disabled or --enabled"
                ),
            };
            cmd_cluster::wait(&open()?, goal, timeout).await
        }
        Command::Package {
            version,
            out,
            binary,
        } => cmd_cluster::package(&open()?, version, &out, binary.as_deref()).await,
        Command::Upgrade { file } => cmd_cluster::upgrade(&open()?, &file).await,
        Command::Disable => cmd_cluster::set_livetag(&open()?, false).await,
        Command::Enable => cmd_cluster::set_livetag(&open()?, true).await,
        Command::Membership {
            command:
                MembershipCommand::Set {
                    file,
                    scan_host_keys,
                },
        } => cmd_cluster::set_membership(&open()?, &file, scan_host_keys).await,
        Command::App { command } => cmd_app::run(&open()?, command).await,
        Command::Agent { command } => crate::cmd_agent::run(&open()?, command).await,
        Command::Shutdown { timeout } => cmd_cluster::shutdown(&open()?, timeout).await,
        Command::Tui {
            peer,
            key,
            readonly,
        } => {
            let source = match (peer, key) {
                (Some(addr), Some(key)) => crate::tui::Source::Peer {
                    addr,
                    key: smon_proto::ClusterKey::load(&key)?,
                },
                _ => crate::tui::Source::Dir(Box::new(open()?)),
            };
            crate::tui::run(source, readonly).await
        }
        Command::Demo {
            machines,
            interval,
            readonly,
            peer_binary,
        } => {
            crate::tui::demo(
                machines,
                interval,
                peer_binary.unwrap_or_else(default_peer_binary),
                readonly,
            )
            .await
        }
    }
}

pub fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("smon-console: {e:#}");
        std::process::exit(1);
    }
}
