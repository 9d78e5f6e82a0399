//! `smon-peer install`: what runs on a machine after a deployer copied a package there.
//!
//! Counts the arrival (the deployment overhead), verifies the package (SHA-256 and release
//! signature), takes the install lock so that of several simultaneous installers exactly one
//! goes on, lays out `versions/<v>/` and `current`, stores identity and cluster settings, and
//! starts the peer detached. Idempotent: installing what already runs changes nothing.

use std::{fs, path::Path};

use smon_proto::{
    ClusterConfig, InstallSeed, Keyring, MachineId, Membership, ReleasePublicKey, release,
};

use smon_login::{
    installed_cluster::InstalledCluster,
    layout::{self, io_err},
};

use super::{
    DaemonError, start,
    store::{Store, json, keys},
    take_over,
};

/// Package files bigger than this are refused unread.
const MAX_PACKAGE: u64 = release::MAX_PACKAGE_BYTES;

pub fn install(root: &Path, incoming: &Path) -> Result<String, DaemonError> {
    fs::create_dir_all(root).map_err(io_err(root))?;
    layout::bump_counter(&root.join("arrivals"))?;
    let result = install_inner(root, incoming);
    // Whatever happened, this upload is spent and its claim released.
    let _ = fs::remove_dir_all(incoming);
    clear_claims(root);
    result
}

fn clear_claims(root: &Path) {
    if let Ok(entries) = fs::read_dir(root.join("incoming")) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("claim-") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn install_inner(root: &Path, incoming: &Path) -> Result<String, DaemonError> {
    let package_path = incoming.join("package");
    let size = fs::metadata(&package_path)
        .map_err(io_err(&package_path))?
        .len();
    if size > MAX_PACKAGE {
        return Err(DaemonError::WrongPackage {
            what: package_path.display().to_string(),
            why: format!("{size} bytes, over the cap of {MAX_PACKAGE}"),
        });
    }
    let package = fs::read(&package_path).map_err(io_err(&package_path))?;
    let seed_path = incoming.join("seed.json");
    let seed = InstallSeed::from_json(
        &fs::read(&seed_path).map_err(io_err(&seed_path))?,
        &seed_path,
    )
    .map_err(|e| DaemonError::decode("install seed", e))?;

    let Some(_lock) = layout::try_lock(&root.join("install.lock"))? else {
        return Ok("another installer is running here; this one stops".into());
    };
    let mut store = Store::open(&root.join("state.db"))?;
    // The release key this machine already trusts wins over whatever a seed says.
    let mut installed = store.get::<ClusterConfig>(keys::CONFIG)?;
    let verify = |config: &ClusterConfig| {
        let trusted = ReleasePublicKey::from_openssh(&config.release_key)
            .map_err(|e| DaemonError::decode("release key", e))?;
        release::verify_package(&package, &trusted).map_err(|source| DaemonError::Unverified {
            what: package_path.display().to_string(),
            source,
        })
    };
    // Another cluster's install (issue 15 kind 11): said as such, or taken over.
    if let Some(theirs) = installed
        .as_ref()
        .filter(|theirs| !seed.config.is_same_cluster_as(theirs))
    {
        if !seed.config.take_over {
            let me = store.get::<MachineId>(keys::ME)?;
            return Err(DaemonError::OtherCluster(take_over::describe(
                root, theirs, me,
            )));
        }
        verify(&seed.config)?; // only this cluster's own package takes a machine over
        drop(store);
        take_over::take_over(root).map_err(io_err(root))?;
        store = Store::open(&root.join("state.db"))?;
        installed = None;
    }
    let (_, manifest) = verify(installed.as_ref().unwrap_or(&seed.config))?;
    let version = manifest.version;

    if let Some(pid) = layout::running_pid(root)
        && layout::linked_version(root, "current").is_some_and(|v| v >= version)
    {
        return Ok(format!(
            "a peer already runs here (pid {pid}); nothing to do"
        ));
    }

    layout::store_version(root, version, &package)?;
    let keyring = seed
        .keyring()
        .map_err(|e| DaemonError::decode("the seed's cluster key", e))?;
    if store.get_raw(keys::ME)?.is_some() {
        adopt_newer_keyring(&mut store, &keyring)?;
    } else {
        let membership =
            Membership::decode(&seed.membership).map_err(|e| DaemonError::decode("seed", e))?;
        store.put_all(&[
            (keys::ME, json(&seed.me)),
            (keys::CONFIG, json(&seed.config)),
            (keys::CLUSTER_KEY, keyring.encode()),
            (keys::MEMBERSHIP, membership.encode()),
            (keys::SPREAD_ORIGIN, json(&seed.spread_origin)),
        ])?;
    }
    // Which cluster this install is, for the probes of later logins (issue 15, kind 11).
    if let (Some(me), Some(config)) = (
        store.get::<MachineId>(keys::ME)?,
        store.get::<ClusterConfig>(keys::CONFIG)?,
    ) {
        let key_epoch = store
            .get_raw(keys::CLUSTER_KEY)?
            .and_then(|bytes| Keyring::decode(&bytes).ok())
            .map_or(0, |k| k.epoch());
        InstalledCluster::write(root, &config, &me, key_epoch)?;
    }
    drop(store);
    if layout::linked_version(root, "current").is_none_or(|v| v < version) {
        layout::switch_to(root, version)?;
    }
    start::start(root, false)?;
    Ok(format!("installed {version} and started the peer"))
}

/// A seed whose keyring is of a newer key epoch than the stored one replaces it: a machine
/// that was away during a whole key rotation is deployed over with the new key (issue 14).
/// A stored keyring that does not decode is replaced too.
fn adopt_newer_keyring(store: &mut Store, seed: &Keyring) -> Result<(), DaemonError> {
    let stored = store
        .get_raw(keys::CLUSTER_KEY)?
        .and_then(|bytes| Keyring::decode(&bytes).ok());
    if stored.is_none_or(|stored| stored.epoch() < seed.epoch()) {
        store.put_all(&[(keys::CLUSTER_KEY, seed.encode())])?;
    }
    Ok(())
}
