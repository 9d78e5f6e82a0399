//! Liveness judged by answers, not by a process existing (issue 15, kind 1).
//!
//! A ping that gets no answer leads to a login; when the login finds the peer's process
//! there (the probe's pid file and `/proc`), the process exists but does not answer: it is
//! stopped (`SIGSTOP`), hung, or cut off. The observer keeps such a machine as a *suspect*
//! (SWIM's suspicion, held by the observer that found it) and pings it again each round.
//! After [`CoreConfig::unresponsive_after_pings`] unanswered pings in a row it writes
//! [`PeerState::Unresponsive`] into the view (so no view counts it as running), and once the
//! silence has lasted [`CoreConfig::unresponsive_grace_ms`] it asks for the process to be
//! killed ([`Output::Kill`], by the pid the probe found) and then logs in again, which
//! restarts the peer by the usual path. A pong ends the suspicion; the peer, hearing it was
//! called unresponsive, answers with higher revs (as any refuted observation).

use super::*;

/// A machine whose peer process exists but did not answer this observer's pings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Suspect {
    /// When the first unanswered ping of this run of silence was found to hit a live process.
    pub since: Millis,
    /// Unanswered pings in a row (each followed by a probe that found the process).
    pub silent_pings: u32,
    /// The last of them: a run of silence not followed up within a few rounds is over.
    pub last: Millis,
}

impl Core {
    /// The machine to ping this round instead of the usual target: a suspect that the view
    /// holds as running (or already unresponsive), oldest first, so that the observer that
    /// found it follows it up each round. A machine whose peer just started (its record is
    /// not up yet) is not followed: deployment goes on, and a later pong clears it.
    pub(crate) fn suspect_to_follow(&self) -> Option<u32> {
        self.suspects
            .iter()
            .filter(|(index, _)| {
                self.view
                    .get(**index)
                    .is_some_and(|r| r.state.is_up() || r.state == PeerState::Unresponsive)
            })
            .min_by_key(|(index, s)| (s.since, **index))
            .map(|(index, _)| *index)
    }

    /// A ping of `index` went unanswered and the login found its peer's process (`pid`).
    /// Returns the machine when the work on it is over for this round.
    pub(crate) fn on_silent_process(
        &mut self,
        index: u32,
        pid: Option<u32>,
        machine: MachineId,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Option<u32> {
        let fresh = Suspect {
            since: now,
            silent_pings: 0,
            last: now,
        };
        let suspect = self.suspects.entry(index).or_insert(fresh);
        if now.saturating_sub(suspect.last) > 3 * self.cfg.interval_ms.max(1) {
            *suspect = fresh; // an old run of silence, not followed up: start anew
        }
        suspect.silent_pings += 1;
        suspect.last = now;
        let suspect = *suspect;
        if suspect.silent_pings < self.cfg.unresponsive_after_pings {
            return Some(index);
        }
        let silent_for_ms = now.saturating_sub(suspect.since);
        if self.view.get(index).map(|r| r.state) != Some(PeerState::Unresponsive) {
            out.push(Output::Unresponsive {
                machine: machine.clone(),
                silent_pings: suspect.silent_pings,
                silent_for_ms,
            });
        }
        let pid_text = pid.map_or_else(String::new, |p| format!(" (pid {p})"));
        // Stable text: a reason that changed every round would be news every round.
        let why = format!("peer process{pid_text} runs but does not answer pings");
        self.observe_because(index, PeerState::Unresponsive, why);
        match pid {
            Some(pid) if silent_for_ms >= self.cfg.unresponsive_grace_ms => {
                self.work = Some(Work::Killing(index));
                out.push(Output::Kill {
                    machine,
                    pid,
                    silent_for_ms,
                });
                None
            }
            _ => Some(index),
        }
    }

    /// A ping of `index` was answered: whatever silence there was is over.
    pub(crate) fn clear_suspect(&mut self, index: u32) {
        self.suspects.remove(&index);
    }

    /// The kill of an unresponsive peer ended. When it worked, log in again at once: the
    /// probe then finds the peer installed and stopped, and the usual path restarts it.
    pub(crate) fn on_kill_done(&mut self, machine: MachineId, ok: bool, out: &mut Vec<Output>) {
        let Some(index) = self.view.membership().index_of(&machine) else {
            return;
        };
        if self.work != Some(Work::Killing(index)) {
            return;
        }
        self.work = None;
        self.suspects.remove(&index);
        if ok && self.state.livetag.enabled && self.me_index.is_some() {
            self.observe(index, PeerState::Stopped);
            self.work = Some(Work::LoggingIn(index));
            out.push(Output::Login(machine));
        }
    }
}
