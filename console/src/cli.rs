//! The command line's grammar: the batch commands, and the same words typed on the TUI's `:`
//! line. What each changing command will do, as the TUI asks before running it, is written
//! here once ([`Command::in_tui`]). Running a command is `run.rs`'s.

use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};
use smon_proto::{MachineId, Version};

use crate::{
    cmd_agent::{AgentCommand, KeyArgs},
    cmd_app::AppCommand,
    cmd_wait::Goal,
};

#[derive(Parser, Debug)]
#[command(version, about = "Operate an smon cluster")]
pub struct Cli {
    /// The cluster directory (made by `init`); SMON_CLUSTER is its default, as KUBECONFIG is
    /// kubectl's.
    #[arg(
        short = 'C',
        long = "cluster",
        global = true,
        env = "SMON_CLUSTER",
        default_value = "."
    )]
    pub cluster: PathBuf,
    /// Talk to this machine's peer only (default: the first that answers, in membership
    /// order): to act on one side of a partition, or to start a change from one machine.
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
    Init(InitArgs),
    /// Start the first peer; the others deploy themselves from it.
    Deploy { machine: Option<MachineId> },
    /// The cluster as any peer sees it.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Wait until the cluster reaches a state (exit codes: see `wait --help`).
    #[command(after_help = WAIT_EXIT_CODES)]
    Wait(WaitArgs),
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
    /// Give a package to one peer: it upgrades, and the others follow. Then watch: say when
    /// the release spreads, or fail (exit 5) when it is marked bad on a machine.
    Upgrade {
        file: PathBuf,
        /// Watch the upgrade this long before returning (0: return at once).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        watch: Duration,
    },
    /// Switch self-management off everywhere (livetag = false).
    Disable,
    /// Switch self-management back on.
    Enable,
    /// Rotate the cluster key: a new key, sealed under the current one and signed with the
    /// release key, spreads to every peer; both are accepted for the grace period, then only
    /// the new one (a machine away all that time is deployed over with the new key).
    Rekey {
        /// How long peers accept the previous key next to the new one.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        grace: Duration,
    },
    /// Change the membership list.
    Membership {
        #[command(subcommand)]
        command: MembershipCommand,
    },
    /// Applications: install, set desired state, status.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// The cluster's authentication agent (SSH machines): start, stop, status.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Disable, then stop every peer and, with it, the applications it supervises.
    Shutdown {
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Leave the applications running, unsupervised (a peer deployed later adopts them).
        #[arg(long)]
        keep_apps: bool,
    },
    /// Watch and steer the cluster in a terminal UI.
    Tui(TuiArgs),
    /// A local demo cluster in a temporary directory: deployed and watched in the TUI (quitting
    /// shuts it down), or with --headless deployed, summed up and shut down.
    Demo(DemoArgs),
    /// The changes the cluster view sees, one line each (as `kubectl get events -w` and
    /// `serf monitor`): machines deployed, unreachable, recovered or upgraded, the livetag,
    /// applications' states, membership versions.
    Events(EventsArgs),
    /// The cluster's figures and the answering peer's for Prometheus, in the OpenMetrics text
    /// format: printed once, or served at http://ADDR/metrics with --listen (an exporter that
    /// follows any peer and fails over as the TUI does).
    Metrics(MetricsArgs),
    /// A machine's log, read by the peer that runs there and reached through any peer (as
    /// `kubectl logs`): the peer's own log, or the application APP's output.
    Logs(LogsArgs),
    /// A shell completion script on standard output: `source <(smon-console completions bash)`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The manual page (roff) on standard output: `smon-console man | man -l -`.
    Man,
}

#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    /// Print the current state as events, then keep watching and print each change as it is
    /// seen (failing over to another peer when the one watched stops answering). Without it:
    /// the current state as events (each machine's peer and applications, the livetag, the
    /// membership version), then exit.
    #[arg(short, long)]
    pub follow: bool,
    /// One JSON object per line: `time`, `machine`, `kind`, and the kind's own fields.
    #[arg(long)]
    pub json: bool,
    /// How often to ask the peer for what changed.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub every: Duration,
}

