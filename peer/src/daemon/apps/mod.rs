//! Applications on a machine: packages installed under `ROOT/apps/`, one supervisor task per
//! application, and the states they report, which go into the machine's gossiped record at
//! once.
//!
//! ```text
//! ROOT/apps/<name>/<version>/     the installed files: the commands' working directory
//! ROOT/apps/<name>/<version>.pkg  the verified package, served to peers that fetch it
//! ROOT/apps/<name>/run.json       the supervisor's record (process group, crash loop, override)
//! ROOT/apps/<name>/app.log        the commands' standard output and error, written by
//!                                 `smon-peer app-run` (`runner.rs`), rotated by `[log]`
//! ```

pub mod backoff;
pub mod install;
pub mod process;
pub mod report;
pub mod runfile;
pub mod runner;
pub mod status_sender;
pub mod supervisor;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use smon_proto::{AppDecl, AppState, AppStatus, DesiredState, Refusal, Version};
use tokio::sync::{mpsc, oneshot};

use runfile::Override;
use supervisor::{AppCmd, AppCtx};

/// The actor's side of the applications.
pub struct Apps {
    ctx: Arc<AppCtx>,
    tasks: BTreeMap<String, (AppDecl, mpsc::UnboundedSender<AppCmd>)>,
    statuses: BTreeMap<String, AppStatus>,
    fetching: BTreeSet<(String, Version)>,
}

impl Apps {
    /// Start supervising the applications the peer knows (after a restart: adopting their
    /// running processes). Must be called inside the tokio runtime.
    pub fn start(ctx: AppCtx, decls: &[AppDecl]) -> Self {
        let mut apps = Self {
            ctx: Arc::new(ctx),
            tasks: BTreeMap::new(),
            statuses: BTreeMap::new(),
            fetching: BTreeSet::new(),
        };
        for decl in decls {
            apps.apply(decl.clone());
        }
        apps
    }

    /// The cluster-wide declaration of an application changed (or it is new here).
    pub fn apply(&mut self, decl: AppDecl) {
        match self.tasks.get_mut(&decl.name) {
            Some((known, tx)) => {
                *known = decl.clone();
                let _ = tx.send(AppCmd::Decl(decl));
            }
            None => {
                let tx = supervisor::spawn(self.ctx.clone(), decl.clone());
                self.tasks.insert(decl.name.clone(), (decl, tx));
            }
        }
    }

    /// `set_app_status`: a desired state for this machine only, at the operator's signed
    /// revision `rev` (checked by the core). It wins over the cluster's setting until a newer
    /// cluster-wide setting arrives; one not newer than the cluster's is refused. `reply` gets the answer once the
    /// supervisor has stored it in run.json (an acknowledgement survives a kill -9), without
    /// holding up the caller meanwhile.
    pub fn set_override(
        &mut self,
        name: &str,
        desired: DesiredState,
        rev: u64,
        reply: oneshot::Sender<Result<(), Refusal>>,
    ) {
        let Some((decl, tx)) = self.tasks.get(name) else {
            let _ = reply.send(Err(Refusal::NotFound(format!(
                "application {name} is not installed on {}",
                self.ctx.machine
            ))));
            return;
        };
        if rev <= decl.desired_rev {
            let _ = reply.send(Err(Refusal::Invalid(format!(
                "revision {rev} is not newer than the cluster-wide setting's {}",
                decl.desired_rev
            ))));
            return;
        }
        if let Err(mpsc::error::SendError(AppCmd::Override(_, reply))) =
            tx.send(AppCmd::Override(Override { desired, rev }, reply))
        {
            let _ = reply.send(Err(Refusal::Busy(format!(
                "the supervisor of {name} is gone"
            ))));
        }
    }

    /// A supervisor reported; the full list if anything changed.
    pub fn on_status(&mut self, status: AppStatus) -> Option<Vec<AppStatus>> {
        if self.statuses.get(&status.name) == Some(&status) {
            return None;
        }
        self.statuses.insert(status.name.clone(), status);
        Some(self.statuses.values().cloned().collect())
    }

    pub fn statuses(&self, name: Option<&str>) -> Vec<AppStatus> {
        self.statuses
            .values()
            .filter(|s| name.is_none_or(|n| s.name == n))
            .cloned()
            .collect()
    }

    /// Stop every application and wait for it (the machine leaves the cluster).
    pub async fn stop_all(&mut self) {
        let mut waits = Vec::new();
        for (name, (_, tx)) in &self.tasks {
            let (done, wait) = tokio::sync::oneshot::channel();
            if tx.send(AppCmd::StopForGood(done)).is_ok() {
                waits.push((name.clone(), wait));
            }
        }
        for (name, wait) in waits {
            if tokio::time::timeout(std::time::Duration::from_secs(60), wait)
                .await
                .is_err()
            {
                tracing::warn!("{name} did not stop within 60 s");
            }
        }
    }

