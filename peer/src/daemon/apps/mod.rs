//! Applications on a machine: packages installed under `ROOT/apps/`, one supervisor task per
//! application, and the states they report, which go into the machine's gossiped record at
//! once.
//!
//! ```text
//! ROOT/apps/<name>/<version>/     the installed files: the commands' working directory
//! ROOT/apps/<name>/<version>.pkg  the verified package, served to peers that fetch it
//! ROOT/apps/<name>/run.json       the supervisor's record (process group, crash loop, override)
//! ROOT/apps/<name>/app.log        the commands' standard output and error
//! ```

pub mod backoff;
pub mod install;
pub mod process;
pub mod report;
pub mod runfile;
pub mod supervisor;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use smon_proto::{AppDecl, AppStatus, DesiredState, Refusal, Version};
use tokio::sync::mpsc;

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

    /// `set_app_status`: a desired state for this machine only. It wins over the cluster's
    /// setting until a newer cluster-wide setting arrives.
    pub fn set_override(
        &mut self,
        name: &str,
        desired: DesiredState,
        now: u64,
    ) -> Result<(), Refusal> {
        let Some((decl, tx)) = self.tasks.get(name) else {
            return Err(Refusal::NotFound(format!(
                "application {name} is not installed on {}",
                self.ctx.machine
            )));
        };
        let rev = now.max(decl.desired_rev + 1);
        tx.send(AppCmd::Override(Override { desired, rev }))
            .map_err(|_| Refusal::Busy(format!("the supervisor of {name} is gone")))
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

    /// Note a fetch of `name` `version`; false when one is already under way.
    pub fn begin_fetch(&mut self, name: &str, version: Version) -> bool {
        self.fetching.insert((name.to_owned(), version))
    }

    pub fn end_fetch(&mut self, name: &str, version: Version) {
        self.fetching.remove(&(name.to_owned(), version));
    }
}
