//! SSH machines: a russh client (ring backend) whose public-key authentication is solved by the
//! authentication agent (the peer holds only the public key), with the server's key checked by
//! [`crate::host_keys`]. Exec and bulk upload (`cat > file`, fed with `data_bytes`); and a
//! scan that fetches the key a server shows, for the operator to pin.

use std::{
    path::Path,
    sync::{Arc, Mutex},
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
use smon_proto::{AgentServiceClient, ChallengeRequest, MachineId};

use crate::{
    Error, Login,
    error::SignError,
    host_keys::HostKeys,
    shell::{SH_FROM_STDIN, one_line_for_any_shell, script_on_stdin},
};

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upload in pieces of this size (a package is never held whole).
const PIECE: usize = 256 << 10;

/// Forwards the SSH user-auth challenge to the agent; the private key is never here.
struct AgentSigner {
    agent: AgentServiceClient,
    requester: MachineId,
    target: MachineId,
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
    machine: MachineId,
    handle: Handle<HostKeys>,
}

/// The user an SSH machine is logged into when its entry names none: this process's user.
pub fn default_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".into())
}

/// `host:port`, with an IPv6 host in brackets.
pub(crate) fn socket_address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The agent's client and the public key it signs with.
async fn agent(
    login: &Login,
    machine: &MachineId,
) -> Result<(AgentServiceClient, PublicKey), Error> {
    let addr = login
        .config()
        .agent
        .as_deref()
        .ok_or_else(|| Error::NoAgent {
            machine: machine.clone(),
        })?;
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| Error::Agent {
        machine: machine.clone(),
        addr: addr.to_owned(),
        source,
    };
    let agent = smon_proto::transport::agent_client(addr, &login.ssh().key, CONNECT_TIMEOUT)
        .await
        .map_err(|e| failed(e.into()))?;
    let mut ctx = smon_proto::tarpc::context::current();
    ctx.deadline = std::time::Instant::now() + CONNECT_TIMEOUT;
    let public = agent.public_key(ctx).await.map_err(|e| failed(e.into()))?;
    let public = PublicKey::from_openssh(&public).map_err(|e| failed(e.into()))?;
    Ok((agent, public))
}

/// Connect to `machine` (`user@host:port`), check its host key, authenticate through the
/// agent.
pub(crate) async fn connect(
    login: &Login,
    machine: &MachineId,
    user: Option<&str>,
    host: &str,
    port: Option<u16>,
) -> Result<SshSession, Error> {
    let user = user.map_or_else(default_user, str::to_owned);
    let (agent, public) = agent(login, machine).await?;
    let mut handle = handshake(login, machine, host, port.unwrap_or(22)).await?;
    let hash = match public.algorithm() {
        Algorithm::Rsa { .. } => Some(HashAlg::Sha512),
        _ => None,
    };
    let mut signer = AgentSigner {
        agent,
        requester: login.ssh().requester.clone(),
        target: machine.clone(),
    };
    let auth = tokio::time::timeout(
        CONNECT_TIMEOUT,
        handle.authenticate_publickey_with(user.clone(), public, hash, &mut signer),
    )
    .await
    .map_err(|_| timed_out(machine, "authentication"))?
    .map_err(|source| Error::Auth {
        machine: machine.clone(),
        source,
    })?;
    if !auth.success() {
        return Err(Error::AuthRefused {
            machine: machine.clone(),
            user,
        });
    }
    Ok(SshSession {
        machine: machine.clone(),
        handle,
    })
}

fn timed_out(machine: &MachineId, what: &str) -> Error {
    Error::Timeout {
        what: format!("{machine}: {what}"),
        after: CONNECT_TIMEOUT,
    }
}

/// The SSH connection to `host:port`, its host key checked (see [`HostKeys`]).
async fn handshake(
    login: &Login,
    machine: &MachineId,
    host: &str,
    port: u16,
) -> Result<Handle<HostKeys>, Error> {
    let refused = Arc::new(Mutex::new(None));
    let pinned = login.pins().host_key(machine);
    let ssh_config = Arc::new(client::Config {
        inactivity_timeout: Some(Duration::from_secs(120)),
        nodelay: true,
        preferred: crate::host_keys::preferring(pinned.as_ref()),
        ..Default::default()
    });
    let handler = HostKeys {
        host: host.to_owned(),
        port,
        pinned,
        known_hosts: login.ssh().known_hosts.clone(),
        tofu: login.config().ssh_trust_on_first_use,
        refused: refused.clone(),
    };
    let addr = socket_address(host, port);
    tokio::time::timeout(CONNECT_TIMEOUT, client::connect(ssh_config, addr, handler))
        .await
        .map_err(|_| timed_out(machine, "connecting"))?
        .map_err(|source| match refused.lock().expect("refused").take() {
            // The handler said why it refused the key: that is the error, not russh's.
            Some(reason) => Error::HostKey {
                machine: machine.clone(),
                reason,
            },
            None => Error::Ssh {
                target: machine.to_string(),
                source: Box::new(source),
            },
        })
}

