//! `smon-peer`: the peer daemon, and the installer it doubles as (the package file copied to a
//! machine is this binary with its manifest appended).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use smon_peer::daemon;

#[derive(Parser)]
#[command(
    version,
    about = "The smon peer: deploys, recovers and upgrades its cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the peer of the machine whose smon directory is ROOT (exits at once if one runs).
    Run {
        #[arg(long)]
        root: PathBuf,
    },
    /// Install the package uploaded to INCOMING and start the peer (run by deployers).
    Install {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        incoming: PathBuf,
    },
    /// Start the installed peer detached, and wait until it runs.
    Start {
        #[arg(long)]
        root: PathBuf,
        /// Make the previous version current again first, and never take this one back.
        #[arg(long)]
        rollback: bool,
    },
    /// Run one command of an application, its output to LOG within the bound, and every
    /// process it leaves behind its child (what the peer starts applications with).
    #[command(name = "app-run", hide = true)]
    AppRun {
        #[arg(long)]
        log: PathBuf,
        /// Bytes per log file.
        #[arg(long)]
        max_bytes: u64,
        /// Rotated log files kept.
        #[arg(long)]
        backups: u32,
        /// The command (run with `sh -c`).
        command: String,
    },
}

fn logging(root: &Path) {
    use tracing_subscriber::{filter::Targets, fmt, prelude::*};
    // RUST_LOG as `level` or `target=level,...`; a Targets filter, not EnvFilter, so that no
    // regex engine ends up in the package copied to every machine.
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    // Rotated at its bound (SMON_PEER_LOG_BOUND may set another); the short-lived `install`
    // and `start` write the same file, each reopening it when another rotated it.
    let files = smon_proto::MachineFiles::new(root);
    let file =
        smon_proto::RotatingLog::open(&files.log(), smon_proto::files::peer_log_bound()).ok();
    let file_layer = file.map(|f| {
        fmt::layer()
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(file_layer)
        .with(fmt::layer().with_writer(std::io::stderr))
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { root } => {
            std::fs::create_dir_all(&root).with_context(|| format!("{}", root.display()))?;
            logging(&root);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime
                .block_on(daemon::run(&root))
                .with_context(|| format!("peer in {}", root.display()))?;
        }
        Command::Install { root, incoming } => {
            std::fs::create_dir_all(&root).with_context(|| format!("{}", root.display()))?;
            logging(&root);
            let message = daemon::install::install(&root, &incoming)
                .with_context(|| format!("installing into {}", root.display()))?;
            println!("{message}");
        }
        Command::Start { root, rollback } => {
            logging(&root);
            daemon::start::start(&root, rollback)
                .with_context(|| format!("starting the peer in {}", root.display()))?;
        }
        Command::AppRun {
            log,
            max_bytes,
            backups,
            command,
        } => {
            let bound = smon_proto::LogBound { max_bytes, backups };
            let code = daemon::apps::runner::app_run(&log, bound, &command)
                .with_context(|| format!("running {command:?}"))?;
            std::process::exit(code);
        }
    }
    Ok(())
}
