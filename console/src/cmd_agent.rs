//! `smon-console -C DIR agent start|stop|status`: the cluster's authentication agent, a
//! detached `smon-agent serve` whose address is the cluster's `agent` setting. Its files in
//! DIR (`agent.pid`, `agent.log`, `agent-audit.db`, `agent-key.json`) are named by
//! [`ClusterFiles`].

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use smon_login::{Login, SshContext};
use smon_proto::{ClusterFiles, MachineId};

use crate::cluster_dir::{ClusterDir, write_atomic};

/// The key the agent holds: the operator's SSH login key (and, when `init` was given it, the
/// release key).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KeyArgs {
    /// An OpenSSH private key file (ed25519 or RSA); an encrypted one asks for its passphrase.
    #[arg(long, conflicts_with = "ssh_agent")]
    pub key: Option<PathBuf>,
    /// Delegate signatures to a running ssh-agent (default: $SSH_AUTH_SOCK).
    #[arg(long, num_args = 0..=1, value_name = "SOCKET")]
    pub ssh_agent: Option<Option<PathBuf>>,
    /// With --ssh-agent: which key, by comment or SHA256 fingerprint (default: the first
    /// ed25519 or RSA key).
    #[arg(long, requires = "ssh_agent")]
    pub identity: Option<String>,
}

/// [`KeyArgs`] as `init` records them for `agent start` (DIR/agent-key.json).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKey {
    File(PathBuf),
    SshAgent {
        /// None: $SSH_AUTH_SOCK when the agent starts.
        socket: Option<PathBuf>,
        identity: Option<String>,
    },
}

impl AgentKey {
    pub fn from_args(args: KeyArgs) -> anyhow::Result<Option<Self>> {
        Ok(match (args.key, args.ssh_agent) {
            (Some(path), _) => Some(AgentKey::File(std::path::absolute(path)?)),
            (None, Some(socket)) => Some(AgentKey::SshAgent {
                socket,
                identity: args.identity,
            }),
            (None, None) => None,
        })
    }