/// The result of one remote command.
struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<u32>,
}

/// Its standard output if `out` exited 0; else [`Error::Failed`].
fn checked(out: &Output) -> Result<String, Error> {
    let status = match out.status {
        Some(code) => format!("status {code}"),
        None => "status none".into(),
    };
    crate::shell::checked(out.status == Some(0), status, &out.stdout, &out.stderr)
}

enum Input<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

impl SshSession {
    /// Run `command`, feeding it `input` (read piece by piece) on standard input.
    async fn run(
        &mut self,
        command: &str,
        input: Option<Input<'_>>,
        timeout: Duration,
    ) -> Result<Output, Error> {
        let target = self.machine.to_string();
        let ssh_err = |source| Error::Ssh {
            target: target.clone(),
            source: Box::new(source),
        };
        let work = async {
            let mut channel = self.handle.channel_open_session().await.map_err(&ssh_err)?;
            channel.exec(true, command).await.map_err(&ssh_err)?;
            match input {
                Some(Input::Bytes(data)) => {
                    for piece in data.chunks(PIECE) {
                        channel
                            .data_bytes(bytes::Bytes::copy_from_slice(piece))
                            .await
                            .map_err(&ssh_err)?;
                    }
                }
                Some(Input::File(path)) => {
                    use tokio::io::AsyncReadExt;
                    let io = crate::error::io_err(path);
                    let mut file = tokio::fs::File::open(path).await.map_err(&io)?;
                    loop {
                        let mut buf = vec![0; PIECE];
                        let n = file.read(&mut buf).await.map_err(&io)?;
                        if n == 0 {
                            break;
                        }
                        buf.truncate(n);
                        channel.data_bytes(buf).await.map_err(&ssh_err)?;
                    }
                }
                None => {}
            }
            channel.eof().await.map_err(&ssh_err)?;
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
            .map_err(|_| Error::Timeout {
                what: format!("{}: a command", self.machine),
                after: timeout,
            })?
    }

    /// Run `script` with `sh`: its standard output, or an error with its last stderr line.
    ///
    /// The login shell runs the command line SSH sends, and it may be any shell (tcsh, fish,
    /// …), so that line is one that every shell reads alike, [`SH_FROM_STDIN`]; the script
    /// itself goes on standard input, where no shell but `/bin/sh` ever sees it.
    pub async fn exec(&mut self, script: &str, timeout: Duration) -> Result<String, Error> {
        let input = script_on_stdin(script);
        let out = self
            .run(SH_FROM_STDIN, Some(Input::Bytes(input.as_bytes())), timeout)
            .await?;
        checked(&out)
    }

    /// Write `data` (or the file `src`) to `dest` (a shell word), completely or not at all.
    pub async fn upload(
        &mut self,
        dest: &str,
        data: Option<&[u8]>,
        src: Option<&Path>,
        mode: u32,
        timeout: Duration,
    ) -> Result<(), Error> {
        // Standard input carries the data, so the script is on the command line: one line,
        // single-quoted for the login shell (see `one_line_for_any_shell`).
        let script = format!(
            r#"set -e; D={dest}; T="$D.tmp-$$"; umask 077; cat > "$T"; chmod {mode:o} "$T"; mv -f "$T" "$D""#
        );
        let command = one_line_for_any_shell(&script)?;
        let input = match (data, src) {
            (Some(d), _) => Input::Bytes(d),
            (None, Some(p)) => Input::File(p),
            (None, None) => Input::Bytes(&[]),
        };
        let out = self.run(&command, Some(input), timeout).await?;
        checked(&out).map(|_| ())
    }
}

/// The host key `host:port` shows (the one a login would be offered), without logging in.
pub async fn scan_host_key(host: &str, port: u16) -> Result<PublicKey, Error> {
    struct Scan(Arc<Mutex<Option<PublicKey>>>);
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
    let seen = Arc::new(Mutex::new(None));
    let config = Arc::new(client::Config::default());
    let addr = socket_address(host, port);
    let connecting = client::connect(config, addr.as_str(), Scan(seen.clone()));
    let outcome = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| Error::Timeout {
            what: format!("{addr}: connecting"),
            after: CONNECT_TIMEOUT,
        })?;
    let key = seen.lock().expect("scan").take();
    match (key, outcome) {
        (Some(key), _) => Ok(key),
        (None, Err(source)) => Err(Error::Ssh {
            target: addr,
            source: Box::new(source),
        }),
        (None, Ok(_)) => Err(Error::NoHostKey { addr }),
    }
}
