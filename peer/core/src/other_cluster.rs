//! A machine whose install is another cluster's (issue 15, kind 11): a peer of an earlier
//! `init`, running or not. A login's probe says so ([`Probe::other_cluster`]); this peer then
//! neither restarts, nor kills, nor deploys over it, and records why in that machine's row,
//! unless the cluster takes such machines over ([`CoreConfig::take_over`]): then it deploys,
//! and the installer there stops the other cluster's peer and installs this one.

use super::*;

impl Core {
    /// The probe of `index` found another cluster's install, `found`. Returns the
    /// machine when the work on it is over for this round (nothing was asked of the daemon).
    pub(crate) fn on_other_cluster(
        &mut self,
        index: u32,
        machine: MachineId,
        found: OtherInstall,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Option<u32> {
        self.clear_suspect(index); // not our peer: never judged, never killed
        self.targeting.note_attempt(index, now);
        if self.cfg.take_over {
            self.deploy(index, machine, true, out);
            return None;
        }
        // Logged once per machine and description, not every round.
        if self.other_clusters.get(&machine) != Some(&found.message) {
            self.other_clusters
                .insert(machine.clone(), found.message.clone());
            out.push(Output::OtherCluster {
                machine,
                message: found.message,
            });
        }
        self.observe_because(index, PeerState::Stopped, found.brief.to_string());
        Some(index)
    }
}
