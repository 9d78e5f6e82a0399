//! Peers whose process is there but that do not answer (stopped by `kill -STOP`, hung): a
//! connection error alone does not tell them from a machine without a peer, so a login looks
//! (the probe, as peers do) and kills the process it finds by its pid (issue 15, kind 1).
//! Used by `shutdown`, which would otherwise wait out its timeout for a peer that will never
//! answer its stop request. Unless told to keep them, the applications of a killed peer are
//! ended too (by their marker, `machine_ops::end_apps`): `shutdown` stops applications
//! whether their peer answers or not (issue 15, kind 11).

use smon_login::{Login, machine_ops};
use smon_proto::MachineId;

/// What was found and done about a machine whose peer did not answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Silent {
    /// No peer process there: nothing to do.
    NoPeer,
    /// A peer process was there without answering, and was killed; what became of its
    /// applications, in words.
    Killed { pid: u32, apps: String },
    /// The peer there is another cluster's (issue 15, kind 11): left alone; what is there.
    OtherCluster(String),
    /// The login, or the kill, failed (the error on one line).
    Failed(String),
}

impl Silent {
    /// The sentence `shutdown` prints for `machine` (none when there was no peer).
    pub fn line(&self, machine: &MachineId) -> Option<String> {
        match self {
            Silent::NoPeer => None,
            Silent::Killed { pid, apps } => Some(format!(
                "{machine}: its peer (pid {pid}) runs but did not answer; killed it; {apps}"
            )),
            Silent::OtherCluster(what) => Some(format!("{machine}: not killed: {what}")),
            Silent::Failed(why) => Some(format!(
                "{machine}: did not answer, and could not be checked or killed: {why}"
            )),
        }
    }
}

/// Log in to `machine`, and kill its peer process if one is there (it did not answer); with
/// `stop_apps`, end its applications' processes then.
pub async fn kill_silent(login: &Login, machine: &MachineId, stop_apps: bool) -> Silent {
    let probe = match machine_ops::probe(login, machine).await {
        Ok(probe) => probe,
        Err(e) => return Silent::Failed(crate::error_line::one_line(&e.into())),
    };
    if let Some(what) = probe.other_cluster {
        return Silent::OtherCluster(what.message);
    }
    let Some(pid) = probe.pid.filter(|_| probe.running) else {
        return Silent::NoPeer;
    };
    if let Err(e) = machine_ops::kill_peer(login, machine, pid).await {
        return Silent::Failed(crate::error_line::one_line(&e.into()));
    }
    Silent::Killed {
        pid,
        apps: end_apps(login, machine, stop_apps).await,
    }
}

/// End the applications of `machine`, whose peer is gone, unless told to keep them: what
/// became of them, in words.
pub async fn end_apps(login: &Login, machine: &MachineId, stop_apps: bool) -> String {
    if !stop_apps {
        return "its applications are left running (--keep-apps)".to_owned();
    }
    match machine_ops::end_apps(login, machine).await {
        Ok(done) => format!("its applications: {done}"),
        Err(e) => format!(
            "its applications could not be ended: {}",
            crate::error_line::one_line(&e.into())
        ),
    }
}
