//! Where the agent's signatures come from: an OpenSSH private key file held in memory, or the
//! user's running ssh-agent (the key then never has to be a file).

use std::{
    io::IsTerminal,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::{Context, bail};
use russh::keys::{
    agent::{AgentIdentity, client::AgentClient},
    signature::Signer,
    ssh_key::{Algorithm, HashAlg, PrivateKey, PublicKey, Signature},
};

type Client = AgentClient<tokio::net::UnixStream>;

pub enum KeySource {
    File(Arc<PrivateKey>),
    SshAgent {
        socket: PathBuf,
        identity: PublicKey,
        /// Idle connections to the ssh-agent, reused.
        pool: Mutex<Vec<Client>>,
    },
}

impl KeySource {
    /// Load an OpenSSH private key file. An encrypted key is decrypted with `passphrase`, or
    /// asks for it when standard input is a terminal, and is refused otherwise.
    pub fn from_file(path: &Path, passphrase: Option<String>) -> anyhow::Result<Self> {
        let mut key = read_private_key(path)?;
        if key.is_encrypted() {
            let pass = match passphrase {
                Some(p) => p,
                None => ask_passphrase(path)?,
            };
            key = key
                .decrypt(pass.as_bytes())
                .map_err(|_| anyhow::anyhow!("{}: wrong passphrase", path.display()))?;
        }
        check_algorithm(key.public_key()).with_context(|| format!("{}", path.display()))?;
        Ok(KeySource::File(Arc::new(key)))
    }

    /// Use the ssh-agent at `socket`, or at `$SSH_AUTH_SOCK` when None.
    pub async fn from_ssh_agent_or_env(
        socket: Option<&Path>,
        select: Option<&str>,
    ) -> anyhow::Result<Self> {
        let socket = match socket {
            Some(s) => s.to_owned(),
            None => std::env::var_os("SSH_AUTH_SOCK")
                .map(PathBuf::from)
                .context("--ssh-agent without a socket and SSH_AUTH_SOCK is not set")?,
        };
        Self::from_ssh_agent(&socket, select).await
    }

    /// Use the ssh-agent at `socket`: the identity whose comment or SHA-256 fingerprint is
    /// `select`, or the first ed25519/RSA identity.
    pub async fn from_ssh_agent(socket: &Path, select: Option<&str>) -> anyhow::Result<Self> {
        let mut client = AgentClient::connect_uds(socket)
            .await
            .with_context(|| format!("ssh-agent at {}", socket.display()))?;
        let ids = client
            .request_identities()
            .await
            .context("listing the ssh-agent's keys")?;
        let identity = ids
            .into_iter()
            .filter_map(|id| match id {
                AgentIdentity::PublicKey { key, comment } => Some((key, comment)),
                _ => None,
            })
            .find(|(key, comment)| {
                check_algorithm(key).is_ok()
                    && match select {
                        None => true,
                        Some(s) => {
                            comment == s || key.fingerprint(HashAlg::Sha256).to_string() == s
                        }
                    }
            })
            .map(|(key, _)| key)
            .with_context(|| {
                format!(
                    "the ssh-agent at {} has no {} key (add one with ssh-add)",
                    socket.display(),
                    match select {
                        Some(s) => format!("ed25519 or RSA key matching {s:?}"),
                        None => "ed25519 or RSA".into(),
                    }
                )
            })?;
        Ok(KeySource::SshAgent {
            socket: socket.to_owned(),
            identity,
            pool: Mutex::new(vec![client]),
        })
    }

    pub fn public_key(&self) -> &PublicKey {
        match self {
            KeySource::File(k) => k.public_key(),
            KeySource::SshAgent { identity, .. } => identity,
        }
    }

    /// Sign `data` (RSA with `hash`).
    pub async fn sign(&self, data: Vec<u8>, hash: Option<HashAlg>) -> Result<Signature, String> {
        match self {
            KeySource::File(key) => {
                if key.algorithm() == Algorithm::Ed25519 {
                    return key.try_sign(&data).map_err(|e| format!("signing: {e}"));
                }
                let key = key.clone();
                tokio::task::spawn_blocking(move || {
                    let rsa = key.key_data().rsa().ok_or("not an RSA key")?;
                    (rsa, hash.or(Some(HashAlg::Sha512)))
                        .try_sign(&data)
                        .map_err(|e| format!("signing: {e}"))
                })
                .await
                .map_err(|e| format!("signing task: {e}"))?
            }
            KeySource::SshAgent {
                socket,
                identity,
                pool,
            } => {
                let pooled = pool.lock().expect("pool").pop();
                let mut client = match pooled {
                    Some(c) => c,
                    None => AgentClient::connect_uds(socket)
                        .await
                        .map_err(|e| format!("ssh-agent at {}: {e}", socket.display()))?,
                };
                let hash = match identity.algorithm() {
                    Algorithm::Rsa { .. } => hash.or(Some(HashAlg::Sha512)),
                    _ => None,
                };
                let sig = client
                    .sign_request_signature(identity, hash, &data)
                    .await
                    .map_err(|e| format!("the ssh-agent refused to sign: {e}"))?;
                let mut p = pool.lock().expect("pool");
                if p.len() < 16 {
                    p.push(client);
                }
                Ok(sig)
            }
        }
    }
}

/// Read an OpenSSH private key file (perhaps encrypted) that only its owner can read.
pub fn read_private_key(path: &Path) -> anyhow::Result<PrivateKey> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "{}: the private key is accessible by others (mode {:o}); chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    let text = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    PrivateKey::from_openssh(&text)
        .with_context(|| format!("{}: not an OpenSSH private key", path.display()))
}

/// The public half of a key file, read without its passphrase (OpenSSH stores it in clear).
pub fn public_key_of_file(path: &Path) -> anyhow::Result<PublicKey> {
    let key = read_private_key(path)?;
    check_algorithm(key.public_key()).with_context(|| format!("{}", path.display()))?;
    Ok(key.public_key().clone())
}

/// Ask for `path`'s passphrase on the terminal; refused, with what to do instead, without one.
pub fn ask_passphrase(path: &Path) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "{}: the key is encrypted and there is no terminal to ask for its passphrase; \
             run this from a terminal, or add the key to your ssh-agent (ssh-add) and use \
             --ssh-agent",
            path.display()
        );
    }
    read_passphrase(&format!("Passphrase for {}: ", path.display()))
}

/// Decrypt `path` with `passphrase` (to tell a wrong passphrase before anything starts).
pub fn check_passphrase(path: &Path, passphrase: &str) -> anyhow::Result<()> {
    read_private_key(path)?
        .decrypt(passphrase.as_bytes())
        .map(drop)
        .map_err(|_| anyhow::anyhow!("{}: wrong passphrase", path.display()))
}

fn check_algorithm(key: &PublicKey) -> anyhow::Result<()> {
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::Rsa { .. } => Ok(()),
        other => bail!("{} keys are not supported (ed25519 or RSA)", other.as_str()),
    }
}

/// Read a line from the terminal with echo off.
fn read_passphrase(prompt: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, Write};
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr/tcsetattr on stdin, restored below.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            bail!("cannot read the terminal's settings");
        }
        let saved = t;
        t.c_lflag &= !libc::ECHO;
        t.c_lflag |= libc::ECHONL;
        libc::tcsetattr(fd, libc::TCSANOW, &t);
        saved
    };
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe {
        libc::tcsetattr(fd, libc::TCSANOW, &saved);
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
