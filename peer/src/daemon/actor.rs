//! The actor that owns a peer's core: it feeds the core with timers, calls from the network
//! and the results of IO tasks, and carries out the core's outputs with real IO.

use std::{os::unix::process::CommandExt, path::PathBuf, sync::Arc, time::Duration};

use rand::{SeedableRng, rngs::Xoshiro256PlusPlus};
use smon_proto::{
    AppDecl, AppStatus, ClusterConfig, ClusterKey, ClusterView, ControlAction, DesiredState,
    InstallSeed, MAX_CHUNK, MachineId, Membership, PeerCall, PeerReply, Refusal, ReleasePublicKey,
    Version, app_package, release, tarpc::context,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    DaemonError,
    apps::{Apps, install as app_install},
    clock::now_ms,
    layout, machine_ops,
    own_package::OwnPackage,
    store::{Store, json, keys},
};
use crate::core::{CallFailure, Core, ExitReason, Input, LocalFacts, LoginOutcome, Millis, Output};

pub enum Msg {
    Call(PeerCall, oneshot::Sender<PeerReply>),
    View(u64, oneshot::Sender<ClusterView>),
    Control(ControlAction, oneshot::Sender<Result<String, Refusal>>),
    Input(Input),
    ReleaseFetch(u64),
    /// A supervisor observed a change of its application.
    AppStatus(AppStatus),
    /// An application fetch (and install) finished.
    AppFetched {
        app: AppDecl,
        ok: bool,
    },
    /// `set_app_status`: a desired state for this machine only.
    SetAppStatus(String, DesiredState, oneshot::Sender<Result<(), Refusal>>),
    GetAppStatus(Option<String>, oneshot::Sender<Vec<AppStatus>>),
    /// Switch to an installed version and re-execute into it.
    Upgrade(Version),
    Shutdown,
}

pub struct Actor {
    pub root: PathBuf,
    pub me: MachineId,
    pub config: ClusterConfig,
    pub key: ClusterKey,
    pub trusted: ReleasePublicKey,
    pub core: Core,
    pub store: Store,
    pub package: Arc<OwnPackage>,
    pub tx: mpsc::Sender<Msg>,
    pub rx: mpsc::Receiver<Msg>,
    pub rng: Xoshiro256PlusPlus,
    pub timer: Option<Millis>,
    /// A version on trial must exchange with some peer before this time, or it is rolled back.
    pub trial_deadline: Option<Millis>,
    pub facts: LocalFacts,
    pub push: Vec<u8>,
    pub apps: Apps,
    /// An application package being pushed by the console.
    pub app_push: Vec<u8>,
}

pub enum Ending {
    Exit(ExitReason),
    Shutdown,
    Upgrade(Version),
    Rollback,
}

impl Actor {
    pub fn new_rng() -> Xoshiro256PlusPlus {
        Xoshiro256PlusPlus::seed_from_u64(rand::random())
    }

