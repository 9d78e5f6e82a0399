//! The agent service: what a connection (authenticated by K_E) may ask, and the checks made
//! before anything is signed.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use anyhow::Context;
use futures::StreamExt;
use russh::keys::ssh_key::{HashAlg, LineEnding, SshSig, encoding::Encode};
use smon_proto::{
    AgentService, ChallengeRequest, ClusterConfig, ClusterFiles, KeyringFile, MEMBERSHIP_NAMESPACE,
    MachineId, Membership, OperatorKey, PackageManifest, Refusal, ReleasePublicKey,
    door::{Door, DoorCounts, DoorLimits},
    release::SIGNATURE_NAMESPACE,
    tarpc::{
        context::Context as Ctx,
        server::{BaseChannel, Channel},
    },
    transport,
};
use tokio::net::TcpListener;

use crate::{
    audit::{Audit, Entry},
    key::KeySource,
    limits::{Limiter, Rate},
    userauth,
};

pub struct Settings {
    pub cluster_dir: PathBuf,
    pub audit_path: PathBuf,
    pub per_peer: Rate,
    pub global: Rate,
    /// The login user for membership entries without one.
    pub default_user: String,
}

/// Why this agent cannot sign releases, if it cannot.
fn release_signing(
    dir: &Path,
    config: &ClusterConfig,
    public: &russh::keys::ssh_key::PublicKey,
) -> Result<OperatorKey, String> {
    let trusted = ReleasePublicKey::from_openssh(&config.release_key).ok();
    if trusted.as_ref().map(|k| k.key_data()) != Some(public.key_data()) {
        return Err("the cluster's release key is not this agent's key".into());
    }
    OperatorKey::load(&ClusterFiles::new(dir).operator_key()).map_err(|e| {
        tracing::warn!("releases and memberships will not be signed: {e}");
        "the cluster directory has no usable operator key".into()
    })
}

struct Inner {
    key: KeySource,
    key_blob: Vec<u8>,
    public_openssh: String,
    settings: Settings,
    membership: Mutex<(Option<SystemTime>, Arc<Membership>)>,
    /// The operator key that `sign_package` requests must prove, or why releases are not signed.
    release_signing: Result<OperatorKey, String>,
    limiter: Limiter,
    audit: Audit,
    /// Which connections get a handshake (caps, per-source limits); its counts.
    door: Arc<Door>,
}

/// The agent; cheap to clone.
#[derive(Clone)]
pub struct Agent(Arc<Inner>);

/// The cluster directory's settings and keyring file (read again when `rekey` rewrites it),
/// as the agent needs them.
pub fn load_cluster(dir: &Path) -> anyhow::Result<(ClusterConfig, KeyringFile)> {
    let config = ClusterConfig::load(dir)?;
    let key = KeyringFile::open(&ClusterFiles::new(dir).cluster_key())?;
    Ok((config, key))
}

fn load_membership(path: &Path) -> anyhow::Result<(Option<SystemTime>, Membership)> {
    let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let blob = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    Ok((
        mtime,
        Membership::decode(&blob).with_context(|| format!("{}", path.display()))?,
    ))
}

impl Agent {
    pub fn new(key: KeySource, settings: Settings) -> anyhow::Result<Self> {
        let (mtime, membership) =
            load_membership(&ClusterFiles::new(&settings.cluster_dir).membership_blob())?;
        let public = key.public_key().clone();
        let audit = Audit::open(&settings.audit_path)?;
        let (config, _) = load_cluster(&settings.cluster_dir)?;
        let release_signing = release_signing(&settings.cluster_dir, &config, &public);
        Ok(Agent(Arc::new(Inner {
            release_signing,
            key_blob: public.to_bytes().context("public key")?,
            public_openssh: public.to_openssh().context("public key")?,
            key,
            limiter: Limiter::new(settings.per_peer, settings.global),
            membership: Mutex::new((mtime, Arc::new(membership))),
            settings,
            audit,
            door: Door::new(DoorLimits::for_this_process()),
        })))
    }

    pub fn public_openssh(&self) -> &str {
        &self.0.public_openssh
    }

    /// What the listener's door let in and refused so far.
    pub fn door_counts(&self) -> DoorCounts {
        self.0.door.counts()
    }

    /// The membership list, re-read when the file changed.
    fn membership(&self) -> Arc<Membership> {
        let path = ClusterFiles::new(&self.0.settings.cluster_dir).membership_blob();
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let mut cached = self.0.membership.lock().expect("membership");
        if mtime != cached.0
            && let Ok((m, list)) = load_membership(&path)
        {
            *cached = (m, Arc::new(list));
        }
        cached.1.clone()
    }

