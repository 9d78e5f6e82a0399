//! SSH machines: a russh client (ring backend) whose public-key authentication is solved by the
//! authentication agent — the peer holds only the public key — and whose server keys are
//! pinned in a known_hosts file. Exec and bulk upload (`cat > file`, fed with `data_bytes`).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use russh::{
    ChannelMsg,
    client::{self, Handle},
    keys::{
        PublicKeyOrCertificate,
        agent::AgentIdentity,
        ssh_key::{Algorithm, HashAlg, PublicKey},
    },
};
use smon_proto::{AgentServiceClient, ChallengeRequest, ClusterConfig, ClusterKey, MachineId};

use super::DaemonError;

/// What a process needs to log in to SSH machines: set once by the daemon (or the console)
/// with [`set_context`].
#[derive(Clone, Debug)]
pub struct SshContext {
    /// The cluster key, for the Noise connection to the agent.
    pub key: ClusterKey,
    /// Who asks the agent (audited; per-peer rate limits).
    pub requester: MachineId,
    /// Pinned server keys (OpenSSH known_hosts format).
    pub known_hosts: PathBuf,
    /// Accept and record the key of a server not yet in `known_hosts` (never a changed one).
    pub trust_on_first_use: bool,
}

/// The known_hosts file in a peer's directory (and in the operator's cluster directory): the
/// deployer copies its own to every machine it deploys.
pub const KNOWN_HOSTS: &str = "known_hosts";

/// Trust on first use is on only when `SMON_SSH_TRUST_ON_FIRST_USE=1`.
pub fn tofu_from_env() -> bool {
    std::env::var("SMON_SSH_TRUST_ON_FIRST_USE").is_ok_and(|v| v == "1")
}

static CONTEXT: RwLock<Option<Arc<SshContext>>> = RwLock::new(None);

pub fn set_context(ctx: SshContext) {
    *CONTEXT.write().expect("ssh context") = Some(Arc::new(ctx));
}

pub fn context() -> Option<Arc<SshContext>> {
    CONTEXT.read().expect("ssh context").clone()
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upload in pieces of this size (a package is never held whole).
const PIECE: usize = 256 << 10;

fn err(what: impl std::fmt::Display) -> DaemonError {
    DaemonError::Login(what.to_string())
}

struct HostKeys {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    tofu: bool,
    /// Why a key was refused, for the error message.
    refused: Arc<std::sync::Mutex<Option<String>>>,
}

impl client::Handler for HostKeys {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_key else {
            *self.refused.lock().expect("refused") =
                Some("host certificates are not supported".into());
            return Ok(false);
        };
        let verdict = match russh::keys::check_known_hosts_path(
            &self.host,
            self.port,
            key,
            &self.known_hosts,
        ) {
            Ok(true) => Ok(()),
            Ok(false) if self.tofu => russh::keys::known_hosts::learn_known_hosts_path(
                &self.host,
                self.port,
                key,
                &self.known_hosts,
            )
            .map_err(|e| format!("recording its host key: {e}")),
            Ok(false) => Err(format!(
                "its host key is not in {} (pin it, or allow trust on first use)",
                self.known_hosts.display()
            )),
            Err(russh::keys::Error::KeyChanged { line }) => Err(format!(
                "ITS HOST KEY CHANGED (line {line} of {} has another one)",
                self.known_hosts.display()
            )),
            Err(e) => Err(format!("{}: {e}", self.known_hosts.display())),
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(reason) => {
                *self.refused.lock().expect("refused") = Some(reason);
                Ok(false)
            }
        }
    }
}

/// Forwards the SSH user-auth challenge to the agent; the private key is never here.
struct AgentSigner {
    agent: AgentServiceClient,
    requester: MachineId,
    target: MachineId,
}

#[derive(Debug, thiserror::Error)]
enum SignError {
    #[error("the SSH session ended")]
    Send(#[from] russh::SendError),
    #[error("the agent: {0}")]
    Agent(String),
}

impl russh::Signer for AgentSigner {
    type Error = SignError;

    async fn auth_sign(
        &mut self,
        _key: &AgentIdentity,
        _hash_alg: Option<HashAlg>,
        to_sign: Vec<u8>,
    ) -> Result<Vec<u8>, Self::Error> {
        let mut ctx = smon_proto::tarpc::context::current();
        ctx.deadline = std::time::Instant::now() + CONNECT_TIMEOUT;
        let req = ChallengeRequest {
            requester: self.requester.clone(),
            target: self.target.clone(),
            data: to_sign.clone(),
        };
        let blob = self
            .agent
            .resolve_challenge(ctx, req)
            .await
            .map_err(|e| SignError::Agent(e.to_string()))?
            .map_err(|e| SignError::Agent(e.to_string()))?;
        // The agent answers the signature blob; the message is the data, then the blob.
        let mut out = to_sign;
        out.extend_from_slice(&(blob.len() as u32).to_be_bytes());
        out.extend_from_slice(&blob);
        Ok(out)
    }
}

/// A logged-in SSH session.
pub struct SshSession {
    handle: Handle<HostKeys>,
}

/// The user an SSH machine is logged into when its entry names none: this process's user.
pub fn default_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".into())
}

