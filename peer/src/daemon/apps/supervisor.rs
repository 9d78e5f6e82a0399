//! The supervisor of one application on one machine: a task that keeps the application in
//! its desired state and reports every change of what it observes.
//!
//! - `online`: started with `start`; when it stops by itself, started again with `restart`
//!   after the crash-loop backoff; `failed` after too many quick deaths.
//! - `offline`: stopped (the `stop` command, then SIGTERM, then SIGKILL to its group).
//! - `ignore`: started once for this setting, then left alone.
//!
//! A new version replaces the running one (the old is stopped, the new started as desired).
//! After a restart of the peer, the task adopts the process group its predecessor recorded
//! (and kills any other process marked as this application's: nothing is duplicated or
//! orphaned). Processes of the application found in other sessions or groups than its
//! instance's are killed before any start; if some would not end, the application is
//! `failed` (the reason in the peer's log) and not started again while they run.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use smon_proto::{
    AppDecl, AppReport, AppSpec, AppState, AppStatus, DesiredState, MachineId, Reason, Refusal,
};
use tokio::sync::{mpsc, oneshot};

use super::status_sender::StatusSender;
use super::{
    backoff::{Backoff, Verdict},
    install,
    process::{self, Launch},
    report::Reporter,
    runfile::{Override, Proc, RunFile, SettingKey},
};
use crate::daemon::clock::now_ms;

/// How often a live application is looked at (deaths are noticed within this).
const WATCH: Duration = Duration::from_millis(250);
/// A process alive this long (at most `reset_after`) counts as running, when the application
/// has no status command.
const UP_AFTER_MS: u64 = 1_000;
/// How often processes that would not end are tried again.
const UNTRACKED_RETRY: Duration = Duration::from_secs(5);
/// Failed status checks in a row that count as a death.
const STATUS_FAILURES: u32 = 3;

/// What a supervisor needs from its peer.
pub struct AppCtx {
    pub root: PathBuf,
    pub machine: MachineId,
    /// The machine's address, for the application (`SMON_HOST`).
    pub host: String,
    /// Where observed statuses go (the actor).
    pub status: StatusSender,
}

#[derive(Debug)]
pub enum AppCmd {
    /// The cluster-wide declaration changed (version and/or desired state).
    Decl(AppDecl),
    /// A desired state for this machine only. The reply comes once run.json holds it (its
    /// acknowledgement must survive a kill -9), or says why it could not be stored.
    Override(Override, oneshot::Sender<Result<(), Refusal>>),
    /// Stop the application and end supervision (the machine leaves the cluster).
    StopForGood(oneshot::Sender<()>),
}

pub fn spawn(ctx: Arc<AppCtx>, decl: AppDecl) -> mpsc::UnboundedSender<AppCmd> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut sup = Supervisor::new(ctx, decl);
        sup.adopt().await;
        sup.run(rx).await;
    });
    tx
}

struct Supervisor {
    ctx: Arc<AppCtx>,
    name: String,
    run_path: PathBuf,
    decl: AppDecl,
    spec: Option<AppSpec>,
    run: RunFile,
    backoff: Backoff,
    state: AppState,
    retry_at: Option<Instant>,
    next_status_at: Instant,
    status_failures: u32,
    status_ok: bool,
    reporter: Option<Reporter>,
    published: Option<(AppStatus, Option<i32>)>,
    /// Why the application cannot be tracked (processes of it that would not end), if so:
    /// it is then `failed` and not started again.
    untracked: Option<String>,
}