#[derive(clap::Args, Debug)]
pub struct MetricsArgs {
    /// Serve the figures at http://ADDR/metrics (HOST:PORT; port 0: a free one, printed)
    /// until interrupted, instead of printing them once.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The text format printed (a scraper of --listen gets what its Accept header asks for):
    /// OpenMetrics, or Prometheus' text format 0.0.4 (what `promtool check metrics` reads).
    #[arg(long, value_enum, default_value = "openmetrics")]
    pub format: MetricsFormat,
    /// With --listen: how often to ask the followed peer for its view.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub every: Duration,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum MetricsFormat {
    Openmetrics,
    Prometheus,
}

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// The machine whose log to read.
    pub machine: MachineId,
    /// An application's log on that machine (default: the machine's peer's own log).
    pub app: Option<String>,
    /// The last N lines (a peer sends at most 10,000 lines and 1 MiB per answer).
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 100)]
    pub lines: u32,
    /// After them, print lines as they are appended, until interrupted (a rotated or
    /// truncated log is followed from its start).
    #[arg(short, long)]
    pub follow: bool,
    /// Only lines of the last DURATION (`10m`, `1h`), by the time a line starts with (the
    /// peer's log has one on every line; a line without one goes with the line before it).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
}

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    pub dir: PathBuf,
    /// The machines file: one `[user@]host[:port]` or `local:NAME` per line.
    #[arg(long)]
    pub machines: PathBuf,
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// The smon-peer binary to package (default: next to smon-console).
    #[arg(long)]
    pub peer_binary: Option<PathBuf>,
    /// Disabled peers go silent and exit after this long without hearing from anyone
    /// (default: they stay, answering and keeping the cluster view current).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub disabled_exit_after: Option<Duration>,
    /// A peer removed from the membership exits after this long without hearing from
    /// anyone (default: 12 rounds).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub removed_exit_after: Option<Duration>,
    /// A peer whose process is there but does not answer pings (stopped, hung) is shown as
    /// unresponsive after a few rounds, then killed and restarted after this much silence
    /// (default: 12 rounds).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub unresponsive_grace: Option<Duration>,
    /// The key the cluster's agent will hold (SSH logins); it is the release key too, so
    /// packages are signed by the agent. Without it, the directory gets a release key of
    /// its own (enough for local machines).
    #[command(flatten)]
    pub agent_key: KeyArgs,
    /// An OpenSSH known_hosts file with the SSH machines' host keys: they are pinned in
    /// the membership, which every peer checks logins against.
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// Fetch the host keys of SSH machines that are not pinned yet, print their
    /// fingerprints and pin them (trust on first use, once, here).
    #[arg(long)]
    pub scan_host_keys: bool,
    /// Let peers accept the host key of an SSH machine the membership does not pin, the
    /// first time they log in to it (never a key that differs from a pinned one).
    #[arg(long)]
    pub ssh_trust_on_first_use: bool,
    /// Where peers reach the agent (HOST:PORT; the agent listens there): an address of
    /// this host every machine can reach. Port 0: a free one, chosen when the agent
    /// starts. Default: a free port on 127.0.0.1, which only local machines reach.
    #[arg(long, value_name = "HOST:PORT")]
    pub agent: Option<String>,
    /// Every peer serves its figures and the cluster's at http://ADDRESS:PORT/metrics
    /// (OpenMetrics, for Prometheus), on loopback unless --metrics-public; a machine whose
    /// peer port moves by an offset (several accounts of one host) moves this port too.
    #[arg(long, value_name = "PORT")]
    pub metrics_port: Option<u16>,
    /// Serve /metrics on the machine's own address, not loopback (needs --metrics-port).
    #[arg(long, requires = "metrics_port")]
    pub metrics_public: bool,
    /// Take over machines that hold another cluster's install (a peer of an earlier
    /// `init`, whose key this cluster's packages are not signed by): deployers stop that
    /// peer and its applications, remove its state and install this cluster. Without it
    /// such a machine is refused, and the error says what is there.
    #[arg(long)]
    pub take_over: bool,
}

/// `wait`'s exit codes, as `wait --help` shows them (the values are `cmd_wait::exit_code`'s).
const WAIT_EXIT_CODES: &str = "\
Exit codes:
  0  reached: the goal is met (at once when it already was, or is met by any cluster,
     like --deployed 0)
  1  another error (the cluster directory cannot be read, ...)
  2  the arguments are wrong (usage)
  3  cluster unreachable: no peer answered until the timeout
  4  timed out: peers answered, but the goal was not reached by the timeout
  5  marked bad, at once: --version V was rolled back on a machine (its binary exited at
     start, or it did not rejoin), so peers never take it; the message says where and why
  6  refused at once: the goal can never be met (--deployed N above the number of machines
     in the membership; --version V older than every release the cluster runs)";

#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    #[command(flatten)]
    pub goal: WaitGoal,
    /// Give up after this long (exit 3 or 4).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// `wait`'s goal: exactly one of these.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct WaitGoal {
    /// Until N machines run a peer (`all`: every machine of the membership; 0 is met at once).
    #[arg(long, value_name = "N|all", value_parser = parse_deployed)]
    pub deployed: Option<DeployedGoal>,
    /// Until every machine runs this release.
    #[arg(long, value_name = "V")]
    pub version: Option<Version>,
    /// Until every peer that answers is disabled.
    #[arg(long)]
    pub disabled: bool,
    /// Until every peer that answers is enabled.
    #[arg(long)]
    pub enabled: bool,
}

/// `--deployed`'s value: a number of machines, or every machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeployedGoal(pub Option<usize>);

fn parse_deployed(text: &str) -> Result<DeployedGoal, String> {
    match text {
        "all" => Ok(DeployedGoal(None)),
        _ => text
            .parse()
            .map(|n| DeployedGoal(Some(n)))
            .map_err(|_| format!("{text:?} is neither a number of machines nor `all`")),
    }
}