/// Connect to `machine`, check its host key, authenticate through the agent.
pub async fn connect(
    config: &ClusterConfig,
    machine: &MachineId,
) -> Result<SshSession, DaemonError> {
    let MachineId::Ssh { user, host, port } = machine else {
        return Err(err(format!("{machine} is not an SSH machine")));
    };
    let ctx = context().ok_or_else(|| err("SSH logins are not set up in this process"))?;
    let agent_addr = config.agent.as_deref().ok_or_else(|| {
        err(format!(
            "{machine}: the cluster has no authentication agent"
        ))
    })?;
    let port = port.unwrap_or(22);
    let user = user.clone().unwrap_or_else(default_user);

    let agent = smon_proto::transport::agent_client(agent_addr, &ctx.key, CONNECT_TIMEOUT)
        .await
        .map_err(|e| err(format!("{machine}: the agent at {agent_addr}: {e}")))?;
    let mut ctx_call = smon_proto::tarpc::context::current();
    ctx_call.deadline = std::time::Instant::now() + CONNECT_TIMEOUT;
    let public = agent
        .public_key(ctx_call)
        .await
        .map_err(|e| err(format!("{machine}: the agent at {agent_addr}: {e}")))?;
    let public = PublicKey::from_openssh(&public)
        .map_err(|e| err(format!("the agent's public key: {e}")))?;

    let refused = Arc::new(std::sync::Mutex::new(None));
    let handler = HostKeys {
        host: host.clone(),
        port,
        known_hosts: ctx.known_hosts.clone(),
        tofu: ctx.trust_on_first_use,
        refused: refused.clone(),
    };
    let ssh_config = Arc::new(client::Config {
        inactivity_timeout: Some(Duration::from_secs(120)),
        nodelay: true,
        ..Default::default()
    });
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut handle =
        tokio::time::timeout(CONNECT_TIMEOUT, client::connect(ssh_config, addr, handler))
            .await
            .map_err(|_| err(format!("{machine}: connecting timed out")))?
            .map_err(|e| match refused.lock().expect("refused").take() {
                Some(reason) => err(format!("{machine}: refused: {reason}")),
                None => err(format!("{machine}: {e}")),
            })?;
    let hash = match public.algorithm() {
        Algorithm::Rsa { .. } => Some(HashAlg::Sha512),
        _ => None,
    };
    let mut signer = AgentSigner {
        agent,
        requester: ctx.requester.clone(),
        target: machine.clone(),
    };
    let auth = tokio::time::timeout(
        CONNECT_TIMEOUT,
        handle.authenticate_publickey_with(user.clone(), public, hash, &mut signer),
    )
    .await
    .map_err(|_| err(format!("{machine}: authentication timed out")))?
    .map_err(|e| err(format!("{machine}: {e}")))?;
    if !auth.success() {
        return Err(err(format!(
            "{machine}: the server refused the agent's key for {user}"
        )));
    }
    Ok(SshSession { handle })
}

/// The result of one remote command.
struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<u32>,
}

impl SshSession {
    /// Run `command`, feeding it `input` (read piece by piece) on standard input.
    async fn run(
        &mut self,
        command: &str,
        input: Option<Input<'_>>,
        timeout: Duration,
    ) -> Result<Output, DaemonError> {
        let work = async {
            let mut channel = self.handle.channel_open_session().await.map_err(err)?;
            channel.exec(true, command).await.map_err(err)?;
            match input {
                Some(Input::Bytes(data)) => {
                    for piece in data.chunks(PIECE) {
                        channel
                            .data_bytes(bytes::Bytes::copy_from_slice(piece))
                            .await
                            .map_err(err)?;
                    }
                }
                Some(Input::File(path)) => {
                    use tokio::io::AsyncReadExt;
                    let mut file = tokio::fs::File::open(path)
                        .await
                        .map_err(|e| DaemonError::Io(format!("{}: {e}", path.display())))?;
                    loop {
                        let mut buf = vec![0; PIECE];
                        let n = file
                            .read(&mut buf)
                            .await
                            .map_err(|e| DaemonError::Io(format!("{}: {e}", path.display())))?;
                        if n == 0 {
                            break;
                        }
                        buf.truncate(n);
                        channel.data_bytes(buf).await.map_err(err)?;
                    }
                }
                None => {}
            }
            channel.eof().await.map_err(err)?;
            let mut out = Output {
                stdout: Vec::new(),
                stderr: Vec::new(),
                status: None,
            };
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        out.stderr.extend_from_slice(&data)
                    }
                    ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                    _ => {}
                }
            }
            Ok(out)
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| err(format!("command timed out after {timeout:?}")))?
    }

    /// Run `script` with `sh`: its standard output, or an error with its last stderr line.
    pub async fn exec(&mut self, script: &str, timeout: Duration) -> Result<String, DaemonError> {
        let command = format!("sh -c {}", super::remote::shell_quote(script));
        let out = self.run(&command, None, timeout).await?;
        check(out)
    }

    /// Write `data` (or the file `src`) to `dest` (a shell word), completely or not at all.
    pub async fn upload(
        &mut self,
        dest: &str,
        data: Option<&[u8]>,
        src: Option<&Path>,
        mode: u32,
        timeout: Duration,
    ) -> Result<(), DaemonError> {
        let script = format!(
            r#"set -e; D={dest}; T="$D.tmp-$$"; umask 077; cat > "$T"; chmod {mode:o} "$T"; mv -f "$T" "$D""#
        );
        let command = format!("sh -c {}", super::remote::shell_quote(&script));
        let input = match (data, src) {
            (Some(d), _) => Input::Bytes(d),
            (None, Some(p)) => Input::File(p),
            (None, None) => Input::Bytes(&[]),
        };
        let out = self.run(&command, Some(input), timeout).await?;
        check(out).map(|_| ())
    }
}

enum Input<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

fn check(out: Output) -> Result<String, DaemonError> {
    if out.status != Some(0) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(err(format!(
            "remote command failed (status {}): {last}",
            out.status.map_or("none".into(), |s| s.to_string())
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
