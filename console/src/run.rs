//! `smon-console`'s entry: parse the command line ([`crate::cli`]) and run the one command,
//! a batch command, the TUI or the demo.

use std::path::PathBuf;

use clap::Parser;

use crate::{
    cli::{Cli, Command, InitArgs, MembershipCommand, TuiArgs},
    cluster_dir::ClusterDir,
    cmd_agent, cmd_app, cmd_cluster, cmd_demo, cmd_docs, cmd_events, cmd_init, cmd_logs,
    cmd_membership, cmd_metrics, cmd_rekey, cmd_upgrade, cmd_wait,
    host_keys::PinPolicy,
    tui,
};

/// The smon-peer binary next to this one (what `init` and `demo` package by default).
pub fn default_peer_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(smon_proto::files::PEER_BINARY)))
        .unwrap_or_else(|| PathBuf::from(smon_proto::files::PEER_BINARY))
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let open = || ClusterDir::open(&cli.cluster)?.with_via(cli.via.clone());
    match cli.command {
        Command::Init(args) => say(init(args).await),
        Command::Deploy { machine } => say(cmd_cluster::deploy(&open()?, machine).await),
        Command::Status { json } => cmd_cluster::status(&open()?, json).await,
        Command::Wait(args) => say(cmd_wait::wait(&open()?, args.goal.goal(), args.timeout).await),
        Command::Package {
            version,
            out,
            binary,
        } => cmd_cluster::package(&open()?, version, &out, binary.as_deref()).await,
        Command::Upgrade { file, watch } => cmd_upgrade::upgrade(&open()?, &file, watch).await,
        Command::Disable => cmd_cluster::set_livetag(&open()?, false).await,
        Command::Enable => cmd_cluster::set_livetag(&open()?, true).await,
        Command::Rekey { grace } => cmd_rekey::rekey(&open()?, grace).await,
        Command::Membership {
            command:
                MembershipCommand::Set {
                    file,
                    scan_host_keys,
                },
        } => cmd_cluster::set_membership(&open()?, &file, scan_host_keys).await,
        Command::Membership {
            command: MembershipCommand::Show { json },
        } => {
            let show = cmd_membership::show(&open()?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&show)?);
            } else {
                println!("{}", show.human());
            }
            Ok(())
        }
        Command::Events(args) => cmd_events::run(&open()?, args).await,
        Command::Metrics(args) => quiet_pipe(cmd_metrics::run(&open()?, args).await),
        Command::Logs(args) => quiet_pipe(cmd_logs::run(open()?, args).await),
        Command::Completions { shell } => {
            quiet_pipe(cmd_docs::completions(shell, &mut std::io::stdout()).map_err(Into::into))
        }
        Command::Man => quiet_pipe(cmd_docs::man(&mut std::io::stdout())),
        Command::App { command } => cmd_app::run(&open()?, command).await,
        Command::Agent { command } => cmd_agent::run(&open()?, command).await,
        Command::Shutdown { timeout, keep_apps } => {
            say(cmd_cluster::shutdown(&open()?, timeout, !keep_apps).await)
        }
        Command::Tui(TuiArgs {
            peer,
            key,
            readonly,
        }) => {
            let source = match (peer, key) {
                (Some(addr), Some(key)) => tui::Source::Peer {
                    addr,
                    key: smon_proto::KeyringHandle::new(smon_proto::Keyring::load(&key)?),
                },
                _ => tui::Source::Dir(Box::new(open()?)),
            };
            tui::run(source, readonly).await
        }
        Command::Demo(args) => cmd_demo::run(args).await,
    }
}

/// A reader that closed the pipe early (`| head`) is no failure.
fn quiet_pipe(result: anyhow::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Print a command's report.
fn say(report: anyhow::Result<String>) -> anyhow::Result<()> {
    println!("{}", report?);
    Ok(())
}

async fn init(args: InitArgs) -> anyhow::Result<String> {
    let options = cmd_init::InitOptions {
        interval: args.interval,
        disabled_exit_after: args.disabled_exit_after,
        removed_exit_after: args.removed_exit_after,
        agent_key: cmd_agent::AgentKey::from_args(args.agent_key)?,
        known_hosts: args.known_hosts,
        pins: PinPolicy {
            scan: args.scan_host_keys,
            trust_on_first_use: args.ssh_trust_on_first_use,
        },
        agent_address: args.agent,
        metrics: args.metrics_port.map(|port| smon_proto::MetricsSetting {
            port,
            public: args.metrics_public,
        }),
        take_over: args.take_over,
        unresponsive_grace: args.unresponsive_grace,
    };
    let peer_binary = args.peer_binary.unwrap_or_else(default_peer_binary);
    cmd_init::init(&args.dir, &args.machines, &options, &peer_binary).await
}

pub fn main() {
    let cli = Cli::parse();
    crate::fan_out::raise_descriptor_limit();
    if let Err(e) = crate::fan_out::check_descriptor_floor() {
        eprintln!("smon-console: {e}");
        std::process::exit(cmd_wait::exit_code::ERROR);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let limit = crate::fan_out::descriptor_limit_text();
            eprintln!("smon-console: cannot start its async runtime: {e} ({limit})");
            std::process::exit(cmd_wait::exit_code::ERROR);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("smon-console: {}", crate::error_line::one_line(&e));
        std::process::exit(cmd_wait::exit_code_of(&e));
    }
}
