//! Operator control: the console's actions on this peer, and the assembly of the packages it
//! pushes (a release this peer upgrades to, an application it installs and spreads).

use std::{sync::Arc, time::Duration};

use smon_proto::{
    AppDecl, ControlAction, DesiredState, Membership, Refusal, SignedLiveTag, app_package,
    chunked::Assembled, release,
};

use super::{
    actor::{Actor, Msg},
    apps::install as app_install,
    clock::now_ms,
};
use crate::core::{Input, Output};
use smon_login::layout;

/// How long a message that ends the actor waits, so that the answer reaches the console first.
const ANSWER_FIRST: Duration = Duration::from_millis(200);

impl Actor {
    /// Carry out an operator's `action`: the answer for the console, or why not. Outputs of
    /// the core go to `out`, which the caller commits before it answers.
    pub(super) fn control(
        &mut self,
        action: ControlAction,
        out: &mut Vec<Output>,
    ) -> Result<String, Refusal> {
        match action {
            ControlAction::SetLiveTag { tag } => self.set_livetag(tag, out),
            ControlAction::Rekey { rekey } => {
                let epoch = rekey.epoch;
                self.operator(Input::SetRekey(rekey), out)?;
                Ok(format!("key rotation to epoch {epoch} taken; it spreads"))
            }
            ControlAction::SetMembership { blob } => self.set_membership(&blob, out),
            ControlAction::PushRelease {
                offset,
                total,
                data,
            } => self.receive_push(offset, total, &data),
            ControlAction::PushApp {
                offset,
                total,
                data,
            } => self.receive_app_push(offset, total, &data, out),
            ControlAction::SetAppDesired {
                name,
                desired,
                rev,
                signature,
            } => self.set_app_desired(name, desired, rev, signature, out),
            ControlAction::Shutdown { stop_apps } => {
                self.send_after_answer(Msg::Shutdown { stop_apps });
                Ok(if stop_apps {
                    format!("{} stops, and its applications", self.me)
                } else {
                    format!("{} stops; its applications keep running", self.me)
                })
            }
        }
    }

    /// Send `msg` to this actor once the current answer had time to reach the console.
    fn send_after_answer(&self, msg: Msg) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ANSWER_FIRST).await;
            let _ = tx.send(msg).await;
        });
    }

    /// Hand an operator's input to the core: refused (nothing changed) unless signed by the
    /// release key and newer than what this peer holds.
    fn operator(&mut self, input: Input, out: &mut Vec<Output>) -> Result<(), Refusal> {
        self.core
            .handle_operator(now_ms(), input, &mut self.rng, out)
            .map_err(|refused| Refusal::Denied(refused.to_string()))
    }

    fn set_livetag(
        &mut self,
        tag: SignedLiveTag,
        out: &mut Vec<Output>,
    ) -> Result<String, Refusal> {
        self.operator(Input::SetLiveTag(tag), out)?;
        let tag = self.core.livetag();
        Ok(format!(
            "livetag set to {} (version {})",
            tag.enabled, tag.version
        ))
    }

    fn set_membership(&mut self, blob: &[u8], out: &mut Vec<Output>) -> Result<String, Refusal> {
        let list = Membership::decode(blob).map_err(|e| Refusal::Invalid(e.to_string()))?;
        let current = self.core.membership().version;
        // The same list again makes no new version (issue 15, kind 6): nothing changes.
        if list.same_content(self.core.membership()) {
            return Ok(format!(
                "membership unchanged: version {current} already lists these machines"
            ));
        }
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
        self.operator(Input::SetMembership(Arc::new(list)), out)?;
        Ok(format!("membership version {version} set"))
    }

    fn set_app_desired(
        &mut self,
        name: String,
        desired: DesiredState,
        rev: u64,
        signature: Vec<u8>,
        out: &mut Vec<Output>,
    ) -> Result<String, Refusal> {
        let Some(mine) = self.core.apps().iter().find(|a| a.name == name) else {
            return Err(Refusal::NotFound(format!(
                "application {name} is not installed (known here: {})",
                self.known_apps()
            )));
        };
        let app = AppDecl {
            desired,
            desired_rev: rev,
            desired_sig: signature,
            ..mine.clone()
        };
        self.operator(Input::SetAppDesired(app), out)?;
        Ok(format!(
            "{name} set {desired} on every machine (through {})",
            self.me
        ))
    }

    fn known_apps(&self) -> String {
        let names: Vec<_> = self.core.apps().iter().map(|a| a.name.as_str()).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// A piece of a release package from the console; the whole is verified, stored as a
    /// version of this machine, and this peer upgrades to it (the others then follow).
    fn receive_push(&mut self, offset: u64, total: u64, data: &[u8]) -> Result<String, Refusal> {
        let package = match self.push.add(offset, total, data)? {
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
        if self.core.is_marked_bad(version) {
            return Err(Refusal::Denied(format!(
                "version {version} is marked bad (rolled back on a machine; `status` says \
                 where and why): package the fix as a newer version"
            )));
        }
        layout::store_version(&self.root, version, &package)
            .map_err(|e| Refusal::Busy(e.to_string()))?;
        self.send_after_answer(Msg::Upgrade(version));
        Ok(format!("{} verified {version}; upgrading", self.me))
    }

    /// A piece of an application package from the console; the whole is verified, installed
    /// here and handed to the core, which spreads it.
    fn receive_app_push(
        &mut self,
        offset: u64,
        total: u64,
        data: &[u8],
        out: &mut Vec<Output>,
    ) -> Result<String, Refusal> {
        let package = match self.app_push.add(offset, total, data)? {
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
            desired_sig: Vec::new(),
        };
        let input = Input::AppInstalledLocally(decl);
        self.core.handle(now_ms(), input, &mut self.rng, out);
        Ok(format!(
            "{name} {version} verified and installed on {}; it spreads to the other machines",
            self.me
        ))
    }
}
