//! The cluster directory on the operator's machine: everything `init` creates.
//!
//! ```text
//! DIR/cluster.json      the cluster settings every peer gets (ports, interval, release key)
//! DIR/cluster.key       K_E (0600)
//! DIR/operator.key      the operator key (0600): the agent signs releases only for its holder
//! DIR/release.pub       the release key; DIR/release.key its private half (0600) when the
//!                       directory signs itself, DIR/agent-key.json when the agent's key is it
//! DIR/known_hosts       the operator's pinned SSH host keys (the membership carries them)
//! DIR/machines          the machines file as last set; DIR/membership.blob its versioned blob
//! DIR/package           the signed package of the peer binary
//! DIR/machines.d/NAME/  the directory of each local:NAME machine
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use smon_proto::{
    ClusterConfig, ClusterKey, MachineId, Membership, ReleasePrivateKey, ReleasePublicKey,
};

pub struct ClusterDir {
    pub path: PathBuf,
    pub config: ClusterConfig,
    pub key: ClusterKey,
    pub membership: Membership,
    /// `--via`: the one peer to talk to, if the operator chose one.
    pub via: Option<MachineId>,
}

impl ClusterDir {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if !path.is_dir() {
            bail!(
                "{}: not a cluster directory (run `smon-console init` first)",
                path.display()
            );
        }
        let config_path = path.join("cluster.json");
        let config: ClusterConfig = serde_json::from_slice(
            &std::fs::read(&config_path).with_context(|| format!("{}", config_path.display()))?,
        )
        .with_context(|| format!("{}: not a valid cluster config", config_path.display()))?;
        let key = ClusterKey::load(&path.join("cluster.key"))?;
        let blob_path = path.join("membership.blob");
        let membership = Membership::decode(
            &std::fs::read(&blob_path).with_context(|| format!("{}", blob_path.display()))?,
        )
        .with_context(|| format!("{}", blob_path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            config,
            key,
            membership,
            via: None,
        })
    }

    /// Talk to the cluster through `via` only (`--via`), or any peer (None).
    pub fn through(self, via: Option<MachineId>) -> Self {
        Self { via, ..self }
    }

    pub fn package_path(&self) -> PathBuf {
        self.path.join("package")
    }

    /// The key every package of this cluster must be signed by.
    pub fn trusted_release_key(&self) -> anyhow::Result<ReleasePublicKey> {
        ReleasePublicKey::from_openssh(&self.config.release_key)
            .context("the cluster's release key (cluster.json)")
    }

    pub fn release_key(&self) -> anyhow::Result<ReleasePrivateKey> {
        let path = self.path.join("release.key");
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        ReleasePrivateKey::from_openssh(text)
            .with_context(|| format!("{}: not an OpenSSH private key", path.display()))
    }

    /// Every machine's peer address, in membership order; only the `--via` machine's if set.
    pub fn addresses(&self) -> Vec<(MachineId, String)> {
        match &self.via {
            Some(m) => vec![(m.clone(), self.config.peer_address(m))],
            None => self
                .membership
                .machines()
                .iter()
                .map(|m| (m.clone(), self.config.peer_address(m)))
                .collect(),
        }
    }

    /// The local machines' directories (to find their pid files).
    pub fn local_roots(&self) -> Vec<(MachineId, PathBuf)> {
        self.membership
            .machines()
            .iter()
            .filter_map(|m| match m {
                MachineId::Local { name } => Some((m.clone(), self.config.local_dir(name))),
                MachineId::Ssh { .. } => None,
            })
            .collect()
    }

    /// Record a new membership list (after the cluster accepted it).
    pub fn save_membership(&self, text: &str, membership: &Membership) -> anyhow::Result<()> {
        write_atomic(&self.path.join("machines"), text.as_bytes(), 0o644)?;
        write_atomic(
            &self.path.join("membership.blob"),
            &membership.encode(),
            0o644,
        )
    }

    /// Create the directory of every local machine of `membership`.
    pub fn make_local_dirs(config: &ClusterConfig, membership: &Membership) -> anyhow::Result<()> {
        for m in membership.machines() {
            if let MachineId::Local { name } = m {
                let dir = config.local_dir(name);
                std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
            }
        }
        Ok(())
    }
}

pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("{}", tmp.display()))?;
    file.write_all(data)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    Ok(())
}