    pub async fn run(mut self, initial: Vec<Output>) -> Result<(), DaemonError> {
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| DaemonError::Io(format!("SIGTERM handler: {e}")))?;
        let mut out = initial;
        let ending = loop {
            if let Some(ending) = self.carry_out(&mut out)? {
                break ending;
            }
            let wait = self.timer.map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(at.saturating_sub(now_ms()))
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {
                    self.timer = None;
                    self.refresh_facts(&mut out);
                    self.core.handle(now_ms(), Input::Tick, &mut self.rng, &mut out);
                    if self.trial_deadline.is_some_and(|d| now_ms() > d) {
                        break Ending::Rollback;
                    }
                }
                msg = self.rx.recv() => {
                    let Some(msg) = msg else { break Ending::Shutdown };
                    if let Some(ending) = self.on_msg(msg, &mut out) {
                        break ending;
                    }
                }
                _ = sigterm.recv() => break Ending::Shutdown,
            }
        };
        if matches!(ending, Ending::Exit(ExitReason::RemovedFromMembership)) {
            // The machine is no longer managed: its applications would be orphans.
            self.apps.stop_all().await;
        }
        self.finish(ending)
    }

    fn on_msg(&mut self, msg: Msg, out: &mut Vec<Output>) -> Option<Ending> {
        let now = now_ms();
        match msg {
            Msg::Call(call, reply) => {
                let from_peer = matches!(call, PeerCall::Ping(_));
                let answer = self.core.on_call(now, call, &mut self.rng, out);
                let _ = reply.send(answer);
                if from_peer {
                    self.passed_trial();
                }
            }
            Msg::View(since, reply) => {
                let _ = reply.send(self.core.cluster_view(since));
            }
            Msg::Control(action, reply) => {
                let answer = self.control(action, out);
                // What the operator is told is done must be on disk first.
                let ending = match self.carry_out(out) {
                    Ok(ending) => ending,
                    Err(e) => {
                        let _ = reply.send(Err(Refusal::Busy(format!("could not store it: {e}"))));
                        return None;
                    }
                };
                let _ = reply.send(answer);
                return ending;
            }
            Msg::Input(input) => {
                if matches!(input, Input::Reply { result: Ok(_), .. }) {
                    self.passed_trial();
                }
                self.core.handle(now, input, &mut self.rng, out);
            }
            Msg::ReleaseFetch(session) => self.core.release_fetch(session),
            Msg::AppStatus(status) => {
                if let Some(all) = self.apps.on_status(status) {
                    self.core
                        .handle(now, Input::AppStates(all), &mut self.rng, out);
                }
            }
            Msg::AppFetched { app, ok } => {
                if let Some(all) = self.apps.end_fetch(&app.name, app.version, ok) {
                    self.core
                        .handle(now, Input::AppStates(all), &mut self.rng, out);
                }
                self.core
                    .handle(now, Input::AppFetched { app, ok }, &mut self.rng, out);
            }
            Msg::SetAppStatus(name, desired, reply) => {
                let _ = reply.send(self.apps.set_override(&name, desired, now));
            }
            Msg::GetAppStatus(name, reply) => {
                let _ = reply.send(self.apps.statuses(name.as_deref()));
            }
            Msg::Upgrade(version) => return Some(Ending::Upgrade(version)),
            Msg::Shutdown => return Some(Ending::Shutdown),
        }
        None
    }

    fn passed_trial(&mut self) {
        if self.trial_deadline.take().is_some() {
            tracing::info!(
                "version {} rejoined the cluster: trial passed",
                self.core.version()
            );
            if let Err(e) = self.store.delete(keys::TRIAL) {
                tracing::error!("{e}");
            }
        }
    }

    fn refresh_facts(&mut self, out: &mut Vec<Output>) {
        let facts = LocalFacts {
            overhead: layout::counter(&self.root.join("arrivals")),
            logins: layout::counter(&self.root.join("logins")),
            load: load_average(),
            first_deployed_ms: self.facts.first_deployed_ms,
        };
        if facts != self.facts {
            self.facts = facts.clone();
            self.core
                .handle(now_ms(), Input::LocalFacts(facts), &mut self.rng, out);
        }
    }

    fn control(&mut self, action: ControlAction, out: &mut Vec<Output>) -> Result<String, Refusal> {
        let now = now_ms();
        match action {
            ControlAction::SetLiveTag { enabled } => {
                self.core
                    .handle(now, Input::SetLiveTag { enabled }, &mut self.rng, out);
                let tag = self.core.livetag();
                Ok(format!(
                    "livetag set to {} (version {})",
                    tag.enabled, tag.version
                ))
            }
            ControlAction::SetMembership { blob } => {
                let list =
                    Membership::decode(&blob).map_err(|e| Refusal::Invalid(e.to_string()))?;
                let current = self.core.membership().version;
                if list.version <= current {
                    return Err(Refusal::Invalid(format!(
                        "membership version {} is not newer than {current}",
                        list.version
                    )));
                }
                if let Some((a, b)) = self.config.address_collision(list.machines()) {
                    return Err(Refusal::Invalid(format!(
                        "local machines {a} and {b} would share an address"
                    )));
                }
                let version = list.version;
                self.core.handle(
                    now,
                    Input::SetMembership(Arc::new(list)),
                    &mut self.rng,
                    out,
                );
                Ok(format!("membership version {version} set"))
            }
            ControlAction::PushRelease {
                offset,
                total,
                data,
            } => self.receive_push(offset, total, data),
            ControlAction::PushApp {
                offset,
                total,
                data,
            } => self.receive_app_push(offset, total, data, out),
            ControlAction::SetAppDesired { name, desired } => {
                if !self.core.apps().iter().any(|a| a.name == name) {
                    return Err(Refusal::NotFound(format!(
                        "application {name} is not installed (known here: {})",
                        self.known_apps()
                    )));
                }
                self.core.handle(
                    now,
                    Input::SetAppDesired {
                        name: name.clone(),
                        desired,
                    },
                    &mut self.rng,
                    out,
                );
                Ok(format!(
                    "{name} set {desired} on every machine (through {})",
                    self.me
                ))
            }
            ControlAction::Shutdown => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    // Let the answer reach the console first.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = tx.send(Msg::Shutdown).await;
                });
                Ok(format!("{} stops", self.me))
            }
        }
    }

    fn receive_push(&mut self, offset: u64, total: u64, data: Vec<u8>) -> Result<String, Refusal> {
        let package = match assemble(
            &mut self.push,
            offset,
            total,
            release::MAX_PACKAGE_BYTES,
            &data,
        )? {
            Assembled::Partial(progress) => return Ok(progress),
            Assembled::Complete(package) => package,
        };
        let (_, manifest) = release::verify_package(&package, &self.trusted)
            .map_err(|e| Refusal::Denied(format!("package refused: {e}")))?;
        let version = manifest.version;
        if version <= self.core.version() {
            return Err(Refusal::Invalid(format!(
                "version {version} is not newer than the running {}",
                self.core.version()
            )));
        }
        if self.core.persistent().bad_versions.contains(&version) {
            return Err(Refusal::Denied(format!(
                "version {version} was rolled back here before"
            )));
        }
        layout::store_version(&self.root, version, &package)
            .map_err(|e| Refusal::Busy(e.to_string()))?;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = tx.send(Msg::Upgrade(version)).await;
        });
        Ok(format!("{} verified {version}; upgrading", self.me))
    }

    fn known_apps(&self) -> String {
        let names: Vec<_> = self.core.apps().iter().map(|a| a.name.as_str()).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// A piece of an application package from the console; the whole is verified, installed
    /// here and handed to the core, which spreads it.
    fn receive_app_push(
        &mut self,
        offset: u64,
        total: u64,
        data: Vec<u8>,
        out: &mut Vec<Output>,
    ) -> Result<String, Refusal> {
        let package = match assemble(
            &mut self.app_push,
            offset,
            total,
            app_package::MAX_APP_PACKAGE_BYTES,
            &data,
        )? {
            Assembled::Partial(progress) => return Ok(progress),
            Assembled::Complete(package) => package,
        };
        let app = app_package::verify_app_package(&package, &self.trusted)
            .map_err(|e| Refusal::Denied(format!("package refused: {e}")))?;
        let (name, version) = (app.manifest.name.clone(), app.manifest.version);
        if let Some(known) = self.core.apps().iter().find(|a| a.name == name) {
            if known.version > version {
                return Err(Refusal::Invalid(format!(
                    "{name} {version} is older than the installed {}",
                    known.version
                )));
            }
            if known.version == version {
                let same = std::fs::read(app_install::package_path(&self.root, &name, version))
                    .is_ok_and(|p| p == package);
                return if same {
                    Ok(format!("{name} {version} is already installed"))
                } else {
                    Err(Refusal::Invalid(format!(
                        "{name} {version} is already installed with other contents: give the new one a higher version"
                    )))
                };
            }
        }
        app_install::install(&self.root, &app, &package)
            .map_err(|e| Refusal::Busy(format!("installing {name} {version}: {e}")))?;
        let decl = AppDecl {
            name: name.clone(),
            version,
            desired: app.spec.default_state,
            desired_rev: 0,
        };
        self.core.handle(
            now_ms(),
            Input::AppInstalledLocally(decl),
            &mut self.rng,
            out,
        );
        Ok(format!(
            "{name} {version} verified and installed on {}; it spreads to the other machines",
            self.me
        ))
    }

    /// Carry out the core's outputs; returns how the actor ends, if one of them ends it.
    fn carry_out(&mut self, out: &mut Vec<Output>) -> Result<Option<Ending>, DaemonError> {
        for output in std::mem::take(out) {
            match output {
                Output::SetTimer(at) => self.timer = Some(self.timer.map_or(at, |t| t.min(at))),
                Output::Call { id, to, call } => self.spawn_call(id, to, call),
                Output::Login(machine) => {
                    let (config, tx) = (self.config.clone(), self.tx.clone());
                    tokio::spawn(async move {
                        let outcome = match machine_ops::probe(&config, &machine).await {
                            Ok(probe) => LoginOutcome::Probed(probe),
                            Err(e) => {
                                tracing::info!("login to {machine} failed: {e}");
                                LoginOutcome::Failed
                            }
                        };
                        let _ = tx
                            .send(Msg::Input(Input::LoginDone { machine, outcome }))
                            .await;
                    });
                }
                Output::Deploy { machine, hint } => {
                    let seed = InstallSeed {
                        me: machine.clone(),
                        deployer: self.me.to_string(),
                        config: self.config.clone(),
                        cluster_key: self.key.bytes().to_vec(),
                        membership: self.core.membership().encode(),
                        spread_origin: hint.map(|h| (h.origin, h.membership_version)),
                    };
                    let (config, tx, package) =
                        (self.config.clone(), self.tx.clone(), self.package.clone());
                    tokio::spawn(async move {
                        let result =
                            machine_ops::deploy(&config, &machine, &package.path, &seed).await;
                        match &result {
                            Ok(msg) => tracing::info!("deployed to {machine}: {}", msg.trim()),
                            Err(e) => tracing::warn!("deploying to {machine} failed: {e}"),
                        }
                        let ok = result.is_ok();
                        let _ = tx.send(Msg::Input(Input::DeployDone { machine, ok })).await;
                    });
                }
                Output::Restart(machine) => {
                    let (config, tx) = (self.config.clone(), self.tx.clone());
                    tokio::spawn(async move {
                        let result = machine_ops::restart(&config, &machine).await;
                        match &result {
                            Ok(_) => tracing::info!("restarted the peer of {machine}"),
                            Err(e) => tracing::warn!("restarting {machine} failed: {e}"),
                        }
                        let ok = result.is_ok();
                        let _ = tx
                            .send(Msg::Input(Input::RestartDone { machine, ok }))
                            .await;
                    });
                }
                Output::FetchRelease {
                    from,
                    version,
                    session,
                } => {
                    let addr = self.config.peer_address(&from);
                    let (key, tx, root, trusted) = (
                        self.key.clone(),
                        self.tx.clone(),
                        self.root.clone(),
                        self.trusted.clone(),
                    );
                    tokio::spawn(async move {
                        let ok = match fetch_release(&addr, &key, version, session, &trusted).await
                        {
                            Ok(package) => match layout::store_version(&root, version, &package) {
                                Ok(()) => true,
                                Err(e) => {
                                    tracing::warn!("storing {version}: {e}");
                                    false
                                }
                            },
                            Err(e) => {
                                tracing::info!("fetching {version} from {from}: {e}");
                                false
                            }
                        };
                        let _ = tx.send(Msg::Input(Input::FetchDone { version, ok })).await;
                    });
                }
                Output::Upgrade(version) => return Ok(Some(Ending::Upgrade(version))),
                Output::FetchApp { from, app } => self.fetch_app(from, app),
                Output::AppDesired(app) => self.apps.apply(app),
                Output::MembershipChanged(membership) => {
                    self.store
                        .put_all(&[(keys::MEMBERSHIP, membership.encode())])?;
                    super::ssh::pin_host_keys(membership.clone(), &self.trusted);
                    tracing::info!(
                        "membership version {} ({} machines)",
                        membership.version,
                        membership.len()
                    );
                }
                Output::Persist(state) => self.store.put(keys::STATE, &state)?,
                Output::Exit(reason) => return Ok(Some(Ending::Exit(reason))),
            }
        }
        Ok(None)
    }

    /// Fetch an application from the peer that offered it, verify and install it (one fetch
    /// per version at a time; on failure the next offer tries again).
    fn fetch_app(&mut self, from: MachineId, app: AppDecl) {
        let (started, installing) = self.apps.begin_fetch(&app);
        if !started {
            return;
        }
        // Shown in the machine's record from the actor's next message on.
        if let Some(status) = installing {
            let _ = self.tx.try_send(Msg::AppStatus(status));
        }
        let addr = self.config.peer_address(&from);
        let (key, tx, root, trusted) = (
            self.key.clone(),
            self.tx.clone(),
            self.root.clone(),
            self.trusted.clone(),
        );
        let session: u64 = rand::random();
        tokio::spawn(async move {
            let ok = if app_install::is_installed(&root, &app.name, app.version) {
                true
            } else {
                match app_install::fetch(&addr, &key, &app.name, app.version, session, &trusted)
                    .await
                {
                    Ok((package, verified)) => {
                        let result = tokio::task::spawn_blocking(move || {
                            app_install::install(&root, &verified, &package)
                        })
                        .await;
                        match result {
                            Ok(Ok(())) => {
                                tracing::info!(
                                    "installed {} {} from {from}",
                                    app.name,
                                    app.version
                                );
                                true
                            }
                            Ok(Err(e)) => {
                                tracing::warn!("installing {} {}: {e}", app.name, app.version);
                                false
                            }
                            Err(e) => {
                                tracing::warn!("installing {} {}: {e}", app.name, app.version);
                                false
                            }
                        }
                    }
                    Err(e) => {
                        tracing::info!("fetching {} {} from {from}: {e}", app.name, app.version);
                        false
                    }
                }
            };
            let _ = tx.send(Msg::AppFetched { app, ok }).await;
        });
    }

    fn spawn_call(&self, id: u64, to: MachineId, call: PeerCall) {
        use smon_proto::InvokePeerCall;
        let addr = self.config.peer_address(&to);
        let key = self.key.clone();
        let tx = self.tx.clone();
        let timeout = Duration::from_millis(self.config.ping_timeout_ms);
        tokio::spawn(async move {
            let result = async {
                let client = smon_proto::transport::peer_client(addr.as_str(), &key, timeout)
                    .await
                    .map_err(|_| CallFailure::Unreachable)?;
                let mut ctx = context::current();
                ctx.deadline = std::time::Instant::now() + timeout;
                call.invoke(&client, ctx)
                    .await
                    .map_err(|_| CallFailure::Unreachable)
            }
            .await;
            let _ = tx.send(Msg::Input(Input::Reply { call: id, result })).await;
        });
    }

    fn finish(self, ending: Ending) -> Result<(), DaemonError> {
        let _ = std::fs::remove_file(self.root.join("peer.pid"));
        match ending {
            Ending::Exit(reason) => {
                tracing::info!("exiting: {reason:?}");
                Ok(())
            }
            Ending::Shutdown => {
                tracing::info!("shut down");
                Ok(())
            }
            Ending::Upgrade(version) => {
                layout::switch_to(&self.root, version)?;
                let mut store = self.store;
                store.put(keys::TRIAL, &(version, now_ms()))?;
                tracing::info!("upgrading to {version}");
                Err(reexec(&self.root))
            }
            Ending::Rollback => {
                let version = self.core.version();
                tracing::warn!("version {version} did not rejoin the cluster: rolling back");
                let previous = layout::linked_version(&self.root, "previous").ok_or_else(|| {
                    DaemonError::Start("no previous version to roll back to".into())
                })?;
                let mut state = self.core.persistent().clone();
                state.bad_versions.push(version);
                state.version = previous;
                let mut store = self.store;
                store.put_all(&[(keys::STATE, json(&state))])?;
                store.delete(keys::TRIAL)?;
                layout::set_link(&self.root, "current", previous)?;
                Err(reexec(&self.root))
            }
        }
    }
}

