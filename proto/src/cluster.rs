//! The cluster's settings as every peer holds them, and the seed a deployer hands the
//! installer of a new machine.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    Keyring, MachineId, Membership, ProtoError,
    files::{ClusterFiles, write_atomic},
    sha256,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Every peer listens on this port plus its machine's offset in the membership
    /// ([`Membership::port_offset`]: 0 unless several machines share an SSH host), on its
    /// machine's address.
    pub port: u16,
    /// Makes this cluster's loopback addresses for `local:` machines its own.
    pub local_salt: u64,
    /// Where the directories of `local:` machines live.
    pub local_root: PathBuf,
    pub interval_ms: u64,
    pub ping_timeout_ms: u64,
    /// The release key (OpenSSH public key): packages must be signed by it.
    pub release_key: String,
    /// `host:port` of the authentication agent, if any.
    pub agent: Option<String>,
    pub removed_exit_after_ms: u64,
    pub disabled_exit_after_ms: Option<u64>,
    /// A new version that has not exchanged with any peer this long after starting is
    /// rolled back.
    pub rejoin_within_ms: u64,
    /// Accept (and record) the host key of an SSH machine that the membership does not pin,
    /// the first time a peer logs in to it. Never a key that differs from a pinned one.
    #[serde(default)]
    pub ssh_trust_on_first_use: bool,
    /// Every peer serves its figures over HTTP at `/metrics` (OpenMetrics text, for
    /// Prometheus) when set; off when absent (`init --metrics-port`).
    #[serde(default)]
    pub metrics: Option<MetricsSetting>,
    /// A machine found holding another cluster's install (a peer of an earlier `init`) is
    /// taken over: its peer and applications stopped, its state removed, this cluster
    /// installed (`init --take-over`). Off: such a machine is refused, saying so.
    #[serde(default)]
    pub take_over: bool,
    /// A peer whose process exists but does not answer pings is killed and restarted after
    /// this much silence (`init --unresponsive-grace`); absent: 12 rounds
    /// ([`ClusterConfig::unresponsive_grace_ms`]).
    #[serde(default)]
    pub unresponsive_grace_ms: Option<u64>,
}

/// Where peers serve `/metrics` (see [`ClusterConfig::metrics_address`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsSetting {
    /// The port, plus the machine's port offset as for the peer's own port.
    pub port: u16,
    /// Listen on the machine's address (reachable by a Prometheus on another host) instead of
    /// loopback only.
    #[serde(default)]
    pub public: bool,
}

impl ClusterConfig {
    /// This cluster's id: its [`ClusterConfig::local_salt`] in hex, drawn at random by each
    /// `init`, so that two clusters made with the same release key are told apart.
    pub fn cluster_id(&self) -> String {
        format!("{:016x}", self.local_salt)
    }

    /// Whether an install that trusts `release_key` (OpenSSH public key) and whose cluster id
    /// is `cluster_id` is this cluster's: the same release key (compared as keys, comments
    /// aside) and the same id (when known). This one check decides, for the installer and
    /// for every login that acts on what it finds, whether a machine holds another cluster's
    /// install (issue 15, kind 11).
    pub fn is_same_cluster(&self, release_key: &str, cluster_id: Option<&str>) -> bool {
        use crate::ReleasePublicKey as Key;
        let same_key = match (
            Key::from_openssh(&self.release_key),
            Key::from_openssh(release_key),
        ) {
            (Ok(ours), Ok(theirs)) => ours.key_data() == theirs.key_data(),
            _ => self.release_key.trim() == release_key.trim(),
        };
        same_key && cluster_id.is_none_or(|id| id == self.cluster_id())
    }

    /// [`ClusterConfig::is_same_cluster`] of another cluster's settings.
    pub fn is_same_cluster_as(&self, other: &ClusterConfig) -> bool {
        self.is_same_cluster(&other.release_key, Some(&other.cluster_id()))
    }

    /// How long a peer process may exist without answering pings before it is killed and
    /// restarted (issue 15, kind 1): the setting, or 12 rounds.
    pub fn unresponsive_grace_ms(&self) -> u64 {
        self.unresponsive_grace_ms.unwrap_or(12 * self.interval_ms)
    }

