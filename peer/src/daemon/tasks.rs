//! The IO tasks the actor spawns for the core's outputs: calls to peers, logins, deployments,
//! restarts and fetches. Each runs on its own and ends by sending the core its result.

use std::{future::Future, time::Duration};

use smon_login::machine_ops;
use smon_proto::{AppDecl, InstallSeed, InvokePeerCall, MachineId, PeerCall, Version, tarpc};

use super::{
    DaemonError,
    actor::{Actor, Msg},
    fetch::Fetcher,
};
use crate::core::{CallFailure, Input, LoginOutcome, SpreadHint};

impl Actor {
    /// Spawn `work`; the message it ends with goes to this actor.
    fn spawn_then(&self, work: impl Future<Output = Msg> + Send + 'static) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let msg = work.await;
            let _ = tx.send(msg).await;
        });
    }

    fn fetcher(&self) -> Fetcher {
        Fetcher {
            key: self.key.clone(),
            trusted: self.trusted.clone(),
            root: self.root.clone(),
        }
    }

    /// Where `machine`'s peer listens, by this peer's membership (which sets its port).
    pub(super) fn address_of(&self, machine: &MachineId) -> String {
        self.config.peer_address(machine, self.core.membership())
    }

    /// Call `to`; the core gets the reply, or `Unreachable`.
    pub(super) fn spawn_call(&self, id: u64, to: MachineId, call: PeerCall) {
        let addr = self.address_of(&to);
        let key = self.key.clone();
        let timeout = Duration::from_millis(self.config.ping_timeout_ms);
        self.spawn_then(async move {
            let result = async {
                let client = smon_proto::transport::peer_client(addr.as_str(), &key, timeout)
                    .await
                    .map_err(|e| {
                        if e.is_local_exhaustion() {
                            tracing::warn!("cannot call {to} from here: {e}");
                            CallFailure::NotSent
                        } else {
                            CallFailure::Unreachable
                        }
                    })?;
                let mut ctx = tarpc::context::current();
                ctx.deadline = std::time::Instant::now() + timeout;
                call.invoke(&client, ctx)
                    .await
                    .map_err(|_| CallFailure::Unreachable)
            }
            .await;
            Msg::Input(Input::Reply { call: id, result })
        });
    }

    /// Log in to `machine` and probe it.
    pub(super) fn spawn_login(&self, machine: MachineId) {
        let login = self.login.clone();
        self.spawn_then(async move {
            let outcome = match machine_ops::probe(&login, &machine).await {
                Ok(probe) => LoginOutcome::Probed(probe),
                Err(e) if smon_proto::chain_is_local_exhaustion(&e) => {
                    tracing::warn!("cannot log in to {machine} from here: {e}");
                    LoginOutcome::NotTried
                }
                Err(e) => {
                    tracing::info!("login to {machine} failed: {e}");
                    LoginOutcome::Failed(smon_proto::Reason::new(&e.to_string()))
                }
            };
            Msg::Input(Input::LoginDone { machine, outcome })
        });
    }

    /// Copy this peer's package and an install seed to `machine` and run the installer.
    /// `over_install`: the probe found another cluster's install there (to be taken over),
    /// or this cluster's on an older key; otherwise none, and the deployment stops if one
    /// was installed since.
    pub(super) fn spawn_deploy(
        &self,
        machine: MachineId,
        hint: Option<SpreadHint>,
        over_install: bool,
    ) {
        let seed = InstallSeed {
            me: machine.clone(),
            deployer: self.me.to_string(),
            config: self.config.clone(),
            cluster_key: self.key.get().encode(),
            membership: self.core.membership().encode(),
            spread_origin: hint.map(|h| (h.origin, h.membership_version)),
        };
        let (login, package) = (self.login.clone(), self.package.clone());
        self.spawn_then(async move {
            let expect = if over_install {
                machine_ops::Expect::Anything
            } else {
                machine_ops::Expect::Empty
            };
            let result = machine_ops::deploy(&login, &machine, &package.path, &seed, expect).await;
            match &result {
                Ok(machine_ops::Deployed::Installed(msg)) => {
                    tracing::info!("deployed to {machine}: {}", msg.trim())
                }
                Ok(machine_ops::Deployed::Overtaken(why)) => {
                    tracing::info!("not deploying to {machine}: {why}")
                }
                Err(e) => tracing::warn!("deploying to {machine} failed: {e}"),
            }
            let ok = result.is_ok();
            Msg::Input(Input::DeployDone { machine, ok })
        });
    }

    /// Start the installed peer of `machine` again.
    pub(super) fn spawn_restart(&self, machine: MachineId) {
        let login = self.login.clone();
        self.spawn_then(async move {
            let result = machine_ops::restart(&login, &machine).await;
            match &result {
                Ok(_) => tracing::info!("restarted the peer of {machine}"),
                Err(e) => tracing::warn!("restarting {machine} failed: {e}"),
            }
            let ok = result.is_ok();
            Msg::Input(Input::RestartDone { machine, ok })
        });
    }

    /// Kill the unresponsive peer process `pid` of `machine` (found by a probe), over a login.
    pub(super) fn spawn_kill(&self, machine: MachineId, pid: u32, silent_for_ms: u64) {
        let login = self.login.clone();
        self.spawn_then(async move {
            let result = machine_ops::kill_peer(&login, &machine, pid).await;
            let silent = humantime::format_duration(Duration::from_millis(silent_for_ms));
            match &result {
                Ok(what) => tracing::warn!(
                    "the peer of {machine} did not answer for {silent}: {}; restarting it",
                    what.trim()
                ),
                Err(e) => tracing::warn!("killing the unresponsive peer of {machine} failed: {e}"),
            }
            let ok = result.is_ok();
            Msg::Input(Input::KillDone { machine, ok })
        });
    }

    /// Fetch release `version` from `from` and store it.
    pub(super) fn spawn_fetch_release(&self, from: MachineId, version: Version, session: u64) {
        let addr = self.address_of(&from);
        let fetcher = self.fetcher();
        self.spawn_then(async move {
            let result = fetcher.release(&addr, version, session).await;
            if let Err(e) = &result {
                log_failure(&format!("fetching {version} from {from}"), e);
            }
            let ok = result.is_ok();
            Msg::Input(Input::FetchDone { version, ok })
        });
    }

    /// Fetch application `app` from the peer that offered it, verify and install it (one
    /// fetch per version at a time; on failure the next offer tries again).
    pub(super) fn spawn_fetch_app(&mut self, from: MachineId, app: AppDecl) {
        let (started, installing) = self.apps.begin_fetch(&app);
        if !started {
            return;
        }
        // Shown in the machine's record from the actor's next message on.
        if let Some(status) = installing {
            let _ = self.tx.try_send(Msg::AppStatus(status));
        }
        let addr = self.address_of(&from);
        let fetcher = self.fetcher();
        let session: u64 = rand::random();
        self.spawn_then(async move {
            let result = fetcher.app(&addr, &app, session).await;
            match &result {
                Ok(()) => tracing::info!("installed {} {} from {from}", app.name, app.version),
                Err(e) => log_failure(&format!("{} {} from {from}", app.name, app.version), e),
            }
            let ok = result.is_ok();
            Msg::AppFetched { app, ok }
        });
    }
}

/// A failed fetch: a warning when this machine failed (its disk), else news (the other peer
/// was busy, gone, or sent something that does not verify; another offer will come).
fn log_failure(what: &str, e: &DaemonError) {
    match e {
        DaemonError::Machine(_) => tracing::warn!("{what}: {e}"),
        _ => tracing::info!("{what}: {e}"),
    }
}