impl Supervisor {
    fn new(ctx: Arc<AppCtx>, decl: AppDecl) -> Self {
        let name = decl.name.clone();
        let run_path = install::app_base(&ctx.root, &name).join("run.json");
        let run = RunFile::load(&run_path);
        let spec = load_spec(&ctx, &decl);
        let policy = spec.as_ref().map(|s| s.backoff).unwrap_or_default();
        let mut sup = Self {
            name,
            run_path,
            decl,
            backoff: Backoff::new(policy, run.quick_deaths),
            run,
            spec,
            state: AppState::Stopped,
            retry_at: None,
            next_status_at: Instant::now(),
            status_failures: 0,
            status_ok: false,
            reporter: None,
            published: None,
            untracked: None,
            ctx,
        };
        sup.update_reporter();
        sup
    }

    /// The desired state in force here, and its revision.
    fn desired(&self) -> (DesiredState, u64) {
        match self.run.over {
            Some(o) if o.rev > self.decl.desired_rev => (o.desired, o.rev),
            _ => (self.decl.desired, self.decl.desired_rev),
        }
    }

    fn key(&self) -> SettingKey {
        (self.decl.version, self.desired().1)
    }

    fn save(&self) {
        let _ = self.try_save();
    }

    /// Write run.json; a failure is logged and returned.
    fn try_save(&self) -> std::io::Result<()> {
        let saved = self.run.save(&self.run_path);
        if let Err(e) = &saved {
            tracing::error!("{}: {e}", self.run_path.display());
        }
        saved
    }

    fn launch(&self, spec: &AppSpec) -> Launch {
        let dir = install::version_dir(&self.ctx.root, &self.name, spec.version);
        let mut env = vec![
            ("SMON_APP_NAME".to_owned(), spec.name.clone()),
            ("SMON_APP_VERSION".to_owned(), spec.version.to_string()),
            ("SMON_MACHINE".to_owned(), self.ctx.machine.to_string()),
            ("SMON_HOST".to_owned(), self.ctx.host.clone()),
        ];
        env.extend(spec.env.iter().cloned());
        Launch {
            dir,
            env,
            log: smon_proto::MachineFiles::new(&self.ctx.root).app_log(&self.name),
            bound: spec.log,
        }
    }

    fn update_reporter(&mut self) {
        let wanted = self.spec.as_ref().and_then(|s| s.report.clone());
        if self.reporter.as_ref().map(|r| &r.address) != wanted.as_ref() {
            self.reporter = wanted.map(Reporter::new);
        }
    }

    /// Find the application's processes left by a previous peer: adopt the recorded group,
    /// kill any other (an orphan of a crash between a start and its record).
    async fn adopt(&mut self) {
        let base = self.base();
        let groups = process::marked_groups(&base);
        let recorded = self.run.proc.filter(|p| groups.contains_key(&p.pgid));
        let adopted = match recorded {
            Some(p) => Some(p),
            None => {
                if let Some(p) = self.run.proc.take() {
                    // It died while no peer watched it.
                    self.on_death(p);
                }
                let current = install::version_dir(&self.ctx.root, &self.name, self.decl.version);
                let pick = groups
                    .iter()
                    .find(|(_, dir)| **dir == current)
                    .or_else(|| groups.iter().next())
                    .map(|(&pgid, dir)| Proc {
                        pgid,
                        version: dir
                            .file_name()
                            .and_then(|v| v.to_str()?.parse().ok())
                            .unwrap_or(self.decl.version),
                        started_ms: now_ms(),
                    });
                if let Some(p) = pick {
                    tracing::warn!(
                        "{}: adopting unrecorded process group {}",
                        self.name,
                        p.pgid
                    );
                }
                pick
            }
        };
        if let Some(p) = adopted {
            tracing::info!("{}: adopted running process group {}", self.name, p.pgid);
        }
        self.run.proc = adopted;
        self.save();
        self.end_strays(adopted.map(|p| p.pgid)).await;
    }

    /// The application's directory of versions (what its processes' marker names).
    fn base(&self) -> PathBuf {
        install::app_base(&self.ctx.root, &self.name)
    }