    /// Read the settings of the cluster directory `dir` (`DIR/cluster.json`). Errors: the
    /// file cannot be read ([`ProtoError::File`]) or is not a config
    /// ([`ProtoError::ClusterConfig`]); both name the file.
    pub fn load(dir: &Path) -> Result<Self, ProtoError> {
        let path = ClusterFiles::new(dir).config();
        let bytes = std::fs::read(&path).map_err(|source| ProtoError::File {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ProtoError::ClusterConfig {
            path,
            reason: e.to_string(),
        })
    }

    /// Write them as the settings of the cluster directory `dir`: pretty JSON, mode 0644,
    /// atomically (a crash leaves the old file or the new one).
    pub fn save(&self, dir: &Path) -> Result<(), ProtoError> {
        let json = serde_json::to_vec_pretty(self).expect("a config serializes");
        write_atomic(&ClusterFiles::new(dir).config(), &json, 0o644)
    }

    /// The loopback address of a `local:` machine: derived from the cluster's salt and the
    /// name, so that two clusters on one host do not collide. Never 127.0.0.x.
    pub fn local_address(&self, name: &str) -> Ipv4Addr {
        let mut input = self.local_salt.to_le_bytes().to_vec();
        input.extend_from_slice(name.as_bytes());
        let h = sha256(&input);
        Ipv4Addr::new(127, 1 + h[0] % 254, h[1], 1 + h[2] % 254)
    }

    /// Where the peer of `machine` listens, by `membership` (which sets its port offset):
    /// `host:port`, `[v6]:port`.
    pub fn peer_address(&self, machine: &MachineId, membership: &Membership) -> String {
        self.address_at(machine, membership.port_offset(machine))
    }

    /// [`ClusterConfig::peer_address`] of every machine of `membership`, in list order.
    pub fn peer_addresses(&self, membership: &Membership) -> Vec<(MachineId, String)> {
        membership
            .machines()
            .iter()
            .zip(membership.port_offsets())
            .map(|(m, offset)| (m.clone(), self.address_at(m, offset)))
            .collect()
    }

    fn address_at(&self, machine: &MachineId, offset: u16) -> String {
        Self::host_port(self.machine_host(machine), self.port.saturating_add(offset))
    }

    /// The address of `machine` itself: a `local:` machine's loopback address, an SSH
    /// machine's host.
    pub fn machine_host(&self, machine: &MachineId) -> String {
        match machine {
            MachineId::Local { name } => self.local_address(name).to_string(),
            MachineId::Ssh { host, .. } => host.clone(),
        }
    }

    /// `host:port`, `[v6]:port`.
    fn host_port(host: String, port: u16) -> String {
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }

    /// Where the peer of `machine` serves `/metrics`, if the cluster opted in: loopback
    /// (`127.0.0.1`; a `local:` machine's own loopback address) unless the setting is
    /// `public`, then the machine's address; the port moves with the peer's port offset.
    pub fn metrics_address(&self, machine: &MachineId, membership: &Membership) -> Option<String> {
        let setting = self.metrics?;
        let port = setting.port.saturating_add(membership.port_offset(machine));
        Some(match machine {
            MachineId::Ssh { .. } if !setting.public => format!("127.0.0.1:{port}"),
            _ => Self::host_port(self.machine_host(machine), port),
        })
    }

    /// The directory of a `local:` machine.
    pub fn local_dir(&self, name: &str) -> PathBuf {
        self.local_root.join(name)
    }

    /// Two local machines whose addresses collide, if any (checked whenever a list is set).
    pub fn address_collision<'a>(
        &self,
        machines: impl IntoIterator<Item = &'a MachineId>,
    ) -> Option<(String, String)> {
        let mut seen = std::collections::HashMap::new();
        for m in machines {
            if let MachineId::Local { name } = m
                && let Some(other) = seen.insert(self.local_address(name), name.clone())
            {
                return Some((other, name.clone()));
            }
        }
        None
    }
}

/// What a deployer copies next to the package: who the machine is and how to join.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstallSeed {
    pub me: MachineId,
    pub deployer: String,
    pub config: ClusterConfig,
    pub cluster_key: Vec<u8>,
    /// The deployer's membership blob.
    pub membership: Vec<u8>,
    /// Root of the spreading tree (membership index) and the membership version it refers to.
    pub spread_origin: Option<(u32, u64)>,
}

impl InstallSeed {
    /// The keyring the machine joins with: `cluster_key` holds [`Keyring::encode`]'s bytes (a
    /// bare 32-byte key from an older deployer is epoch 0); the error says what is wrong.
    pub fn keyring(&self) -> Result<Keyring, String> {
        Keyring::decode(&self.cluster_key)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("seed serializes")
    }

    pub fn from_json(bytes: &[u8], path: &Path) -> Result<Self, crate::ProtoError> {
        serde_json::from_slice(bytes)
            .map_err(|e| crate::ProtoError::Manifest(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> ClusterConfig {
        ClusterConfig {
            port: 40_000,
            local_salt: 7,
            local_root: ClusterFiles::new(dir).local_root(),
            interval_ms: 1_000,
            ping_timeout_ms: 400,
            release_key: "ssh-ed25519 AAAA".into(),
            agent: Some("127.0.0.1:4000".into()),
            removed_exit_after_ms: 12_000,
            disabled_exit_after_ms: None,
            rejoin_within_ms: 20_000,
            ssh_trust_on_first_use: false,
            metrics: None,
            take_over: false,
            unresponsive_grace_ms: None,
        }
    }

    #[test]
    fn a_config_saved_loads_back_and_a_bad_one_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let saved = config(dir.path());
        saved.save(dir.path()).unwrap();
        assert_eq!(ClusterConfig::load(dir.path()).unwrap(), saved);

        std::fs::write(ClusterFiles::new(dir.path()).config(), b"{\"port\": \"x\"}").unwrap();
        let err = ClusterConfig::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("cluster.json") && err.contains("not a valid cluster config"),
            "{err}"
        );
        let err = ClusterConfig::load(&dir.path().join("nowhere"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nowhere/cluster.json"), "{err}");
    }
}
