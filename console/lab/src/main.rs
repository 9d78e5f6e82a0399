//! `smon-lab`: make a lab of machines on this host and act on it (see the crate docs).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use smon_lab::{Lab, UpOptions};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "A lab of SSH machines on this host (network namespaces), with partitions, crashes, \
             reboots, wipes and slow links",
    after_help = "M is a 1-based line of the machines file; an action on it acts on the lab \
                  machine that account is on."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Debug)]
struct Dir {
    /// The lab's directory (`up` makes it, `down` removes it).
    #[arg(long)]
    dir: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Flood one server over loopback (no lab needed): hold N connections, open and drop them
    /// in a loop, or send wrong-key handshakes at full speed; print the flooder's counts as
    /// one JSON object when done.
    Flood {
        /// The server's address (loopback only).
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long, value_enum)]
        mode: smon_lab::flood::Mode,
        /// Connections held at once (hold) or concurrent loops (churn, wrong-key).
        #[arg(long, default_value_t = 1_000)]
        connections: usize,
        /// The source address (loopback only).
        #[arg(long, default_value_t = smon_lab::flood::DEFAULT_SOURCE)]
        from: std::net::Ipv4Addr,
        /// Stop after this long (or at SIGTERM/SIGINT).
        #[arg(long = "for", default_value = "60s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
    },
    /// Make N machines; print one JSON object (machines, machines_file, known_hosts, key, …).
    Up {
        n: usize,
        #[command(flatten)]
        dir: Dir,
        /// SSH accounts per machine (each a line of the machines file, same address).
        #[arg(long, default_value_t = 1)]
        users_per_machine: usize,
    },
    /// Remove everything the lab made (safe twice, and after a crash of the lab itself).
    Down {
        #[command(flatten)]
        dir: Dir,
    },
    /// Split into groups that cannot reach each other: GROUP is `1,2,5-8`.
    Partition {
        #[command(flatten)]
        dir: Dir,
        #[arg(num_args = 2.., required = true, value_parser = parse_group)]
        groups: Vec<Vec<usize>>,
    },
    /// Undo the partition.
    Heal {
        #[command(flatten)]
        dir: Dir,
    },
    /// Kill every process of machine M at once (sshd too: it stays down until `boot`).
    Crash {
        #[command(flatten)]
        dir: Dir,
        m: usize,
    },
    /// Start machine M's sshd if it is down.
    Boot {
        #[command(flatten)]
        dir: Dir,
        m: usize,
    },
    /// Crash machine M, then boot it.
    Reboot {
        #[command(flatten)]
        dir: Dir,
        m: usize,
    },
    /// Reinstall machine M: crash it, empty its homes, boot it.
    Wipe {
        #[command(flatten)]
        dir: Dir,
        m: usize,
    },
    /// Limit machine M's link to RATE both ways (tc words: 1mbit, 500kbit; `off` lifts it).
    Slow {
        #[command(flatten)]
        dir: Dir,
        m: usize,
        rate: String,
    },
    /// Print the lab's JSON again (what `up` printed) with its partition and rate limits.
    Status {
        #[command(flatten)]
        dir: Dir,
    },
}

/// `1,2,5-8` → [1, 2, 5, 6, 7, 8].
fn parse_group(text: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let number = |s: &str| {
            s.parse::<usize>()
                .map_err(|_| format!("{part:?} in group {text:?}: expected N or N-M"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("{part:?} in group {text:?}: empty range"));
                }
                out.extend(a..=b);
            }
            None => out.push(number(part)?),
        }
    }
    Ok(out)
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli.command) {
        eprintln!("smon-lab: {e:#}");
        std::process::exit(1);
    }
}

fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Flood {
            to,
            mode,
            connections,
            from,
            duration,
        } => {
            let mut flood = smon_lab::flood::Flood::new(mode, to, connections)?;
            (flood.source, flood.duration) = (from, duration);
            let report = tokio::runtime::Runtime::new()?.block_on(flood_until_signal(flood))?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Cmd::Up {
            n,
            dir,
            users_per_machine,
        } => {
            let options = UpOptions {
                machines: n,
                users_per_machine,
            };
            let lab = Lab::up(&dir.dir, &options)?;
            println!("{}", serde_json::to_string(&lab.summary())?);
        }
        Cmd::Down { dir } => {
            let report = Lab::down(&dir.dir)?;
            match report.id {
                Some(id) => eprintln!(
                    "lab {id} removed: {} machines, {} users, {} processes killed",
                    report.machines, report.users, report.processes_killed
                ),
                None => eprintln!("no lab in {}: nothing to remove", dir.dir.display()),
            }
        }
        Cmd::Partition { dir, groups } => {
            open(&dir)?.partition(&groups)?;
            let words: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
            eprintln!("partitioned: {}", words.join(" | "));
        }
        Cmd::Heal { dir } => {
            open(&dir)?.heal()?;
            eprintln!("healed");
        }
        Cmd::Crash { dir, m } => {
            let killed = open(&dir)?.crash(m)?;
            eprintln!("machine {m} crashed: {killed} processes killed");
        }
        Cmd::Boot { dir, m } => {
            open(&dir)?.boot(m)?;
            eprintln!("machine {m} up");
        }
        Cmd::Reboot { dir, m } => {
            let killed = open(&dir)?.reboot(m)?;
            eprintln!("machine {m} rebooted: {killed} processes killed, sshd back");
        }
        Cmd::Wipe { dir, m } => {
            let killed = open(&dir)?.wipe(m)?;
            eprintln!("machine {m} wiped: {killed} processes killed, homes emptied, sshd back");
        }
        Cmd::Slow { dir, m, rate } => {
            open(&dir)?.slow(m, &rate)?;
            eprintln!("machine {m}: link rate {rate}");
        }
        Cmd::Status { dir } => {
            let lab = open(&dir)?;
            let mut value = serde_json::to_value(lab.summary())?;
            value["partition"] = serde_json::to_value(&lab.state().partition)?;
            value["slow"] = serde_json::to_value(&lab.state().slow)?;
            println!("{value}");
        }
    }
    Ok(())
}

/// Run `flood` until its duration ends or a SIGTERM/SIGINT arrives; its report either way.
async fn flood_until_signal(
    flood: smon_lab::flood::Flood,
) -> anyhow::Result<smon_lab::flood::FloodReport> {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    );
    let (stop, report) = flood.start();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = stop.closed() => {}
    }
    let _ = stop.send(true);
    report.await?
}

fn open(dir: &Dir) -> anyhow::Result<Lab> {
    Ok(Lab::open(&dir.dir)?)
}