    /// Kill the application's processes that are not of the instance led by `leader` (all
    /// of them without one): at most one instance runs. Those that would not end make the
    /// application untracked: it is not started again while they live.
    async fn end_strays(&mut self, leader: Option<i32>) -> bool {
        let base = self.base();
        let strays = process::strays(leader, &base);
        if strays.is_empty() {
            self.untracked = None;
            return true;
        }
        tracing::warn!(
            "{}: killing processes left from another start: {strays:?}",
            self.name
        );
        let left = process::kill_strays(leader, &base).await;
        self.set_untracked(&left);
        left.is_empty()
    }

    /// Processes of the application that could not be ended, or none.
    fn set_untracked(&mut self, left: &std::collections::BTreeSet<i32>) {
        self.untracked = (!left.is_empty()).then(|| {
            let why = format!("processes {left:?} of the application could not be stopped");
            tracing::error!(
                "{}: {why}; it is not started again while they run",
                self.name
            );
            why
        });
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<AppCmd>) {
        loop {
            self.reconcile().await;
            self.publish().await;
            let wait = if self.run.proc.is_some() {
                WATCH
            } else if let Some(at) = self.retry_at {
                at.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(10))
            } else {
                Duration::from_secs(3600)
            };
            let mut cmds = Vec::new();
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => cmds.push(cmd),
                    None => return,
                },
                _ = tokio::time::sleep(wait) => {}
            }
            // Take every queued command before acting.
            while let Ok(cmd) = rx.try_recv() {
                cmds.push(cmd);
            }
            for cmd in cmds {
                if let AppCmd::StopForGood(done) = cmd {
                    self.stop().await;
                    self.state = AppState::Stopped;
                    self.publish().await;
                    let _ = done.send(());
                    return;
                }
                self.on_cmd(cmd);
            }
        }
    }

    fn on_cmd(&mut self, cmd: AppCmd) {
        let before = self.key();
        let mut reply = None;
        match cmd {
            AppCmd::Decl(decl) => {
                if decl.version != self.decl.version {
                    self.decl = decl;
                    self.spec = load_spec(&self.ctx, &self.decl);
                    if let Some(spec) = &self.spec {
                        self.backoff.set_policy(spec.backoff);
                    }
                    self.update_reporter();
                } else {
                    self.decl = decl;
                }
                if self
                    .run
                    .over
                    .is_some_and(|o| o.rev <= self.decl.desired_rev)
                {
                    self.run.over = None; // a newer cluster-wide setting
                }
            }
            AppCmd::Override(o, done) => {
                self.run.over = Some(o);
                reply = Some(done);
            }
            AppCmd::StopForGood(_) => {} // handled by the loop
        }
        if self.key() != before {
            // The operator acted: a fresh start, whatever happened before.
            self.backoff.reset();
            self.run.quick_deaths = 0;
            self.retry_at = None;
        }
        let saved = self.try_save();
        if let Some(reply) = reply {
            let _ = reply.send(saved.map_err(|e| {
                Refusal::Busy(format!(
                    "could not store it in {}: {e}",
                    self.run_path.display()
                ))
            }));
        }
    }

    /// Has the process been up long enough (or said so through its status command)?
    fn is_up(&self, p: &Proc, spec: &AppSpec) -> bool {
        if spec.status.is_some() {
            self.status_ok
        } else {
            now_ms().saturating_sub(p.started_ms) >= UP_AFTER_MS.min(spec.backoff.reset_after_ms)
        }
    }

    async fn reconcile(&mut self) {
        // Observe.
        if let Some(p) = self.run.proc {
            let mut dead = !process::group_alive(p.pgid);
            if !dead && p.version == self.decl.version && !self.status_healthy(&p).await {
                tracing::warn!("{}: status check failed {STATUS_FAILURES} times", self.name);
                let grace = self.stop_timeout();
                let left = process::terminate_app(Some(p.pgid), &self.base(), grace).await;
                self.set_untracked(&left);
                dead = true;
            }
            if dead {
                self.run.proc = None;
                self.on_death(p);
                self.save();
            }
        }
        if self.untracked.is_some() && self.run.proc.is_none() && !self.end_strays(None).await {
            // Processes of it that would not end: never a second instance beside them.
            self.state = AppState::Failed;
            self.retry_at = Some(Instant::now() + UNTRACKED_RETRY);
            return;
        }
        let Some(spec) = self.spec.clone() else {
            // The declared version is not installed here (its files were removed?).
            self.state = AppState::Failed;
            return;
        };
        // A process of another version is replaced.
        if self.run.proc.is_some_and(|p| p.version != spec.version) {
            self.stop().await;
        }
        let key = self.key();
        match self.desired().0 {
            DesiredState::Offline => {
                if self.run.proc.is_some() {
                    self.stop().await;
                }
                self.retry_at = None;
                self.state = AppState::Stopped;
            }
            DesiredState::Online => {
                if let Some(p) = self.run.proc {
                    self.state = if self.is_up(&p, &spec) {
                        AppState::Running
                    } else {
                        AppState::Starting
                    };
                } else if self.run.failed == Some(key) {
                    self.state = AppState::Failed;
                } else if let Some(at) = self.retry_at {
                    if Instant::now() >= at {
                        self.run.restarts += 1;
                        self.start(&spec, spec.restart_command().to_owned()).await;
                    } else {
                        self.state = AppState::Backoff;
                    }
                } else {
                    self.start(&spec, spec.start.clone()).await;
                }
            }
            DesiredState::Ignore => {
                if let Some(p) = self.run.proc {
                    self.state = if self.is_up(&p, &spec) {
                        AppState::Running
                    } else {
                        AppState::Starting
                    };
                } else if self.run.ignore_started == Some(key) {
                    self.state = AppState::Stopped;
                } else {
                    self.run.ignore_started = Some(key);
                    self.start(&spec, spec.start.clone()).await;
                }
            }
        }
    }

    async fn start(&mut self, spec: &AppSpec, command: String) {
        self.retry_at = None;
        // At most one instance: what an earlier start left behind ends first.
        if !self.end_strays(None).await {
            self.state = AppState::Failed;
            self.retry_at = Some(Instant::now() + UNTRACKED_RETRY);
            return;
        }
        let launch = self.launch(spec);
        match process::spawn_group(&command, &launch) {
            Ok(pgid) => {
                tracing::info!(
                    "{}: started {} (process group {pgid})",
                    self.name,
                    spec.version
                );
                self.run.proc = Some(Proc {
                    pgid,
                    version: spec.version,
                    started_ms: now_ms(),
                });
                self.state = AppState::Starting;
                self.status_ok = false;
                self.status_failures = 0;
                self.next_status_at =
                    Instant::now() + Duration::from_millis(spec.status_interval_ms.min(1_000));
            }
            Err(e) => {
                tracing::warn!("{}: cannot start: {e}", self.name);
                self.on_death(Proc {
                    pgid: 0,
                    version: spec.version,
                    started_ms: now_ms(),
                });
            }
        }
        self.save();
    }

    /// The application stopped by itself (or could not start).
    fn on_death(&mut self, p: Proc) {
        let ran = now_ms().saturating_sub(p.started_ms);
        tracing::info!("{}: stopped after {ran} ms", self.name);
        self.state = AppState::Stopped;
        if self.desired().0 != DesiredState::Online || p.version != self.decl.version {
            return;
        }
        match self.backoff.on_death(ran) {
            Verdict::RestartAfter(ms) => {
                self.retry_at = Some(Instant::now() + Duration::from_millis(ms));
                self.state = AppState::Backoff;
            }
            Verdict::Fail => {
                tracing::warn!(
                    "{}: failed ({} quick deaths in a row); left stopped",
                    self.name,
                    self.backoff.quick_deaths()
                );
                self.run.failed = Some(self.key());
                self.retry_at = None;
                self.state = AppState::Failed;
            }
        }
        self.run.quick_deaths = self.backoff.quick_deaths();
    }

    fn stop_timeout(&self) -> Duration {
        Duration::from_millis(self.spec.as_ref().map_or(10_000, |s| s.stop_timeout_ms))
    }

    /// Stop the running process group: the stop command of its version, then SIGTERM and
    /// SIGKILL to the whole group.
    async fn stop(&mut self) {
        let Some(p) = self.run.proc else { return };
        let spec = if Some(p.version) == self.spec.as_ref().map(|s| s.version) {
            self.spec.clone()
        } else {
            install::load_spec(&self.ctx.root, &self.name, p.version).ok()
        };
        let grace = Duration::from_millis(spec.as_ref().map_or(10_000, |s| s.stop_timeout_ms));
        if let Some(spec) = &spec
            && let Some(stop) = &spec.stop
            && process::group_alive(p.pgid)
        {
            let launch = self.launch(spec);
            let extra = [("SMON_APP_PGID", p.pgid.to_string())];
            process::run_command(stop, &launch, &extra, grace).await;
            process::wait_gone(p.pgid, grace).await;
        }
        // Whatever is left of it (its group, what it left in other sessions, what carries
        // its marker): SIGTERM, then SIGKILL.
        let left = process::terminate_app(Some(p.pgid), &self.base(), grace).await;
        self.set_untracked(&left);
        tracing::info!("{}: stopped process group {}", self.name, p.pgid);
        self.run.proc = None;
        self.save();
        if p.version != self.decl.version {
            install::prune(&self.ctx.root, &self.name, &[self.decl.version, p.version]);
        }
    }

    /// Run the status command when it is due; false after `STATUS_FAILURES` failures in a row.
    async fn status_healthy(&mut self, p: &Proc) -> bool {
        let Some(spec) = self.spec.clone() else {
            return true;
        };
        let Some(status) = &spec.status else {
            return true;
        };
        if Instant::now() < self.next_status_at {
            return true;
        }
        let interval = Duration::from_millis(spec.status_interval_ms);
        let launch = self.launch(&spec);
        let extra = [("SMON_APP_PGID", p.pgid.to_string())];
        let ok = process::run_command(
            status,
            &launch,
            &extra,
            interval.min(Duration::from_secs(10)),
        )
        .await;
        self.next_status_at = Instant::now() + interval;
        if ok {
            self.status_ok = true;
            self.status_failures = 0;
            true
        } else {
            self.status_ok = false;
            self.status_failures += 1;
            self.status_failures < STATUS_FAILURES
        }
    }

    /// Tell the peer (and the report address) when what we observe changed.
    async fn publish(&mut self) {
        let status = AppStatus {
            name: self.name.clone(),
            version: self.decl.version,
            desired: self.desired().0,
            state: self.state,
            restarts: self.run.restarts,
            reason: self.untracked.as_deref().map(Reason::new),
        };
        let pid = self.run.proc.map(|p| p.pgid);
        if self.published.as_ref() == Some(&(status.clone(), pid)) {
            return;
        }
        if let Some(reporter) = &self.reporter {
            reporter.send(&AppReport {
                machine: self.ctx.machine.to_string(),
                app: status.name.clone(),
                version: status.version.to_string(),
                desired: status.desired,
                state: status.state,
                restarts: status.restarts,
                pid,
                at_ms: now_ms(),
            });
        }
        self.published = Some((status.clone(), pid));
        self.ctx.status.send(status).await;
    }
}

fn load_spec(ctx: &AppCtx, decl: &AppDecl) -> Option<AppSpec> {
    match install::load_spec(&ctx.root, &decl.name, decl.version) {
        Ok(spec) => Some(spec),
        Err(e) => {
            tracing::error!("{} {}: {e}", decl.name, decl.version);
            None
        }
    }
}
