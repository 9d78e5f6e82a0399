//! The actor that owns a peer's core: its loop feeds the core with timers, calls from the
//! network and the results of IO tasks; its dispatcher hands each output of the core to the
//! code that carries it out, one line per output. That code lives beside it: `control.rs`
//! (operator control, pushed packages), `tasks.rs` (IO tasks), `fetch.rs` (the chunked fetch
//! client), `upgrade.rs` (how the actor ends: upgrade, rollback, re-exec).

use std::{path::PathBuf, sync::Arc, time::Duration};

use rand::{SeedableRng, rngs::Xoshiro256PlusPlus};
use smon_login::{Login, SshContext, host_keys::KNOWN_HOSTS, layout};
use smon_proto::{
    AppDecl, AppStatus, ClusterConfig, ClusterView, ControlAction, KeyringHandle,
    MachineAppDesired, MachineId, Membership, PeerCall, PeerCounters, PeerReply, Refusal,
    ReleasePublicKey, Version, ZoneRecords, ZoneRecordsRequest,
    chunked::{Assembly, Kind},
    door::Door,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    DaemonError,
    apps::{self, Apps},
    clock::now_ms,
    counters,
    loader::Loaded,
    own_package::OwnPackage,
    store::{Store, keys},
};
use crate::core::{Boot, Core, CoreConfig, ExitReason, Input, LocalFacts, Millis, Output};

pub enum Msg {
    /// A call from another peer (or a client speaking as one), and the connection's address.
    Call(
        PeerCall,
        Option<std::net::SocketAddr>,
        oneshot::Sender<PeerReply>,
    ),
    View(u64, oneshot::Sender<ClusterView>),
    ZoneRecords(
        ZoneRecordsRequest,
        oneshot::Sender<Result<ZoneRecords, Refusal>>,
    ),
    Control(ControlAction, oneshot::Sender<Result<String, Refusal>>),
    /// Where a machine's peer listens (None: not in the membership), for a relayed call.
    PeerAddress(MachineId, oneshot::Sender<Option<String>>),
    Input(Input),
    ReleaseFetch(u64),
    /// A supervisor observed a change of its application.
    AppStatus(AppStatus),
    /// An application fetch (and install) finished.
    AppFetched {
        app: AppDecl,
        ok: bool,
    },
    /// `set_app_status`: a desired state for this machine only, signed.
    SetAppStatus(MachineAppDesired, oneshot::Sender<Result<(), Refusal>>),
    GetAppStatus(Option<String>, oneshot::Sender<Vec<AppStatus>>),
    /// Switch to an installed version and re-execute into it.
    Upgrade(Version),
    /// Stop this peer; with `stop_apps`, its applications first.
    Shutdown {
        stop_apps: bool,
    },
}

pub struct Actor {
    pub root: PathBuf,
    pub me: MachineId,
    pub config: ClusterConfig,
    pub key: KeyringHandle,
    pub trusted: ReleasePublicKey,
    /// How this peer logs in to other machines; updated when a signed membership pins keys.
    pub login: Login,
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
    /// A release package being pushed by the console.
    pub push: Assembly,
    pub apps: Apps,
    /// The address of the connection whose call is being handled (named when the core
    /// refuses control state it sent); cleared once its outputs are carried out.
    pub caller: Option<std::net::SocketAddr>,
    /// An application package being pushed by the console.
    pub app_push: Assembly,
    /// The address this peer listens on (its port depends on the membership).
    pub listen: String,
    /// This peer's own counters since it started (`counters.rs`).
    pub counters: PeerCounters,
    /// The listener's door: its counts go into every view with the counters.
    pub door: Arc<Door>,
}

pub enum Ending {
    Exit(ExitReason),
    Shutdown {
        stop_apps: bool,
    },
    Upgrade(Version),
    Rollback,
    /// A new membership moved this machine's port: start again to listen there.
    Rebind(String),
}