    /// Serve on `listener` forever. Each connection the door lets in runs in its own task; a
    /// handshake that fails (wrong K_E, garbage, silence) is audited as a refusal (the door's
    /// rate, which failures drain, bounds how many rows a flood writes); connections the door
    /// refuses are counted and logged, not audited.
    pub async fn serve(self, listener: TcpListener, key: KeyringFile) {
        let limits = transport::ServeLimits {
            door: self.0.door.clone(),
            ..transport::ServeLimits::default()
        };
        let agent = self.clone();
        let on_transport = move |t, addr| {
            let conn = Conn {
                agent: agent.clone(),
                addr,
            };
            BaseChannel::with_defaults(t)
                .execute(conn.serve())
                .for_each(transport::spawn_request)
        };
        let on_refused = move |addr: SocketAddr, e: smon_proto::ProtoError| {
            let agent = self.clone();
            async move {
                let entry = Entry {
                    conn: addr.to_string(),
                    call: "handshake",
                    decision: "refused",
                    detail: clip(&format!("Noise handshake failed (wrong cluster key?): {e}")),
                    ..Entry::default()
                };
                agent.0.audit.record(entry).await;
            }
        };
        transport::serve_connections_with(listener, key, limits, on_transport, on_refused).await
    }

    /// Audit `outcome` (committed before the answer), then pass it on.
    async fn decide<T>(&self, mut entry: Entry, outcome: Result<T, Refusal>) -> Result<T, Refusal> {
        entry.decision = if outcome.is_ok() { "signed" } else { "refused" };
        if let Err(r) = &outcome {
            entry.detail = r.to_string();
        }
        if !self.0.audit.record(entry).await {
            return Err(Refusal::Busy("the audit log cannot be written".into()));
        }
        outcome
    }

    /// The checks, then the signature: the SSH signature blob (see [`AgentService`]).
    /// `from` is the connection's address: the per-peer allowance is that of its IP address,
    /// which TCP vouches for, not of the requester the request names (any holder of K_E could
    /// name another).
    pub async fn resolve(
        &self,
        from: SocketAddr,
        req: ChallengeRequest,
    ) -> Result<Vec<u8>, Refusal> {
        let mut entry = Entry {
            conn: from.to_string(),
            call: "resolve_challenge",
            requester: clip(&req.requester.to_string()),
            target: clip(&req.target.to_string()),
            ..Entry::default()
        };
        let outcome = match self.check(from.ip(), &req, &mut entry) {
            Err(r) => Err(r),
            Ok(hash) => self
                .0
                .key
                .sign(req.data, hash)
                .await
                .map_err(Refusal::Busy)
                .and_then(|sig| {
                    sig.encode_vec()
                        .map_err(|e| Refusal::Busy(format!("signature: {e}")))
                }),
        };
        self.decide(entry, outcome).await
    }

    fn check(
        &self,
        from: IpAddr,
        req: &ChallengeRequest,
        entry: &mut Entry,
    ) -> Result<Option<HashAlg>, Refusal> {
        self.0
            .limiter
            .check(&from.to_string())
            .map_err(|_| Refusal::RateLimited)?;
        let parsed = userauth::parse(&req.data, self.0.key.public_key(), &self.0.key_blob)
            .map_err(Refusal::Invalid)?;
        entry.user = clip(&parsed.user);
        let MachineId::Ssh { user, .. } = &req.target else {
            return Err(Refusal::Denied(format!(
                "{} is not an SSH machine",
                req.target
            )));
        };
        if self.membership().index_of(&req.target).is_none() {
            return Err(Refusal::Denied(format!(
                "{} is not in the cluster's membership",
                req.target
            )));
        }
        let expected = user.as_deref().unwrap_or(&self.0.settings.default_user);
        if parsed.user != expected {
            return Err(Refusal::Denied(format!(
                "user {:?} is not the membership's user for {} ({expected:?})",
                parsed.user, req.target
            )));
        }
        Ok(parsed.hash)
    }

    /// Sign a release manifest, for the holder of the operator key only.
    pub async fn sign_package(
        &self,
        from: SocketAddr,
        mut manifest: PackageManifest,
        proof: Vec<u8>,
    ) -> Result<PackageManifest, Refusal> {
        let entry = Entry {
            conn: from.to_string(),
            call: "sign_package",
            target: clip(&format!("{} {}", manifest.name, manifest.version)),
            ..Entry::default()
        };
        let outcome = async {
            self.operator_asks(from, |operator| operator.verify(&manifest, &proof))?;
            manifest.signer = self.0.public_openssh.clone();
            manifest.signature.clear();
            manifest.signature = self
                .sshsig(SIGNATURE_NAMESPACE, &manifest.signing_bytes())
                .await?;
            Ok(())
        }
        .await;
        self.decide(entry, outcome).await?;
        Ok(manifest)
    }