    /// The public key, read without a passphrase (or listed by the ssh-agent).
    pub async fn public_key(&self) -> anyhow::Result<String> {
        let key = match self {
            AgentKey::File(path) => smon_agent::key::public_key_of_file(path).context("--key")?,
            AgentKey::SshAgent { socket, identity } => {
                smon_agent::key::KeySource::from_ssh_agent_or_env(
                    socket.as_deref(),
                    identity.as_deref(),
                )
                .await?
                .public_key()
                .clone()
            }
        };
        Ok(key.to_openssh()?)
    }

    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        write_atomic(&ClusterFiles::new(dir).agent_key(), &json, 0o644)?;
        Ok(())
    }

    pub fn load(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = ClusterFiles::new(dir).agent_key();
        match std::fs::read(&path) {
            Ok(data) => Ok(Some(
                serde_json::from_slice(&data).with_context(|| format!("{}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("{}", path.display())),
        }
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum AgentCommand {
    /// Start the agent (detached); its address goes into cluster.json before any deployment.
    /// Without a key option, the key given to `init`.
    Start {
        #[command(flatten)]
        key: KeyArgs,
        /// host:port to listen on (default: the cluster's setting, or a free 127.0.0.1 port).
        #[arg(long)]
        listen: Option<String>,
        /// More options for `smon-agent serve` (rate limits…), after `--`.
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// Stop the agent.
    Stop,
    /// Is the agent running, where, with which key.
    Status {
        /// An object: `running`, `pid`, `address`, `answers`, `key`, `error`.
        #[arg(long)]
        json: bool,
    },
}

const WAIT: Duration = Duration::from_secs(15);

/// How this console logs in to the cluster's machines: SSH ones through the cluster's agent,
/// their host keys checked against those `membership` pins.
pub fn login(dir: &ClusterDir, membership: &smon_proto::Membership) -> anyhow::Result<Login> {
    let mut login = Login::new(
        dir.config.clone(),
        SshContext {
            key: dir.key.clone(),
            requester: MachineId::local("console"),
            // Not DIR/known_hosts, the operator's pins: what this process trusts on first use
            // must not become a pin unseen.
            known_hosts: dir.files().known_hosts_tofu(),
        },
    );
    login.pin_host_keys(
        std::sync::Arc::new(membership.clone()),
        &dir.trusted_release_key()?,
    );
    Ok(login)
}

fn agent_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|p| p.with_file_name("smon-agent"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("smon-agent"))
}

/// Check a `host:port` (`[v6]:port`) agent address; the error says what is wrong.
pub fn check_address(addr: &str) -> anyhow::Result<()> {
    let (host, port) = addr
        .rsplit_once(':')
        .with_context(|| format!("{addr:?}: expected HOST:PORT"))?;
    if host.is_empty() || host == "[]" {
        bail!("{addr:?}: no host");
    }
    if host.contains(':') && !host.starts_with('[') {
        bail!("{addr:?}: an IPv6 address needs brackets: [{host}]:{port}");
    }
    if let Some((_, zone)) = host.trim_end_matches(']').split_once('%') {
        bail!(
            "{addr:?}: zone ids (%{zone}) are not supported: use an address valid on every interface"
        );
    }
    port.parse::<u16>()
        .with_context(|| format!("{addr:?}: bad port {port:?} (0-65535)"))?;
    Ok(())
}

/// `addr` with port 0 replaced by a port free there now (which the agent then takes).
fn concrete_address(addr: &str) -> anyhow::Result<String> {
    check_address(addr)?;
    if !addr.ends_with(":0") {
        return Ok(addr.to_owned());
    }
    let probe = std::net::TcpListener::bind(addr)
        .with_context(|| format!("the agent's address {addr}: cannot listen there"))?;
    Ok(probe.local_addr()?.to_string())
}

/// The running agent's pid, if any: the holder of `DIR/agent.lock`, which the agent takes
/// for its life. Not `agent.pid` alone: a dead agent's pid may belong to another process now.
pub fn running_pid(dir: &Path) -> Option<i32> {
    smon_proto::lock_holder(&ClusterFiles::new(dir).agent_lock())
}

pub async fn run(dir: &ClusterDir, cmd: AgentCommand) -> anyhow::Result<()> {
    match cmd {
        AgentCommand::Start { key, listen, extra } => start(dir, key, listen, extra).await,
        AgentCommand::Stop => stop(dir),
        AgentCommand::Status { json } => status(dir, json).await,
    }
}

/// The key the agent is to hold: the one given, else the one `init` recorded; when the agent
/// signs releases, it must be the cluster's release key.
async fn agent_key(dir: &ClusterDir, key: KeyArgs) -> anyhow::Result<AgentKey> {
    let key = match AgentKey::from_args(key)? {
        Some(k) => k,
        None => AgentKey::load(&dir.path)?.with_context(|| {
            format!(
                "give --key FILE or --ssh-agent (`init` was given neither for {})",
                dir.path.display()
            )
        })?,
    };
    let signs_releases = !dir.signs_releases();
    if signs_releases {
        let public = smon_proto::ReleasePublicKey::from_openssh(&key.public_key().await?)?;
        if public.key_data() != dir.trusted_release_key()?.key_data() {
            bail!(
                "that key is not this cluster's release key ({}): start the agent with the key \
                 given to `init`",
                dir.config.release_key
            );
        }
    }
    Ok(key)
}

/// The `serve` arguments that name `key` (and ask for its passphrase on stdin).
fn key_args(command: &mut Command, key: &AgentKey, passphrase: bool) {
    match key {
        AgentKey::File(path) => {
            command.arg("--key").arg(path);
            if passphrase {
                command.arg("--passphrase-stdin");
            }
        }
        AgentKey::SshAgent { socket, identity } => {
            command.arg("--ssh-agent");
            if let Some(socket) = socket {
                command.arg(socket);
            }
            if let Some(identity) = identity {
                command.arg("--identity").arg(identity);
            }
        }
    }
}

/// Wait until the agent `child` says where it listens in its log (past `log_start`), and say
/// so; or end it and say why it did not start.
async fn wait_listening(
    dir: &ClusterDir,
    mut child: std::process::Child,
    log_path: &std::path::Path,
    log_start: u64,
) -> anyhow::Result<()> {
    let pid = child.id();
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read(log_path).unwrap_or_default();
        // Shorter than it was: the agent rotated it at its bound, and wrote the new file.
        let start = if (text.len() as u64) < log_start {
            0
        } else {
            log_start as usize
        };
        let new = String::from_utf8_lossy(&text[start..]).into_owned();
        if let Some(line) = new.lines().find(|l| l.starts_with("listening on")) {
            std::mem::forget(child);
            println!("agent {line} (pid {pid})");
            if let Some(k) = new.lines().find_map(|l| l.strip_prefix("key ")) {
                println!("its key: {k}");
            }
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let _ = std::fs::remove_file(dir.files().agent_pid());
            bail!("the agent exited ({status}):\n{}", new.trim());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the agent did not start within {WAIT:?}:\n{}", new.trim());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(
    dir: &ClusterDir,
    key: KeyArgs,
    listen: Option<String>,
    extra: Vec<String>,
) -> anyhow::Result<()> {
    if let Some(pid) = running_pid(&dir.path) {
        // Its process is there; whether it works is whether it answers (issue 15, kind 1).
        let status = AgentStatus::probe(dir).await;
        if !status.answers && status.address.is_some() {
            bail!(
                "the agent (pid {pid}) runs but does not answer: {}; `agent stop` ends it",
                status.error.as_deref().unwrap_or("no answer")
            );
        }
        println!("the agent already runs (pid {pid})");
        return Ok(());
    }
    let key = agent_key(dir, key).await?;
    // An encrypted key is asked for here, on this terminal, and handed to the detached agent
    // through a pipe (never an argument or the environment).
    let passphrase = match &key {
        AgentKey::File(path) if smon_agent::key::read_private_key(path)?.is_encrypted() => {
            let pass = smon_agent::key::ask_passphrase(path)?;
            smon_agent::key::check_passphrase(path, &pass)?;
            Some(pass)
        }
        _ => None,
    };
    let listen = match listen.or_else(|| dir.config.agent.clone()) {
        Some(l) => concrete_address(&l)?,
        None => concrete_address("127.0.0.1:0")?,
    };
    if dir.config.agent.as_deref() != Some(listen.as_str()) {
        let mut config = dir.config.clone();
        config.agent = Some(listen.clone());
        config.save(&dir.path)?;
    }
    let log_path = dir.files().agent_log();
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
        .arg(&listen)
        // The agent writes its log itself, bounded; what it prints before that (a bad
        // argument) goes to the file as opened here.
        .arg("--log")
        .arg(&log_path);
    key_args(&mut command, &key, passphrase.is_some());
    command
        .args(&extra)
        .stdin(if passphrase.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(log.try_clone()?)
        .stderr(log);
    // A session of its own: the agent outlives this command.
    let mut child = smon_login::detach::new_session(&mut command)
        .spawn()
        .with_context(|| format!("starting {}", agent_bin().display()))?;
    let pid = child.id() as i32;
    if let (Some(pass), Some(mut stdin)) = (passphrase, child.stdin.take()) {
        use std::io::Write;
        stdin
            .write_all(format!("{pass}\n").as_bytes())
            .context("handing the passphrase to the agent")?;
    }
    write_atomic(&dir.files().agent_pid(), pid.to_string().as_bytes(), 0o644)?;
    wait_listening(dir, child, &log_path, log_start).await
}

fn stop(dir: &ClusterDir) -> anyhow::Result<()> {
    let Some(pid) = running_pid(&dir.path) else {
        println!("the agent is not running");
        return Ok(());
    };
    // SAFETY: a plain kill(2) of the pid recorded for this cluster's agent.
    // SIGCONT too: a stopped agent exists but acts on nothing, the SIGTERM included.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
        libc::kill(pid, libc::SIGCONT);
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
    let _ = std::fs::remove_file(dir.files().agent_pid());
    println!("agent stopped (pid {pid})");
    Ok(())
}

/// What `agent status` reports (`--json` prints it as is).
#[derive(Debug, serde::Serialize)]
pub struct AgentStatus {
    pub running: bool,
    pub pid: Option<i32>,
    /// Where peers reach the agent (cluster.json's `agent`), if set.
    pub address: Option<String>,
    /// The running agent answered over the cluster key.
    pub answers: bool,
    /// Its public key (OpenSSH text form), when it answered.
    pub key: Option<String>,
    /// Why it did not answer.
    pub error: Option<String>,
}

impl AgentStatus {
    async fn probe(dir: &ClusterDir) -> Self {
        let address = dir.config.agent.clone();
        let pid = running_pid(&dir.path);
        let key = match (pid, &address) {
            (None, _) => None,
            (Some(_), None) => Some(Err("cluster.json names no agent address".to_string())),
            (Some(_), Some(addr)) => Some(
                match smon_proto::transport::agent_client(addr.as_str(), &dir.key, WAIT).await {
                    Ok(client) => client
                        .public_key(smon_proto::tarpc::context::current())
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
            ),
        };
        AgentStatus {
            running: pid.is_some(),
            pid,
            address,
            answers: matches!(key, Some(Ok(_))),
            key: key.clone().and_then(Result::ok),
            error: key.and_then(Result::err),
        }
    }

    fn human(&self) -> String {
        let addr = self.address.as_deref().unwrap_or("-");
        match (self.pid, &self.key, &self.error) {
            (None, ..) => format!("agent: not running (address {addr})"),
            (Some(pid), Some(k), _) => format!("agent: running (pid {pid}) on {addr}, key {k}"),
            (Some(pid), None, e) => format!(
                "agent: pid {pid} on {addr} does not answer: {}",
                e.as_deref().unwrap_or("?")
            ),
        }
    }
}

async fn status(dir: &ClusterDir, json: bool) -> anyhow::Result<()> {
    let status = AgentStatus::probe(dir).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!("{}", status.human());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_addresses_are_checked_with_a_reason() {
        assert!(check_address("198.18.0.1:0").is_ok());
        assert!(check_address("[::1]:4000").is_ok());
        for (bad, why) in [
            ("198.18.0.1", "expected HOST:PORT"),
            (":4000", "no host"),
            ("198.18.0.1:70000", "bad port"),
            ("198.18.0.1:x", "bad port"),
            ("fe80::1:7000", "needs brackets: [fe80::1]:7000"),
            ("[fe80::1%eth0]:7000", "zone ids (%eth0) are not supported"),
        ] {
            let e = format!("{:#}", check_address(bad).unwrap_err());
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn port_0_becomes_a_free_port_there() {
        let addr = concrete_address("127.0.0.1:0").unwrap();
        let port: u16 = addr.strip_prefix("127.0.0.1:").unwrap().parse().unwrap();
        assert_ne!(port, 0);
        assert_eq!(
            concrete_address("127.0.0.1:4567").unwrap(),
            "127.0.0.1:4567"
        );
    }
}
