//! The cluster directory on the operator's machine: everything `init` creates. The files
//! and their names are [`smon_proto::ClusterFiles`]'s.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
pub use smon_proto::write_atomic;
use smon_proto::{
    ClusterConfig, ClusterFiles, Keyring, KeyringHandle, MachineId, Membership, ReleasePrivateKey,
    ReleasePublicKey,
};

pub struct ClusterDir {
    pub path: PathBuf,
    pub config: ClusterConfig,
    pub key: KeyringHandle,
    pub membership: Membership,
    /// The one machine whose peer the console talks to (`--via`); None: the first that answers.
    pub via: Option<MachineId>,
    /// `release.key`'s text, read at open (None without one; the read's error on one line):
    /// signing then needs no descriptor, so a command that signs while it holds a connection
    /// works under a descriptor limit that leaves room for one connection only (issue 15,
    /// kind 4).
    release_key_text: Option<Result<String, String>>,
}

impl ClusterDir {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if !path.is_dir() {
            bail!(
                "{}: not a cluster directory (run `smon-console init` first)",
                path.display()
            );
        }
        let files = ClusterFiles::new(path);
        let config = ClusterConfig::load(path)?;
        let key = KeyringHandle::new(Keyring::load(&files.cluster_key())?);
        let blob_path = files.membership_blob();
        let membership = Membership::decode(
            &std::fs::read(&blob_path).with_context(|| format!("{}", blob_path.display()))?,
        )
        .with_context(|| format!("{}", blob_path.display()))?;
        let release_key_path = files.release_key();
        let release_key_text = release_key_path.exists().then(|| {
            std::fs::read_to_string(&release_key_path)
                .map_err(|e| format!("{}: {e}", release_key_path.display()))
        });
        Ok(Self {
            path: path.to_owned(),
            config,
            key,
            membership,
            via: None,
            release_key_text,
        })
    }

    /// The names of this directory's files.
    pub fn files(&self) -> ClusterFiles<'_> {
        ClusterFiles::new(&self.path)
    }

    /// Talk only to `machine`'s peer (`--via`): an operator on one side of a partition, or
    /// one who wants a change to start from a given machine. It must be in the membership.
    pub fn with_via(mut self, machine: Option<MachineId>) -> anyhow::Result<Self> {
        if let Some(m) = &machine
            && self.membership.index_of(m).is_none()
        {
            bail!(
                "--via {m}: not in the membership list of {}",
                self.path.display()
            );
        }
        self.via = machine;
        Ok(self)
    }

    pub fn package_path(&self) -> PathBuf {
        self.files().package()
    }

    /// Does the directory sign releases itself (`release.key`), rather than the agent?
    pub fn signs_releases(&self) -> bool {
        self.files().release_key().exists()
    }

    /// The key every package of this cluster must be signed by.
    pub fn trusted_release_key(&self) -> anyhow::Result<ReleasePublicKey> {
        ReleasePublicKey::from_openssh(&self.config.release_key)
            .context("the cluster's release key (cluster.json)")
    }

    /// The directory's release key (read when the directory was opened).
    pub fn release_key(&self) -> anyhow::Result<ReleasePrivateKey> {
        let path = self.files().release_key();
        let text = match &self.release_key_text {
            Some(Ok(text)) => text.clone(),
            Some(Err(e)) => bail!("{e}"),
            None => bail!("{}: no such file", path.display()),
        };
        ReleasePrivateKey::from_openssh(text)
            .with_context(|| format!("{}: not an OpenSSH private key", path.display()))
    }

    /// Where `machine`'s peer listens (by this directory's membership).
    pub fn peer_address(&self, machine: &MachineId) -> String {
        self.config.peer_address(machine, &self.membership)
    }

    /// Every machine's peer address, in membership order.
    pub fn addresses(&self) -> Vec<(MachineId, String)> {
        self.config.peer_addresses(&self.membership)
    }

    /// The peers to ask for the cluster: the `--via` machine alone, or every machine in
    /// membership order.
    pub fn peers_to_ask(&self) -> Vec<(MachineId, String)> {
        match &self.via {
            Some(m) => vec![(m.clone(), self.peer_address(m))],
            None => self.addresses(),
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
        write_atomic(&self.files().machines(), text.as_bytes(), 0o644)?;
        write_atomic(&self.files().membership_blob(), &membership.encode(), 0o644)?;
        Ok(())
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
