//! `smon-console -C DIR agent start|stop|status`: the cluster's authentication agent, a
//! detached `smon-agent serve` whose address is the cluster's `agent` setting.
//!
//! ```text
//! DIR/agent.pid         the running agent's pid
//! DIR/agent.log         its output
//! DIR/agent-audit.db    its audit log (`smon-agent audit -C DIR`)
//! DIR/known_hosts       the SSH machines' pinned host keys (copied to every peer)
//! ```

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use smon_peer::daemon::ssh;
use smon_proto::MachineId;

use crate::cluster_dir::{ClusterDir, write_atomic};

#[derive(clap::Subcommand, Debug)]
pub enum AgentCommand {
    /// Start the agent (detached); its address goes into cluster.json before any deployment.
    Start {
        /// An OpenSSH private key file (ed25519 or RSA; not encrypted: the agent runs
        /// detached — add an encrypted key to your ssh-agent and use --ssh-agent).
        #[arg(
            long,
            conflicts_with = "ssh_agent",
            required_unless_present = "ssh_agent"
        )]
        key: Option<PathBuf>,
        /// Delegate signatures to a running ssh-agent (default: $SSH_AUTH_SOCK).
        #[arg(long, num_args = 0..=1, value_name = "SOCKET")]
        ssh_agent: Option<Option<PathBuf>>,
        /// host:port to listen on (default: the cluster's setting, or a free 127.0.0.1 port).
        #[arg(long)]
        listen: Option<String>,
        /// More options for `smon-agent serve` (rate limits, --sign-releases…), after `--`.
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// Stop the agent.
    Stop,
    /// Is the agent running, where, with which key.
    Status,
}

const WAIT: Duration = Duration::from_secs(15);

/// Let this process log in to SSH machines through the cluster's agent.
pub fn set_ssh_context(dir: &ClusterDir) {
    ssh::set_context(ssh::SshContext {
        key: dir.key.clone(),
        requester: MachineId::local("console"),
        known_hosts: dir.path.join(ssh::KNOWN_HOSTS),
        trust_on_first_use: ssh::tofu_from_env(),
    });
}

fn agent_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|p| p.with_file_name("smon-agent"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("smon-agent"))
}

/// The running agent's pid, if any.
pub fn running_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join("agent.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()?
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s != "Z"))
        .unwrap_or(false);
    (alive && String::from_utf8_lossy(&cmdline).contains("smon-agent")).then_some(pid)
}

pub async fn run(dir: &ClusterDir, cmd: AgentCommand) -> anyhow::Result<()> {
    match cmd {
        AgentCommand::Start {
            key,
            ssh_agent,
            listen,
            extra,
        } => start(dir, key, ssh_agent, listen, extra).await,
        AgentCommand::Stop => stop(dir),
        AgentCommand::Status => status(dir).await,
    }
}

async fn start(
    dir: &ClusterDir,
    key: Option<PathBuf>,
    ssh_agent: Option<Option<PathBuf>>,
    listen: Option<String>,
    extra: Vec<String>,
) -> anyhow::Result<()> {
    if let Some(pid) = running_pid(&dir.path) {
        println!("the agent already runs (pid {pid})");
        return Ok(());
    }
    let listen = match listen.or_else(|| dir.config.agent.clone()) {
        Some(l) => l,
        None => {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.to_string()
        }
    };
    if dir.config.agent.as_deref() != Some(listen.as_str()) {
        let mut config = dir.config.clone();
        config.agent = Some(listen.clone());
        write_atomic(
            &dir.path.join("cluster.json"),
            &serde_json::to_vec_pretty(&config)?,
            0o644,
        )?;
    }
    let log_path = dir.path.join("agent.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("{}", log_path.display()))?;
    let log_start = log.metadata()?.len();
    let mut command = Command::new(agent_bin());
    command
        .arg("serve")
        .arg("-C")
        .arg(&dir.path)
        .arg("--listen")
        .arg(&listen);
    match (key, ssh_agent) {
        (Some(k), _) => {
            command.arg("--key").arg(std::path::absolute(k)?);
        }
        (None, Some(Some(socket))) => {
            command.arg("--ssh-agent").arg(socket);
        }
        (None, Some(None)) => {
            command.arg("--ssh-agent");
        }
        (None, None) => bail!("give --key FILE or --ssh-agent"),
    }
    command
        .args(&extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; the agent outlives this command.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", agent_bin().display()))?;
    let pid = child.id() as i32;
    write_atomic(
        &dir.path.join("agent.pid"),
        pid.to_string().as_bytes(),
        0o644,
    )?;
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read(&log_path).unwrap_or_default();
        let new =
            String::from_utf8_lossy(&text[(log_start as usize).min(text.len())..]).into_owned();
        if let Some(line) = new.lines().find(|l| l.starts_with("listening on")) {
            std::mem::forget(child);
            println!("agent {line} (pid {pid})");
            if let Some(k) = new.lines().find_map(|l| l.strip_prefix("key ")) {
                println!("its key: {k}");
            }
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let _ = std::fs::remove_file(dir.path.join("agent.pid"));
            bail!("the agent exited ({status}):\n{}", new.trim());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the agent did not start within {WAIT:?}:\n{}", new.trim());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn stop(dir: &ClusterDir) -> anyhow::Result<()> {
    let Some(pid) = running_pid(&dir.path) else {
        println!("the agent is not running");
        return Ok(());
    };
    // SAFETY: a plain kill(2) of the pid recorded for this cluster's agent.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + WAIT;
    while running_pid(&dir.path).is_some() {
        if Instant::now() > deadline {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(dir.path.join("agent.pid"));
    println!("agent stopped (pid {pid})");
    Ok(())
}

async fn status(dir: &ClusterDir) -> anyhow::Result<()> {
    let addr = dir.config.agent.clone().unwrap_or_else(|| "-".into());
    match running_pid(&dir.path) {
        None => println!("agent: not running (address {addr})"),
        Some(pid) => {
            let key = match smon_proto::transport::agent_client(addr.as_str(), &dir.key, WAIT).await
            {
                Ok(client) => client
                    .public_key(smon_proto::tarpc::context::current())
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match key {
                Ok(k) => println!("agent: running (pid {pid}) on {addr}, key {k}"),
                Err(e) => println!("agent: pid {pid} on {addr} does not answer: {e}"),
            }
        }
    }
    Ok(())
}