impl WaitGoal {
    /// What to wait for (clap makes sure exactly one goal was given).
    pub fn goal(&self) -> Goal {
        match (self.deployed, self.version) {
            (Some(DeployedGoal(n)), _) => Goal::Deployed(n),
            (None, Some(v)) => Goal::Version(v),
            (None, None) if self.enabled => Goal::Enabled,
            (None, None) => Goal::Disabled,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct TuiArgs {
    /// Watch through this peer (`host:port`) instead of the cluster directory's machines.
    #[arg(long, requires = "key")]
    pub peer: Option<String>,
    /// The cluster key file, with --peer.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Watch only: no action changes the cluster.
    #[arg(long)]
    pub readonly: bool,
}

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    #[arg(long, default_value_t = 60)]
    pub machines: usize,
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Watch only: no action changes the cluster.
    #[arg(long, conflicts_with = "headless")]
    pub readonly: bool,
    /// The smon-peer binary to package (default: next to smon-console).
    #[arg(long)]
    pub peer_binary: Option<PathBuf>,
    /// No TUI: deploy, wait until every machine runs a peer, print a summary, shut down.
    #[arg(long)]
    pub headless: bool,
    /// With --headless: the summary as JSON (machines, deployed, seconds, rounds,
    /// overhead_mean, overhead_max, ...).
    #[arg(long, requires = "headless")]
    pub json: bool,
    /// With --headless: give up (and shut down) when not all are deployed by then.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
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
    /// The membership list the answering peer holds, with its version.
    Show {
        #[arg(long)]
        json: bool,
    },
}

/// What a command typed on the TUI's `:` line means there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InTui {
    /// It changes something: run it once the operator says yes to this.
    Confirm(String),
    /// It only reads what the views already show.
    ReadsOnly,
    /// It needs a terminal or a directory of its own (init, tui, demo): not from the TUI.
    NotHere,
}

impl Command {
    /// What running this command from inside the TUI means: for a command that changes the
    /// cluster, the text the confirmation shows (the one place it is written).
    pub fn in_tui(&self) -> InTui {
        use InTui::{Confirm, NotHere, ReadsOnly};
        match self {
            Command::Disable => Confirm(
                "Disable self-management on every peer (livetag = false): peers stop pinging \
                 and deploying, but keep answering."
                    .into(),
            ),
            Command::Enable => Confirm(
                "Enable self-management on every peer (livetag = true): peers resume pinging, \
                 deploying and restarting."
                    .into(),
            ),
            Command::Rekey { grace } => Confirm(format!(
                "Rotate the cluster key: every peer takes a new key and accepts the old one \
                 for another {} only.",
                humantime::format_duration(*grace)
            )),
            Command::Upgrade { file, .. } => Confirm(format!(
                "Push the release {} to one peer; it upgrades and every other peer follows.",
                file.display()
            )),
            Command::Membership {
                command: MembershipCommand::Set { file, .. },
            } => Confirm(format!(
                "Replace the membership list with {}: added machines get deployed, removed \
                 ones stop.",
                file.display()
            )),
            Command::App { command } => app_in_tui(command),
            Command::Agent { command } => match command {
                AgentCommand::Start { .. } => {
                    Confirm("Start the cluster's authentication agent.".into())
                }
                AgentCommand::Stop => Confirm(
                    "Stop the cluster's authentication agent: SSH logins fail until it is back."
                        .into(),
                ),
                AgentCommand::Status { .. } => ReadsOnly,
            },
            Command::Deploy { machine } => Confirm(format!(
                "Deploy a peer on {}.",
                machine
                    .as_ref()
                    .map_or("the first machine".to_string(), |m| m.to_string())
            )),
            Command::Package { version, out, .. } => Confirm(format!(
                "Build a signed package of the peer labelled {version} at {}.",
                out.display()
            )),
            Command::Shutdown { .. } => {
                Confirm("Disable, then stop every peer of the cluster.".into())
            }
            Command::Status { .. }
            | Command::Metrics(MetricsArgs { listen: None, .. })
            | Command::Wait(_)
            | Command::Logs(_)
            | Command::Membership {
                command: MembershipCommand::Show { .. },
            } => ReadsOnly,
            Command::Init(_)
            | Command::Tui(_)
            | Command::Demo(_)
            | Command::Events(_)
            | Command::Metrics(_)
            | Command::Completions { .. }
            | Command::Man => NotHere,
        }
    }
}

fn app_in_tui(command: &AppCommand) -> InTui {
    match command {
        AppCommand::Install { source } => InTui::Confirm(format!(
            "Install the application {} on every peer (signed, then spread).",
            source.display()
        )),
        AppCommand::Set {
            name,
            state,
            machine,
            ..
        } => InTui::Confirm(format!(
            "Set the application {name} {state} on {}.",
            machine
                .as_ref()
                .map_or("every machine".to_string(), |m| m.to_string())
        )),
        AppCommand::Status { .. } => InTui::ReadsOnly,
    }
}