enum Assembled {
    Partial(String),
    Complete(Vec<u8>),
}

/// Add one pushed piece (`offset`, `data`) of a `total`-byte package to `buf`; the whole
/// package once the last piece is in. Pieces must come in order; a first piece restarts.
fn assemble(
    buf: &mut Vec<u8>,
    offset: u64,
    total: u64,
    cap: u64,
    data: &[u8],
) -> Result<Assembled, Refusal> {
    if total > cap {
        return Err(Refusal::Invalid(format!(
            "a package of {total} bytes is over the cap of {cap}"
        )));
    }
    if offset == 0 {
        buf.clear();
    }
    if offset != buf.len() as u64 {
        return Err(Refusal::Invalid(format!(
            "expected offset {}, got {offset}",
            buf.len()
        )));
    }
    if buf.len() as u64 + data.len() as u64 > total {
        return Err(Refusal::Invalid("more data than announced".into()));
    }
    buf.extend_from_slice(data);
    if (buf.len() as u64) < total {
        return Ok(Assembled::Partial(format!(
            "{} of {total} bytes",
            buf.len()
        )));
    }
    Ok(Assembled::Complete(std::mem::take(buf)))
}

/// Replace this process with the current version's peer (same pid, so the pid file holds).
fn reexec(root: &std::path::Path) -> DaemonError {
    let binary = root.join("current").join(layout::PEER_BINARY);
    let err = std::process::Command::new(&binary)
        .arg("run")
        .arg("--root")
        .arg(root)
        .exec();
    DaemonError::Start(format!("exec {}: {err}", binary.display()))
}

