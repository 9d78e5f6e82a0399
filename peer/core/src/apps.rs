//! The core's side of applications: offering a declaration to other peers, adopting one
//! offered, and the states this machine's supervisor reports.

use super::*;
use crate::signatures::{RefusedKind, Sender};

impl Core {
    pub(crate) fn offer_app(&mut self, rng: &mut impl Rng, out: &mut Vec<Output>) {
        if self.state.apps.is_empty() {
            return;
        }
        self.app_turn = (self.app_turn + 1) % self.state.apps.len();
        let app = self.state.apps[self.app_turn].clone();
        if let Some(target) = self.random_other(rng) {
            let offer = AppOffer {
                from: self.me.clone(),
                app,
            };
            self.call(
                target,
                PeerCall::ExchangeApp(offer),
                Pending::AppOffer(target),
                out,
            );
        }
    }

    /// Offer the application at `index` next: the one that just changed is news.
    pub(crate) fn offer_next(&mut self, index: usize) {
        let n = self.state.apps.len().max(1);
        self.app_turn = (index + n - 1) % n;
    }

    /// An application package `app` is installed here: take its version, and its desired
    /// state if that is newer than ours (the two merge independently, newest wins).
    pub(crate) fn adopt_app(&mut self, app: AppDecl, out: &mut Vec<Output>) {
        let index = match self.state.apps.iter().position(|a| a.name == app.name) {
            Some(i) => {
                if !self.state.apps[i].merge(&app) {
                    return;
                }
                i
            }
            None => {
                self.state.apps.push(app);
                self.state.apps.len() - 1
            }
        };
        out.push(Output::AppDesired(self.state.apps[index].clone()));
        self.offer_next(index);
        self.persist(out);
    }

    /// Take the desired state of `app` if it is newer (the package is another matter: it
    /// must be fetched first).
    pub(crate) fn adopt_app_desired(&mut self, app: &AppDecl, out: &mut Vec<Output>) {
        if let Some(i) = self.state.apps.iter().position(|a| a.name == app.name)
            && app.desired_order() > self.state.apps[i].desired_order()
        {
            let mine = &mut self.state.apps[i];
            mine.take_desired_of(app);
            out.push(Output::AppDesired(mine.clone()));
            self.offer_next(i);
            self.persist(out);
        }
    }

    pub(crate) fn set_app_states(&mut self, states: Vec<AppStatus>, out: &mut Vec<Output>) {
        if self.own.apps != states {
            self.own.apps = states;
            self.own.state = PeerState::Stopped; // force a republish
            self.refresh_own(out);
        }
    }

    /// `app` as another peer gave it, with its desired state replaced by ours when that
    /// cannot be taken: a newer one not signed by the release key (refused, reported), or a
    /// revision 0 (the package's default) for an application held here already. `None` when
    /// this peer does not hold the application and the desired state offered is refused: the
    /// whole offer is then (another peer will offer it signed). The package version is the
    /// fetch's to verify.
    pub(crate) fn vetted_app(
        &mut self,
        from: Sender,
        mut app: AppDecl,
        out: &mut Vec<Output>,
    ) -> Option<AppDecl> {
        let mine = self.state.apps.iter().find(|a| a.name == app.name);
        if mine.is_some_and(|m| app.desired_order() <= m.desired_order()) {
            return Some(app); // ours wins any merge
        }
        let taken = match app.desired_rev {
            0 => mine.is_none(),
            _ => match self.app_desired_signed(&app) {
                Ok(()) => true,
                Err(why) => {
                    let rev = app.desired_rev;
                    self.refuse(RefusedKind::AppDesired, from, rev, why, out);
                    false
                }
            },
        };
        if !taken {
            let mine = self.state.apps.iter().find(|a| a.name == app.name)?;
            app.take_desired_of(mine);
        }
        Some(app)
    }

    pub(crate) fn on_app_offer(&mut self, offer: AppOffer, out: &mut Vec<Output>) -> AppReply {
        let AppOffer { from, app } = offer;
        let Some(app) = self.vetted_app(Sender::Peer(from.clone()), app, out) else {
            return AppReply::Have;
        };
        self.adopt_app_desired(&app, out);
        let newer_package = match self.state.apps.iter().find(|a| a.name == app.name) {
            None => true,
            Some(mine) => {
                if app.version > mine.version {
                    true
                } else if mine.version > app.version || mine.desired_order() > app.desired_order() {
                    return AppReply::Newer(mine.clone());
                } else {
                    return AppReply::Have;
                }
            }
        };
        if !newer_package
            || self.exited
            || !smon_proto_types::app_package::valid_app_name(&app.name)
        {
            return AppReply::Have;
        }
        // Fetch it with the desired state we hold now (ours if it is newer).
        let mut wanted = app;
        if let Some(mine) = self.state.apps.iter().find(|a| a.name == wanted.name) {
            let mut merged = mine.clone();
            merged.merge(&wanted);
            wanted = merged;
        }
        out.push(Output::FetchApp { from, app: wanted });
        AppReply::Want
    }
}
