//! The `smon-peer` daemon: the core on real IO (tokio, Noise/tarpc, SQLite, local and SSH
//! machines), and the installer that runs on a machine after a deployer copied a package.

mod actor;
pub mod apps;
mod clock;
pub mod install;
pub mod layout;
pub mod machine_ops;
mod own_package;
pub mod remote;
mod server;
pub mod ssh;
pub mod start;
pub mod store;

use std::{path::Path, sync::Arc};

use futures::StreamExt;
use smon_proto::{
    ClusterConfig, ClusterKey, MachineId, Membership, PeerService, ReleasePublicKey,
    tarpc::server::{BaseChannel, Channel},
    transport,
};
use tokio::sync::mpsc;

use crate::core::{Boot, Core, CoreConfig, LocalFacts, PersistentState, SpreadHint};
use actor::Actor;
pub use clock::now_ms;
use own_package::OwnPackage;
use server::PeerServer;
use store::{Store, keys};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("state: {0}")]
    Store(String),
    #[error("{0}")]
    Io(String),
    #[error("login: {0}")]
    Login(String),
    #[error("package: {0}")]
    Package(String),
    #[error("start: {0}")]
    Start(String),
    #[error("fetch: {0}")]
    Fetch(String),
    #[error("{0}")]
    Setup(String),
}

fn missing(what: &str, root: &Path) -> DaemonError {
    DaemonError::Setup(format!(
        "{}: no {what} in state.db (not installed here?)",
        root.display()
    ))
}

/// Run the peer of the machine whose smon directory is `root`. Returns at once (Ok) if a peer
/// already runs there.
pub async fn run(root: &Path) -> Result<(), DaemonError> {
    let Some(_lock) = layout::try_lock(&root.join("peer.lock"))? else {
        tracing::info!("a peer already runs in {}; this one exits", root.display());
        return Ok(());
    };
    let mut store = Store::open(&root.join("state.db"))?;
    let me: MachineId = store
        .get(keys::ME)?
        .ok_or_else(|| missing("identity", root))?;
    let config: ClusterConfig = store
        .get(keys::CONFIG)?
        .ok_or_else(|| missing("cluster config", root))?;
    let key_bytes = store
        .get_raw(keys::CLUSTER_KEY)?
        .ok_or_else(|| missing("cluster key", root))?;
    let key = ClusterKey::from_bytes(
        key_bytes
            .as_slice()
            .try_into()
            .map_err(|_| DaemonError::Setup("the stored cluster key is not 32 bytes".into()))?,
    );
    let blob = store
        .get_raw(keys::MEMBERSHIP)?
        .ok_or_else(|| missing("membership", root))?;
    let membership = Membership::decode(&blob)
        .map_err(|e| DaemonError::Setup(format!("stored membership: {e}")))?;
    ssh::set_context(ssh::SshContext {
        key: key.clone(),
        requester: me.clone(),
        known_hosts: root.join(ssh::KNOWN_HOSTS),
    });
    let trusted = ReleasePublicKey::from_openssh(&config.release_key)
        .map_err(|e| DaemonError::Setup(format!("release key: {e}")))?;
    ssh::pin_host_keys(std::sync::Arc::new(membership.clone()), &trusted);

    let (bytes, manifest) =
        layout::installed_manifest(&root.join("current").join(layout::PEER_BINARY))?;
    let version = manifest.version;
    // The running version's own file (not `current`, which an upgrade may move).
    let package_path = layout::version_binary(root, version);
    let package_len = bytes.len() as u64;
    drop(bytes);
    let mut state: PersistentState = store
        .get(keys::STATE)?
        .unwrap_or_else(|| PersistentState::new(version));
    state.version = version;
    let now = now_ms();
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
    let trial_deadline = store
        .get::<(smon_proto::Version, u64)>(keys::TRIAL)?
        .filter(|(v, _)| *v == version && membership.len() > 1)
        .map(|_| now + config.rejoin_within_ms);

    let addr = config.peer_address(&me);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| DaemonError::Setup(format!("cannot listen on {addr}: {e}")))?;
    std::fs::write(root.join("peer.pid"), std::process::id().to_string())
        .map_err(layout::io_err(root))?;
    tracing::info!("{me} runs smon-peer {version} on {addr}");

    let facts = LocalFacts {
        overhead: layout::counter(&root.join("arrivals")),
        logins: layout::counter(&root.join("logins")),
        load: 0,
        first_deployed_ms: Some(first_deployed),
    };
    let cfg = CoreConfig {
        interval_ms: config.interval_ms,
        removed_exit_after_ms: config.removed_exit_after_ms,
        disabled_exit_after_ms: config.disabled_exit_after_ms,
        ..CoreConfig::default()
    };
    let boot = Boot {
        me: me.clone(),
        state,
        membership: Arc::new(membership),
        facts: facts.clone(),
        hint,
    };
    let mut rng = Actor::new_rng();
    let mut core = Core::new(cfg, boot, now);
    let mut initial = Vec::new();
    core.start(now, &mut rng, &mut initial);

    let (tx, rx) = mpsc::channel(1024);
    let package = Arc::new(OwnPackage {
        path: package_path,
        len: package_len,
        manifest,
    });
    let server = PeerServer {
        tx: tx.clone(),
        package: package.clone(),
        me: me.clone(),
        root: root.to_owned(),
    };
    let apps = apps::Apps::start(
        apps::supervisor::AppCtx {
            root: root.to_owned(),
            machine: me.clone(),
            host: machine_host(&config, &me),
            status: apps::status_sender::StatusSender::new(tx.clone(), actor::Msg::AppStatus),
        },
        core.apps(),
    );
    tokio::spawn(transport::serve_connections(
        listener,
        key.clone(),
        transport::ServeLimits::default(),
        move |t, _addr| {
            let server = server.clone();
            BaseChannel::with_defaults(t)
                .execute(server.serve())
                .for_each(transport::spawn_request)
        },
    ));
    let actor = Actor {
        root: root.to_owned(),
        me,
        config,
        key,
        trusted,
        core,
        store,
        package,
        tx,
        rx,
        rng,
        timer: None,
        trial_deadline,
        facts,
        push: Vec::new(),
        apps,
        app_push: Vec::new(),
    };
    actor.run(initial).await
}

/// The address applications of `machine` serve on (`SMON_HOST`).
fn machine_host(config: &ClusterConfig, machine: &MachineId) -> String {
    match machine {
        MachineId::Local { name } => config.local_address(name).to_string(),
        MachineId::Ssh { host, .. } => host.clone(),
    }
}