/// Fetch a release from a peer in chunks and verify it.
async fn fetch_release(
    addr: &str,
    key: &ClusterKey,
    version: Version,
    session: u64,
    trusted: &ReleasePublicKey,
) -> Result<Vec<u8>, DaemonError> {
    let timeout = Duration::from_secs(10);
    let client = smon_proto::transport::peer_client(addr, key, timeout)
        .await
        .map_err(|e| DaemonError::Fetch(e.to_string()))?;
    let mut package = Vec::new();
    loop {
        let req = smon_proto::ChunkRequest {
            session,
            version,
            offset: package.len() as u64,
            max_len: MAX_CHUNK,
        };
        let mut ctx = context::current();
        ctx.deadline = std::time::Instant::now() + timeout;
        let chunk = client
            .retrieve_peer(ctx, req)
            .await
            .map_err(|e| DaemonError::Fetch(e.to_string()))?
            .map_err(|r| DaemonError::Fetch(r.to_string()))?;
        if chunk.total_len > release::MAX_PACKAGE_BYTES || chunk.data.is_empty() {
            return Err(DaemonError::Fetch(format!(
                "bad chunk (total {})",
                chunk.total_len
            )));
        }
        package.extend_from_slice(&chunk.data);
        if package.len() as u64 >= chunk.total_len {
            break;
        }
    }
    let (_, manifest) = release::verify_package(&package, trusted)
        .map_err(|e| DaemonError::Fetch(format!("refused: {e}")))?;
    if manifest.version != version {
        return Err(DaemonError::Fetch(format!(
            "asked for {version}, got {}",
            manifest.version
        )));
    }
    Ok(package)
}

fn load_average() -> u16 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |l| (l * 100.0).min(u16::MAX as f64) as u16)
}
