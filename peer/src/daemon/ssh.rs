//! SSH machines: a russh client (ring backend) whose public-key authentication is solved by the
//! authentication agent — the peer holds only the public key. A server's key must be the one
//! the membership pins for it; for a machine without a pin, the one in the known_hosts file,
//! which learns new keys only when the cluster allows trust on first use. Exec and bulk upload
//! (`cat > file`, fed with `data_bytes`).

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
use smon_proto::{
    AgentServiceClient, ChallengeRequest, ClusterConfig, ClusterKey, MachineId, Membership,
};

use super::DaemonError;

/// What a process needs to log in to SSH machines: set once by the daemon (or the console)
/// with [`set_context`].
#[derive(Clone, Debug)]
pub struct SshContext {
    /// The cluster key, for the Noise connection to the agent.
    pub key: ClusterKey,
    /// Who asks the agent (audited; per-peer rate limits).
    pub requester: MachineId,
    /// Server keys of machines the membership does not pin (OpenSSH known_hosts format):
    /// those learned on first use, when the cluster allows it.
    pub known_hosts: PathBuf,
}

/// The known_hosts file in a peer's directory (and the operator's pins in the cluster
/// directory, from which `init` and `membership set` take the membership's).
pub const KNOWN_HOSTS: &str = "known_hosts";

static CONTEXT: RwLock<Option<Arc<SshContext>>> = RwLock::new(None);
/// The membership whose pinned host keys logins check.
static PINS: RwLock<Option<Arc<Membership>>> = RwLock::new(None);

pub fn set_context(ctx: SshContext) {
    *CONTEXT.write().expect("ssh context") = Some(Arc::new(ctx));
}

pub fn context() -> Option<Arc<SshContext>> {
    CONTEXT.read().expect("ssh context").clone()
}

/// Check server keys against the host keys `membership` pins (call again when it changes),
/// if the release key `trusted` signed it: any holder of K_E can send a membership, only the
/// operator may say what a machine's key is. An unsigned or older list leaves the pins as
/// they are.
pub fn pin_host_keys(membership: Arc<Membership>, trusted: &PublicKey) {
    if !membership.has_pins() {
        return;
    }
    if let Err(why) = membership.verify_signature(trusted) {
        tracing::warn!(
            "membership version {} pins host keys but its signature {why}: its pins are ignored",
            membership.version
        );
        return;
    }
    let mut pins = PINS.write().expect("pins");
    if pins.as_ref().is_none_or(|p| p.version < membership.version) {
        *pins = Some(membership);
    }
}

fn pinned_host_key(machine: &MachineId) -> Option<PublicKey> {
    PINS.read().expect("pins").as_ref()?.host_key(machine)
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
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
    /// The key the membership pins, if it pins one.
    pinned: Option<PublicKey>,
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
        if let Some(pin) = &self.pinned {
            if pin.key_data() == key.key_data() {
                return Ok(true);
            }
            *self.refused.lock().expect("refused") = Some(format!(
                "ITS HOST KEY CHANGED: it offered {}, the membership pins {}",
                fingerprint(key),
                fingerprint(pin)
            ));
            return Ok(false);
        }
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
                "its host key ({}) is pinned neither by the membership nor in {} (pin it with \
                 `smon-console membership set --scan-host-keys`, or init the cluster with \
                 --ssh-trust-on-first-use)",
                fingerprint(key),
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
    let pinned = pinned_host_key(machine);
    let ssh_config = Arc::new(client::Config {
        inactivity_timeout: Some(Duration::from_secs(120)),
        nodelay: true,
        preferred: preferring(pinned.as_ref()),
        ..Default::default()
    });
    let handler = HostKeys {
        host: host.clone(),
        port,
        pinned,
        known_hosts: ctx.known_hosts.clone(),
        tofu: config.ssh_trust_on_first_use,
        refused: refused.clone(),
    };
    let addr = socket_address(host, port);
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

fn socket_address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The default algorithms, the pinned key's first: as OpenSSH does with known_hosts, so that a
/// server with several host keys shows the one that is pinned.
fn preferring(pinned: Option<&PublicKey>) -> russh::Preferred {
    let default = russh::Preferred::default();
    let Some(pin) = pinned else {
        return default;
    };
    let matches = |a: &Algorithm| match (a, pin.algorithm()) {
        (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
        (a, b) => *a == b,
    };
    let (mut first, rest): (Vec<Algorithm>, Vec<Algorithm>) =
        default.key.iter().cloned().partition(|a| matches(a));
    first.extend(rest);
    russh::Preferred {
        key: first.into(),
        ..default
    }
}

/// The key `known_hosts` holds for `host:port` (ed25519 first, when it holds several).
pub fn known_host_key(known_hosts: &Path, host: &str, port: u16) -> Option<PublicKey> {
    if !known_hosts.exists() {
        return None;
    }
    let keys = russh::keys::known_hosts::known_host_keys_path(host, port, known_hosts).ok()?;
    let ed25519 = keys
        .iter()
        .find(|(_, k)| k.algorithm() == Algorithm::Ed25519)
        .map(|(_, k)| k.clone());
    ed25519.or_else(|| keys.into_iter().next().map(|(_, k)| k))
}

/// Append `key` for `host:port` to `known_hosts`.
pub fn record_host_key(
    known_hosts: &Path,
    host: &str,
    port: u16,
    key: &PublicKey,
) -> Result<(), DaemonError> {
    russh::keys::known_hosts::learn_known_hosts_path(host, port, key, known_hosts)
        .map_err(|e| DaemonError::Io(format!("{}: {e}", known_hosts.display())))
}

/// The SHA-256 fingerprint, as `ssh-keygen -l` shows it.
pub fn host_key_fingerprint(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm().as_str(), fingerprint(key))
}

/// The host key `host:port` shows (the one a login would be offered), without logging in.
pub async fn scan_host_key(host: &str, port: u16) -> Result<PublicKey, DaemonError> {
    struct Scan(Arc<std::sync::Mutex<Option<PublicKey>>>);
    impl client::Handler for Scan {
        type Error = russh::Error;
        async fn check_server_key(
            &mut self,
            server_key: &PublicKeyOrCertificate,
        ) -> Result<bool, Self::Error> {
            if let PublicKeyOrCertificate::PublicKey { key, .. } = server_key {
                *self.0.lock().expect("scan") = Some(key.clone());
            }
            Ok(false)
        }
    }
    let seen = Arc::new(std::sync::Mutex::new(None));
    let config = Arc::new(client::Config::default());
    let addr = socket_address(host, port);
    let connecting = client::connect(config, addr.as_str(), Scan(seen.clone()));
    let outcome = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| err(format!("{addr}: connecting timed out")))?;
    let key = seen.lock().expect("scan").take();
    match (key, outcome) {
        (Some(key), _) => Ok(key),
        (None, Err(e)) => Err(err(format!("{addr}: {e}"))),
        (None, Ok(_)) => Err(err(format!("{addr}: showed no plain host key"))),
    }
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