    /// Note a fetch of `app`; false when one is already under way. An application new to
    /// this machine shows as `installing` meanwhile: its status, for [`Apps::on_status`].
    pub fn begin_fetch(&mut self, app: &AppDecl) -> (bool, Option<AppStatus>) {
        if !self.fetching.insert((app.name.clone(), app.version)) {
            return (false, None);
        }
        let new_here =
            !self.statuses.contains_key(&app.name) && !self.tasks.contains_key(&app.name);
        let installing = new_here.then(|| AppStatus {
            name: app.name.clone(),
            version: app.version,
            desired: app.desired,
            state: AppState::Installing,
            restarts: 0,
            reason: None,
        });
        (true, installing)
    }

    /// The fetch of `name` `version` ended; after a failure, an `installing` status is taken
    /// back (the next offer tries again): the full list if it changed.
    pub fn end_fetch(&mut self, name: &str, version: Version, ok: bool) -> Option<Vec<AppStatus>> {
        self.fetching.remove(&(name.to_owned(), version));
        let installing = self
            .statuses
            .get(name)
            .is_some_and(|s| s.state == AppState::Installing && s.version == version);
        if ok || !installing {
            return None;
        }
        self.statuses.remove(name);
        Some(self.statuses.values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(version: u32) -> AppDecl {
        AppDecl {
            name: "web".into(),
            version: Version::new(version, 0, 0),
            desired: DesiredState::Online,
            desired_rev: 1,
            desired_sig: Vec::new(),
        }
    }

    fn ctx(root: &std::path::Path) -> AppCtx {
        let (tx, rx) = mpsc::channel(64);
        std::mem::forget(rx); // the statuses are not looked at here
        AppCtx {
            root: root.to_owned(),
            machine: smon_proto::MachineId::local("m1"),
            host: "127.0.0.1".into(),
            status: status_sender::StatusSender::new(tx, |status| status),
        }
    }

    #[tokio::test]
    async fn a_machine_setting_is_acknowledged_once_run_json_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut apps = Apps::start(ctx(dir.path()), &[decl(1)]);
        let run_path = install::app_base(dir.path(), "web").join("run.json");
        for desired in [
            DesiredState::Ignore,
            DesiredState::Offline,
            DesiredState::Ignore,
        ] {
            let (reply, answer) = oneshot::channel();
            apps.set_override("web", desired, 100, reply);
            answer.await.unwrap().unwrap();
            // What a kill -9 right after the acknowledgement would leave.
            let stored = runfile::RunFile::load(&run_path).over.map(|o| o.desired);
            assert_eq!(stored, Some(desired));
        }
        let (reply, answer) = oneshot::channel();
        apps.set_override("db", DesiredState::Offline, 100, reply);
        let refusal = answer.await.unwrap().unwrap_err().to_string();
        assert!(refusal.contains("db is not installed on"), "{refusal}");
    }

    #[tokio::test]
    async fn a_new_application_shows_installing_until_its_fetch_fails_or_it_runs() {
        let (tx, _rx) = mpsc::channel(8);
        let dir = tempfile::tempdir().unwrap();
        let mut apps = Apps::start(
            AppCtx {
                root: dir.path().to_owned(),
                machine: smon_proto::MachineId::local("m1"),
                host: "127.0.0.1".into(),
                status: status_sender::StatusSender::new(tx, |status| status),
            },
            &[],
        );
        let (started, installing) = apps.begin_fetch(&decl(1));
        let installing = installing.expect("new here: installing");
        assert!(started);
        assert_eq!(installing.state, AppState::Installing);
        assert_eq!(
            apps.begin_fetch(&decl(1)),
            (false, None),
            "one fetch at a time"
        );
        let all = apps.on_status(installing).expect("a change");
        assert_eq!(all[0].state, AppState::Installing);

        // The fetch fails: the status is taken back, and the next offer tries again.
        let all = apps
            .end_fetch("web", Version::new(1, 0, 0), false)
            .expect("a change");
        assert!(all.is_empty());
        let (started, installing) = apps.begin_fetch(&decl(1));
        assert!(started && installing.is_some());

        // It succeeds: the supervisor's report replaces the status; nothing to take back.
        apps.on_status(installing.unwrap());
        assert_eq!(apps.end_fetch("web", Version::new(1, 0, 0), true), None);
        let running = AppStatus {
            state: AppState::Running,
            ..apps.statuses(None)[0].clone()
        };
        apps.on_status(running);
        // A newer version is fetched while the old one runs: no `installing` over `running`.
        let (started, installing) = apps.begin_fetch(&decl(2));
        assert!(started && installing.is_none());
        assert_eq!(apps.end_fetch("web", Version::new(2, 0, 0), false), None);
        assert_eq!(apps.statuses(None)[0].state, AppState::Running);
    }
}
