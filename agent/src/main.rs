//! `smon-agent serve` and `smon-agent audit`.

use std::{io::Write, path::PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use smon_agent::{
    audit,
    key::KeySource,
    limits::Rate,
    server::{Agent, Settings, load_cluster},
};

#[derive(Parser)]
#[command(name = "smon-agent", version, about = "The smon authentication agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve peers of the cluster: solve their SSH login challenges.
    Serve(ServeArgs),
    /// Print the audit log.
    Audit {
        #[arg(long, short = 'C')]
        cluster: PathBuf,
        #[arg(long)]
        audit: Option<PathBuf>,
        /// The last N entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only refusals.
        #[arg(long)]
        refused: bool,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The cluster directory (cluster.json, cluster.key, membership.blob).
    #[arg(long, short = 'C')]
    cluster: PathBuf,
    /// An OpenSSH private key file (ed25519 or RSA).
    #[arg(
        long,
        conflicts_with = "ssh_agent",
        required_unless_present = "ssh_agent"
    )]
    key: Option<PathBuf>,
    /// Delegate every signature to a running ssh-agent (default: $SSH_AUTH_SOCK).
    #[arg(long, num_args = 0..=1, value_name = "SOCKET")]
    ssh_agent: Option<Option<PathBuf>>,
    /// With --ssh-agent: the key's comment or SHA256 fingerprint (default: the first
    /// ed25519 or RSA key).
    #[arg(long)]
    identity: Option<String>,
    /// Where to listen (default: the cluster's `agent` setting).
    #[arg(long)]
    listen: Option<String>,
    /// The audit database (default: DIR/agent-audit.db).
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Challenges per second per requesting peer, and the burst.
    #[arg(long, default_value_t = 10.0)]
    peer_rate: f64,
    #[arg(long, default_value_t = 30.0)]
    peer_burst: f64,
    /// Challenges per second for the whole agent, and the burst.
    #[arg(long, default_value_t = 20_000.0)]
    global_rate: f64,
    #[arg(long, default_value_t = 20_000.0)]
    global_burst: f64,
    /// The login user for membership entries without `user@` (default: $USER).
    #[arg(long)]
    default_user: Option<String>,
    /// Read the key file's passphrase from the first line of standard input (how
    /// `smon-console agent start` hands over the passphrase it asked for).
    #[arg(long, requires = "key")]
    passphrase_stdin: bool,
    /// Write standard output and error to FILE, rotated at 8 MiB with 3 backups
    /// (`smon-console agent start` gives DIR/agent.log).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// With --log: rotate at this many bytes instead (for tests).
    #[arg(long, requires = "log", hide = true)]
    log_max_bytes: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SMON_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => match &args.log {
            None => tokio::runtime::Runtime::new()?.block_on(serve(args)),
            Some(path) => serve_logged(path.clone(), args),
        },
        Command::Audit {
            cluster,
            audit,
            limit,
            refused,
        } => print_audit(&cluster, audit, limit, refused),
    }
}

/// `serve` with its output in the bounded log `path`; an error it ends with is written there
/// too (and is the exit status), since nobody else reads its standard error.
fn serve_logged(path: PathBuf, args: ServeArgs) -> anyhow::Result<()> {
    let bound = smon_proto::LogBound {
        max_bytes: args
            .log_max_bytes
            .unwrap_or(smon_proto::files::AGENT_LOG_BOUND.max_bytes),
        ..smon_proto::files::AGENT_LOG_BOUND
    };
    let redirected = smon_agent::log::redirect(&path, bound)
        .with_context(|| format!("--log {}", path.display()))?;
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(serve(args)));
    if let Err(e) = &result {
        eprintln!("Error: {e:#}");
    }
    redirected.finish();
    if result.is_err() {
        std::process::exit(1);
    }
    Ok(())
}

/// The key the agent signs with: a key file (its passphrase from stdin if asked), or a
/// running ssh-agent.
async fn key_source(args: &ServeArgs) -> anyhow::Result<KeySource> {
    Ok(match (&args.key, &args.ssh_agent) {
        (Some(path), _) => {
            let passphrase = if args.passphrase_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("reading the passphrase from standard input")?;
                Some(line.trim_end_matches(['\n', '\r']).to_owned())
            } else {
                None
            };
            KeySource::from_file(path, passphrase)?
        }
        (None, Some(socket)) => {
            KeySource::from_ssh_agent_or_env(socket.as_deref(), args.identity.as_deref()).await?
        }
        (None, None) => bail!("give --key FILE or --ssh-agent"),
    })
}

/// `smon-agent serve`: listen, say where and with which key on stdout, serve until killed.
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (config, cluster_key) = load_cluster(&args.cluster)?;
    let _lock = hold_agent_lock(&args.cluster)?;
    let source = key_source(&args).await?;
    let Some(listen) = args.listen.or(config.agent.clone()) else {
        bail!("no --listen and the cluster has no agent address");
    };
    let settings = Settings {
        audit_path: args
            .audit
            .unwrap_or_else(|| smon_proto::ClusterFiles::new(&args.cluster).agent_audit()),
        cluster_dir: args.cluster,
        per_peer: Rate {
            per_second: args.peer_rate,
            burst: args.peer_burst,
        },
        global: Rate {
            per_second: args.global_rate,
            burst: args.global_burst,
        },
        default_user: args
            .default_user
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "root".into()),
    };
    let agent = Agent::new(source, settings)?;
    let listener = smon_proto::transport::listen(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        writeln!(out, "key {}", agent.public_openssh())?;
        out.flush()?;
    }
    agent.serve(listener, cluster_key).await;
    Ok(())
}

/// Take `DIR/agent.lock` for the agent's life: the console finds the agent by it, and a
/// second agent of the same cluster stops here.
fn hold_agent_lock(cluster: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = smon_proto::ClusterFiles::new(cluster).agent_lock();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("{}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "an agent of this cluster already runs (it holds {})",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).context(path.display().to_string()),
    }
}

/// `smon-agent audit`: the last `limit` entries of the audit log, one line each.
fn print_audit(
    cluster: &std::path::Path,
    audit: Option<PathBuf>,
    limit: usize,
    refused: bool,
) -> anyhow::Result<()> {
    let path = audit.unwrap_or_else(|| smon_proto::ClusterFiles::new(cluster).agent_audit());
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    for r in audit::read(&path, limit, refused)? {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.at_ms as u64);
        let detail = if r.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", r.detail)
        };
        println!(
            "{} {} {} {} -> {} user={} {}{detail}",
            humantime_ms(at),
            r.conn,
            r.call,
            dash(&r.requester),
            dash(&r.target),
            dash(&r.user),
            r.decision,
        );
    }
    Ok(())
}

fn humantime_ms(t: std::time::SystemTime) -> String {
    // RFC 3339 with milliseconds, UTC.
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}
