//! The one error enum of the login library.

use std::{path::PathBuf, time::Duration};

use smon_proto::MachineId;

/// What can go wrong while logging in to a machine, acting on it, or handling the files of a
/// smon directory. Every variant names where (the machine, the address or the file).
///
/// State: files are written whole (a temporary name, then a rename), so an error leaves a file
/// as it was or complete, never half. A deployment that fails midway leaves its upload in the
/// machine's `incoming/` only if even its clean-up failed (the machine went away): the next
/// installer clears it, and its claim stops blocking 30 s after its last write.
///
/// Large sources are boxed: this error travels in many of the daemon's `Result`s.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory on this host (a smon directory, a package, a lock).
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file could not be copied (to a local machine's directory).
    #[error("copying {} to {}: {source}", from.display(), to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that should be a peer package is not one (no trailer, bad manifest).
    #[error("{}: {source}", path.display())]
    Package {
        path: PathBuf,
        #[source]
        source: Box<smon_proto::ProtoError>,
    },
    /// A known_hosts file could not be read or written.
    #[error("{}: {source}", path.display())]
    KnownHosts {
        path: PathBuf,
        #[source]
        source: Box<russh::keys::Error>,
    },
    /// `sh` could not be started on this host (for a local machine).
    #[error("sh: {0}")]
    Shell(#[source] std::io::Error),
    /// A step did not finish within its time.
    #[error("{what} timed out after {after:?}")]
    Timeout { what: String, after: Duration },
    /// A script ran on the machine and failed: its exit status and last line of stderr.
    #[error("remote command failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
    /// The probe script printed something else than its three `key=value` lines.
    #[error("unexpected probe output: {0:?}")]
    ProbeOutput(String),
    /// The machine holds another cluster's install (issue 15, kind 11): what is there and
    /// what to do, in one line. Nothing there was started, stopped or killed.
    #[error("{0}")]
    OtherCluster(String),
    /// An SSH machine, but the cluster has no authentication agent to log in with.
    #[error("{machine}: the cluster has no authentication agent")]
    NoAgent { machine: MachineId },
    /// The authentication agent could not be reached, or did not answer.
    #[error("{machine}: the agent at {addr}: {source}")]
    Agent {
        machine: MachineId,
        addr: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The machine's SSH host key was refused: changed, or pinned nowhere.
    #[error("{machine}: refused: {reason}")]
    HostKey { machine: MachineId, reason: String },
    /// The SSH server did not accept the agent's key for this user.
    #[error("{machine}: the server refused the agent's key for {user}")]
    AuthRefused { machine: MachineId, user: String },
    /// The SSH connection or one of its channels failed.
    #[error("{target}: {source}")]
    Ssh {
        target: String,
        #[source]
        source: Box<russh::Error>,
    },
    /// Authentication through the agent failed (the agent refused, the session ended).
    #[error("{machine}: {source}")]
    Auth {
        machine: MachineId,
        #[source]
        source: SignError,
    },
    /// A host-key scan found only certificates (or nothing) at `addr`.
    #[error("{addr}: showed no plain host key")]
    NoHostKey { addr: String },
}

/// Why the agent's signature of a login could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the SSH session ended")]
    Send(#[from] russh::SendError),
    #[error("the agent: {0}")]
    Agent(String),
}

/// The [`Error::Io`] of `path`, for `map_err`.
pub fn io_err(path: &std::path::Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}