    /// Sign a membership blob (which makes its pinned host keys believable), for the holder
    /// of the operator key only; the blob must be an unsigned membership list, nothing else.
    pub async fn sign_membership(
        &self,
        from: SocketAddr,
        blob: Vec<u8>,
        proof: Vec<u8>,
    ) -> Result<Vec<u8>, Refusal> {
        let mut entry = Entry {
            conn: from.to_string(),
            call: "sign_membership",
            ..Entry::default()
        };
        let outcome = async {
            self.operator_asks(from, |operator| operator.verify_membership(&blob, &proof))?;
            let list = Membership::decode(&blob)
                .map_err(|e| Refusal::Invalid(format!("not a membership blob: {e}")))?;
            entry.target = format!(
                "membership version {} ({} machines)",
                list.version,
                list.len()
            );
            if list.signing_bytes() != blob {
                return Err(Refusal::Invalid(
                    "the blob is signed already, or not in canonical form".into(),
                ));
            }
            self.sshsig(MEMBERSHIP_NAMESPACE, &blob).await
        }
        .await;
        self.decide(entry, outcome).await
    }

    /// Sign control state's bytes (a livetag, an application's desired state; see
    /// [`smon_proto::control_signing_bytes`]), for the holder of the operator key only; the
    /// bytes must be control state's, nothing else (so no other namespace's data is signed).
    pub async fn sign_control(
        &self,
        from: SocketAddr,
        bytes: Vec<u8>,
        proof: Vec<u8>,
    ) -> Result<Vec<u8>, Refusal> {
        let entry = Entry {
            conn: from.to_string(),
            call: "sign_control",
            target: clip(&String::from_utf8_lossy(&bytes).replace('\0', " ")),
            ..Entry::default()
        };
        let outcome = async {
            self.operator_asks(from, |operator| operator.verify_control(&bytes, &proof))?;
            if !bytes.starts_with(smon_proto::CONTROL_PREFIX) {
                return Err(Refusal::Invalid("not control state's signed bytes".into()));
            }
            self.sshsig(smon_proto::CONTROL_NAMESPACE, &bytes).await
        }
        .await;
        self.decide(entry, outcome).await
    }

    /// The checks before a release-key signature: the rate limit, that this agent's key is
    /// the release key, and the operator's proof.
    fn operator_asks(
        &self,
        from: SocketAddr,
        proof_holds: impl FnOnce(&OperatorKey) -> bool,
    ) -> Result<(), Refusal> {
        self.0
            .limiter
            .check(&from.ip().to_string())
            .map_err(|_| Refusal::RateLimited)?;
        let operator = self.0.release_signing.as_ref().map_err(|why| {
            Refusal::Denied(format!("this agent does not sign for the cluster: {why}"))
        })?;
        if !proof_holds(operator) {
            return Err(Refusal::Denied(
                "no valid operator proof: only the operator's console may have releases or \
                 memberships signed"
                    .into(),
            ));
        }
        Ok(())
    }

    /// An sshsig (PEM) of `data` in `namespace` with the agent's key.
    async fn sshsig(&self, namespace: &str, data: &[u8]) -> Result<Vec<u8>, Refusal> {
        let hash = HashAlg::Sha512;
        let bad = |e: String| Refusal::Busy(e);
        let signed = SshSig::signed_data(namespace, hash, data).map_err(|e| bad(e.to_string()))?;
        let sig = self.0.key.sign(signed, Some(hash)).await.map_err(bad)?;
        let sshsig = SshSig::new(
            self.0.key.public_key().key_data().clone(),
            namespace,
            hash,
            sig,
        )
        .map_err(|e| bad(e.to_string()))?;
        Ok(sshsig
            .to_pem(LineEnding::LF)
            .map_err(|e| bad(e.to_string()))?
            .into_bytes())
    }
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

#[derive(Clone)]
struct Conn {
    agent: Agent,
    addr: SocketAddr,
}

impl AgentService for Conn {
    async fn resolve_challenge(self, _: Ctx, req: ChallengeRequest) -> Result<Vec<u8>, Refusal> {
        self.agent.resolve(self.addr, req).await
    }

    async fn sign_package(
        self,
        _: Ctx,
        manifest: PackageManifest,
        proof: Vec<u8>,
    ) -> Result<PackageManifest, Refusal> {
        self.agent.sign_package(self.addr, manifest, proof).await
    }

    async fn sign_membership(
        self,
        _: Ctx,
        blob: Vec<u8>,
        proof: Vec<u8>,
    ) -> Result<Vec<u8>, Refusal> {
        self.agent.sign_membership(self.addr, blob, proof).await
    }

    async fn sign_control(
        self,
        _: Ctx,
        bytes: Vec<u8>,
        proof: Vec<u8>,
    ) -> Result<Vec<u8>, Refusal> {
        self.agent.sign_control(self.addr, bytes, proof).await
    }

    async fn public_key(self, _: Ctx) -> String {
        self.agent.public_openssh().to_owned()
    }
}
