//! What a peer starts from: its state.db decoded (identity, the cluster's settings and key,
//! the membership, the persistent state, the deployment hint, a version on trial) and the
//! package it runs.

use std::{path::Path, sync::Arc};

use smon_login::{installed_cluster::InstalledCluster, layout};
use smon_proto::{
    ClusterConfig, Keyring, KeyringHandle, MachineId, Membership, ReleasePublicKey, Version,
};

use super::{
    DaemonError,
    own_package::OwnPackage,
    store::{Store, keys},
};
use crate::core::{Millis, PersistentState, SpreadHint};

/// Who this peer is and which cluster it belongs to, as the installer stored it.
pub struct Identity {
    pub me: MachineId,
    pub config: ClusterConfig,
    pub key: KeyringHandle,
    pub membership: Membership,
    /// The cluster's release key (`config.release_key`), which packages and pins must carry.
    pub trusted: ReleasePublicKey,
}

/// Everything a peer needs from its machine to start.
pub struct Loaded {
    pub identity: Identity,
    pub package: Arc<OwnPackage>,
    /// The persistent state, its version set to the running package's.
    pub state: PersistentState,
    /// When this machine was first deployed (stored on the first start).
    pub first_deployed: Millis,
    pub hint: Option<SpreadHint>,
    /// If this version is on trial after a self-upgrade: when it must have rejoined by.
    pub trial_deadline: Option<Millis>,
}

fn missing(what: &'static str, root: &Path) -> DaemonError {
    DaemonError::NotInstalled {
        root: root.to_owned(),
        what,
    }
}

/// Load the peer of `root` from `store` at time `now`. Writes the first-deployed time, on
/// the first start, and the `cluster` file that logins read (so an install made before that
/// file existed gets it). Errors: anything missing (not installed here) or undecodable.
pub fn load(root: &Path, store: &mut Store, now: Millis) -> Result<Loaded, DaemonError> {
    let identity = identity(root, store)?;
    let key_epoch = identity.key.get().epoch();
    InstalledCluster::write(root, &identity.config, &identity.me, key_epoch)?;
    let package = Arc::new(running_package(root)?);
    let version = package.manifest.version;
    let mut state: PersistentState = store
        .get(keys::STATE)?
        .unwrap_or_else(|| PersistentState::new(version));
    state.version = version;
    let first_deployed = match store.get::<u64>(keys::FIRST_DEPLOYED)? {
        Some(t) => t,
        None => {
            store.put(keys::FIRST_DEPLOYED, &now)?;
            now
        }
    };
    let hint = store
        .get::<Option<(u32, u64)>>(keys::SPREAD_ORIGIN)?
        .flatten()
        .map(|(origin, membership_version)| SpreadHint {
            origin,
            membership_version,
        });
    // A lone peer has nobody to rejoin: no trial.
    let trial_deadline = store
        .get::<(Version, u64)>(keys::TRIAL)?
        .filter(|(v, _)| *v == version && identity.membership.len() > 1)
        .map(|_| now + identity.config.rejoin_within_ms);
    Ok(Loaded {
        identity,
        package,
        state,
        first_deployed,
        hint,
        trial_deadline,
    })
}

/// The identity, cluster settings, key and membership the installer stored.
fn identity(root: &Path, store: &Store) -> Result<Identity, DaemonError> {
    let me: MachineId = store
        .get(keys::ME)?
        .ok_or_else(|| missing("identity", root))?;
    let config: ClusterConfig = store
        .get(keys::CONFIG)?
        .ok_or_else(|| missing("cluster config", root))?;
    let key_bytes = store
        .get_raw(keys::CLUSTER_KEY)?
        .ok_or_else(|| missing("cluster key", root))?;
    let key = KeyringHandle::new(
        Keyring::decode(&key_bytes)
            .map_err(|e| DaemonError::decode("the stored cluster key", e))?,
    );
    let blob = store
        .get_raw(keys::MEMBERSHIP)?
        .ok_or_else(|| missing("membership", root))?;
    let membership =
        Membership::decode(&blob).map_err(|e| DaemonError::decode("stored membership", e))?;
    let trusted = ReleasePublicKey::from_openssh(&config.release_key)
        .map_err(|e| DaemonError::decode("release key", e))?;
    Ok(Identity {
        me,
        config,
        key,
        membership,
        trusted,
    })
}

/// The package this process runs: `current`'s manifest, served from the version's own file
/// (not `current`, which an upgrade may move).
fn running_package(root: &Path) -> Result<OwnPackage, DaemonError> {
    let (bytes, manifest) =
        layout::installed_manifest(&root.join("current").join(layout::PEER_BINARY))?;
    Ok(OwnPackage {
        path: layout::version_binary(root, manifest.version),
        len: bytes.len() as u64,
        manifest,
    })
}
