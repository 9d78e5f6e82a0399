//! The `smon-peer` daemon: the core on real IO (tokio, Noise/tarpc, SQLite, local and SSH
//! machines through `smon-login`), and the installer that runs on a machine after a deployer
//! copied a package.
//!
//! `run` loads the peer (`loader.rs`), listens (`server.rs`) and hands over to the actor
//! (`actor.rs`), which owns the core; what the actor does besides its loop lives beside it:
//! `control.rs` (operator control, pushed packages), `tasks.rs` (IO tasks), `fetch.rs` (the
//! chunked fetch client), `upgrade.rs` (upgrade, rollback, re-exec); `counters.rs` the
//! peer's own counters, `metrics.rs` its `/metrics` when the cluster opts in.

mod actor;
pub mod apps;
mod clock;
mod control;
mod counters;
mod error;
mod fetch;
pub mod install;
mod loader;
mod logs;
mod metrics;
mod own_package;
mod rekey;
mod server;
mod signatures;
pub mod start;
pub mod store;
mod take_over;
mod tasks;
mod upgrade;

use std::path::Path;

use futures::StreamExt;
use smon_login::layout::{self, io_err};
use smon_proto::{
    KeyringHandle, PeerService,
    tarpc::server::{BaseChannel, Channel},
    transport,
};
use tokio::{net::TcpListener, sync::mpsc};

use actor::Actor;
pub use clock::now_ms;
pub use error::DaemonError;
use server::PeerServer;
use store::Store;

/// Run the peer of the machine whose smon directory is `root`. Returns at once (Ok) if a peer
/// already runs there.
pub async fn run(root: &Path) -> Result<(), DaemonError> {
    let Some(_lock) = layout::try_lock(&root.join("peer.lock"))? else {
        tracing::info!("a peer already runs in {}; this one exits", root.display());
        return Ok(());
    };
    let mut store = Store::open(&root.join("state.db"))?;
    let now = now_ms();
    let loaded = loader::load(root, &mut store, now)?;
    let (me, version) = (loaded.identity.me.clone(), loaded.package.manifest.version);
    let addr = loaded
        .identity
        .config
        .peer_address(&me, &loaded.identity.membership);
    let listener = transport::listen(&addr)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: addr.clone(),
            source,
        })?;
    let pid_file = root.join("peer.pid");
    std::fs::write(&pid_file, std::process::id().to_string()).map_err(io_err(&pid_file))?;
    tracing::info!("{me} runs smon-peer {version} on {addr}");

    let (tx, rx) = mpsc::channel(1024);
    metrics::serve(
        &loaded.identity.config,
        &loaded.identity.me,
        &loaded.identity.membership,
        tx.clone(),
    );
    let server = PeerServer {
        tx: tx.clone(),
        package: loaded.package.clone(),
        me,
        root: root.to_owned(),
        key: loaded.identity.key.clone(),
        caller: None,
    };
    let limits = transport::ServeLimits::for_this_process();
    let door = limits.door.clone();
    serve(listener, loaded.identity.key.clone(), limits, server);
    let (actor, initial) = Actor::new(root, loaded, store, (tx, rx), door, now);
    actor.run(initial).await
}

/// Serve `server` to every connection that `limits`' door lets in and that brings the
/// cluster key, in a task of its own.
fn serve(
    listener: TcpListener,
    key: KeyringHandle,
    limits: transport::ServeLimits,
    server: PeerServer,
) {
    tokio::spawn(transport::serve_connections(
        listener,
        key,
        limits,
        move |t, addr| {
            let server = PeerServer {
                caller: Some(addr),
                ..server.clone()
            };
            BaseChannel::with_defaults(t)
                .execute(server.serve())
                .for_each(transport::spawn_request)
        },
    ));
}