impl Actor {
    /// The actor of the peer `loaded` from `root`, with its core started at `now`, and the
    /// core's first outputs. Starts the supervisors of the applications the core knows.
    pub fn new(
        root: &std::path::Path,
        loaded: Loaded,
        store: Store,
        (tx, rx): (mpsc::Sender<Msg>, mpsc::Receiver<Msg>),
        door: Arc<Door>,
        now: Millis,
    ) -> (Self, Vec<Output>) {
        let Loaded {
            identity: id,
            package,
            state,
            first_deployed,
            hint,
            trial_deadline,
        } = loaded;
        let listen = id.config.peer_address(&id.me, &id.membership);
        let membership = Arc::new(id.membership);
        let mut login = Login::new(
            id.config.clone(),
            SshContext {
                key: id.key.clone(),
                requester: id.me.clone(),
                known_hosts: root.join(KNOWN_HOSTS),
            },
        );
        login.pin_host_keys(membership.clone(), &id.trusted);
        let facts = LocalFacts {
            overhead: layout::counter(&root.join("arrivals")),
            logins: layout::counter(&root.join("logins")),
            load: 0,
            first_deployed_ms: Some(first_deployed),
        };
        let boot = Boot {
            me: id.me.clone(),
            state,
            membership,
            facts: facts.clone(),
            hint,
            signatures: Arc::new(super::signatures::ReleaseKeySignatures(id.trusted.clone())),
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(rand::random());
        let mut core = Core::new(core_config(&id.config), boot, now);
        let mut initial = Vec::new();
        core.start(now, &mut rng, &mut initial);
        let apps = Apps::start(
            apps::supervisor::AppCtx {
                root: root.to_owned(),
                machine: id.me.clone(),
                host: id.config.machine_host(&id.me),
                status: apps::status_sender::StatusSender::new(tx.clone(), Msg::AppStatus),
            },
            core.apps(),
        );
        let actor = Actor {
            root: root.to_owned(),
            me: id.me,
            config: id.config,
            key: id.key,
            trusted: id.trusted,
            login,
            core,
            store,
            package,
            tx,
            rx,
            rng,
            timer: None,
            trial_deadline,
            facts,
            push: Assembly::new(Kind::Release),
            apps,
            app_push: Assembly::new(Kind::App),
            caller: None,
            listen,
            counters: PeerCounters::default(),
            door,
        };
        (actor, initial)
    }

    pub async fn run(mut self, initial: Vec<Output>) -> Result<(), DaemonError> {
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(DaemonError::Signal)?;
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
                    let Some(msg) = msg else { break Ending::Shutdown { stop_apps: false } };
                    if let Some(ending) = self.on_msg(msg, &mut out) {
                        break ending;
                    }
                }
                // A signal (systemd, an operator's kill) stops the peer only: a peer started
                // again adopts the applications, as after an upgrade.
                _ = sigterm.recv() => break Ending::Shutdown { stop_apps: false },
            }
        };
        // A machine no longer managed would leave orphans; `shutdown` stops them unless told
        // to keep them.
        if matches!(
            ending,
            Ending::Exit(ExitReason::RemovedFromMembership) | Ending::Shutdown { stop_apps: true }
        ) {
            self.apps.stop_all().await;
        }
        self.finish(ending)
    }

    fn on_msg(&mut self, msg: Msg, out: &mut Vec<Output>) -> Option<Ending> {
        let now = now_ms();
        match msg {
            Msg::Call(call, caller, reply) => {
                self.caller = caller;
                let from_peer = matches!(call, PeerCall::Ping(_));
                let call_bytes = smon_proto::wire_size(&call);
                let answer = self.core.on_call(now, call, &mut self.rng, out);
                counters::on_call(&mut self.counters, call_bytes, &answer);
                let _ = reply.send(answer);
                if from_peer {
                    self.passed_trial();
                }
            }
            Msg::View(since, reply) => {
                let mut view = self.core.cluster_view(since);
                view.peer = PeerCounters {
                    door: self.door.counts(),
                    ..self.counters
                };
                let _ = reply.send(view);
            }
            Msg::ZoneRecords(req, reply) => {
                let _ = reply.send(self.core.zone_records(&req));
            }
            Msg::PeerAddress(machine, reply) => {
                let member = self.core.membership().index_of(&machine).is_some();
                let _ = reply.send(member.then(|| self.address_of(&machine)));
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
                counters::on_input(&mut self.counters, &input);
                self.core.handle(now, input, &mut self.rng, out);
            }
            Msg::ReleaseFetch(session) => self.core.release_fetch(session),
            Msg::AppStatus(status) => {
                if let Some(all) = self.apps.on_status(status) {
                    self.core
                        .handle(now, Input::AppStates(all), &mut self.rng, out);
                }
            }
            Msg::AppFetched { mut app, ok } => {
                // Revision 0 is the package's own default state, whatever an offer said.
                if ok
                    && app.desired_rev == 0
                    && let Ok(spec) = apps::install::load_spec(&self.root, &app.name, app.version)
                {
                    app.desired = spec.default_state;
                }
                if let Some(all) = self.apps.end_fetch(&app.name, app.version, ok) {
                    self.core
                        .handle(now, Input::AppStates(all), &mut self.rng, out);
                }
                self.core
                    .handle(now, Input::AppFetched { app, ok }, &mut self.rng, out);
            }
            Msg::SetAppStatus(desired, reply) => {
                match self.core.check_machine_app_desired(&desired, out) {
                    Ok(()) => {
                        self.apps
                            .set_override(&desired.name, desired.desired, desired.rev, reply)
                    }
                    Err(refused) => {
                        let _ = reply.send(Err(Refusal::Denied(refused.to_string())));
                    }
                }
            }
            Msg::GetAppStatus(name, reply) => {
                let _ = reply.send(self.apps.statuses(name.as_deref()));
            }
            Msg::Upgrade(version) => return Some(Ending::Upgrade(version)),
            Msg::Shutdown { stop_apps } => return Some(Ending::Shutdown { stop_apps }),
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

    /// Carry out the core's outputs; returns how the actor ends, if one of them ends it.
    fn carry_out(&mut self, out: &mut Vec<Output>) -> Result<Option<Ending>, DaemonError> {
        for output in std::mem::take(out) {
            counters::on_output(&mut self.counters, &output);
            match output {
                Output::SetTimer(at) => self.timer = Some(self.timer.map_or(at, |t| t.min(at))),
                Output::Call { id, to, call } => self.spawn_call(id, to, call),
                Output::Login(machine) => self.spawn_login(machine),
                Output::Deploy {
                    machine,
                    hint,
                    over_other_cluster,
                    over_stale_key,
                } => self.spawn_deploy(machine, hint, over_other_cluster || over_stale_key),
                Output::Restart(machine) => self.spawn_restart(machine),
                Output::Unresponsive {
                    machine,
                    silent_pings,
                    silent_for_ms,
                } => tracing::warn!(
                    "UNRESPONSIVE: the peer of {machine} runs but left {silent_pings} pings in a \
                     row unanswered over {}: killed and restarted after {} of silence",
                    humantime::format_duration(Duration::from_millis(silent_for_ms)),
                    humantime::format_duration(Duration::from_millis(
                        self.config.unresponsive_grace_ms()
                    )),
                ),
                Output::Kill {
                    machine,
                    pid,
                    silent_for_ms,
                } => self.spawn_kill(machine, pid, silent_for_ms),
                Output::FetchRelease {
                    from,
                    version,
                    session,
                } => self.spawn_fetch_release(from, version, session),
                Output::Upgrade(version) => return Ok(Some(Ending::Upgrade(version))),
                Output::FetchApp { from, app } => self.spawn_fetch_app(from, app),
                Output::AppDesired(app) => self.apps.apply(app),
                Output::MembershipChanged(membership) => {
                    if let Some(ending) = self.membership_changed(membership)? {
                        return Ok(Some(ending));
                    }
                }
                Output::OtherCluster { machine, message } => {
                    tracing::warn!("{machine}: not restarted, killed or deployed over: {message}")
                }
                Output::Conflict { asked, answered_by } => tracing::warn!(
                    "CONFLICT: pinging {asked} at {} reached the peer of {answered_by}: two \
                     machines share that address and port ({asked} is not deployed over)",
                    self.address_of(&asked)
                ),
                Output::Persist(state) => self.store.put(keys::STATE, &state)?,
                Output::Exit(reason) => return Ok(Some(Ending::Exit(reason))),
                Output::Rekey(rekey) => self.adopt_rekey(&rekey)?,
                Output::Refused(refused) => match self.caller {
                    Some(addr) => tracing::warn!("{refused} (connection from {addr})"),
                    None => tracing::warn!("{refused}"),
                },
            }
        }
        self.caller = None;
        Ok(None)
    }

    /// Store a new membership, and log in with the host keys it pins (if it is signed). When
    /// it moves this machine's port (accounts of its host added or removed before it), the
    /// peer ends to start again listening there.
    fn membership_changed(
        &mut self,
        membership: Arc<Membership>,
    ) -> Result<Option<Ending>, DaemonError> {
        self.store
            .put_all(&[(keys::MEMBERSHIP, membership.encode())])?;
        self.login.pin_host_keys(membership.clone(), &self.trusted);
        tracing::info!(
            "membership version {} ({} machines)",
            membership.version,
            membership.len()
        );
        let addr = self.config.peer_address(&self.me, &membership);
        Ok((addr != self.listen).then_some(Ending::Rebind(addr)))
    }
}

/// The core's tunables that the cluster's settings give.
fn core_config(config: &ClusterConfig) -> CoreConfig {
    CoreConfig {
        interval_ms: config.interval_ms,
        removed_exit_after_ms: config.removed_exit_after_ms,
        disabled_exit_after_ms: config.disabled_exit_after_ms,
        unresponsive_grace_ms: config.unresponsive_grace_ms(),
        take_over: config.take_over,
        ..CoreConfig::default()
    }
}

fn load_average() -> u16 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |l| (l * 100.0).min(u16::MAX as f64) as u16)
}
