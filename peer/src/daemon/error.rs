//! The daemon's error enum. After foca's `Error`, each variant says whether the machine's
//! state (state.db, the smon directory) was changed when it is returned.

use std::path::PathBuf;

use smon_proto::{ProtoError, chunked::FetchError};

/// Boxed source errors of several types (the release key's parser, serde, proto).
pub type Source = Box<dyn std::error::Error + Send + Sync>;

/// What can stop the daemon, the installer or `start`, or fail one of their operations.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// state.db could not be opened, read or written (`what` says which). Changes nothing: a
    /// write is one transaction, which SQLite rolls back whole when it fails.
    #[error("state: {what}: {source}")]
    Store {
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    /// A value (in state.db, an install seed, the cluster settings) does not decode; `what`
    /// names it. Changes nothing.
    #[error("{what}: {source}")]
    Decode {
        what: String,
        #[source]
        source: Source,
    },
    /// state.db lacks what a peer needs to run: the machine was never installed. Changes
    /// nothing.
    #[error("{}: no {what} in state.db (not installed here?)", root.display())]
    NotInstalled { root: PathBuf, what: &'static str },
    /// A package does not verify (format, SHA-256, the release key's signature). Changes
    /// nothing: a refused package is neither stored, nor installed, nor served.
    #[error("{what}: {source}")]
    Unverified {
        what: String,
        #[source]
        source: ProtoError,
    },
    /// The machine holds another cluster's install (its peer, state and release key), which
    /// this cluster's package does not verify with: what is there and what to do. Changes
    /// nothing.
    #[error("{0}")]
    OtherCluster(String),
    /// A package that verifies but is not acceptable: over the size cap, or not the name or
    /// version asked for. Changes nothing, as [`DaemonError::Unverified`].
    #[error("{what}: {why}")]
    WrongPackage { what: String, why: String },
    /// Another peer could not be reached (TCP, the Noise handshake). Changes nothing.
    #[error("{0}")]
    Connect(#[source] ProtoError),
    /// Fetching a package from another peer failed (the call, a refusal, a bad chunk).
    /// Changes nothing: a partial fetch is dropped, the next offer starts over.
    #[error("fetch: {0}")]
    Fetch(#[from] FetchError),
    /// A file of this machine's smon directory, or a login to another machine, failed (see
    /// [`smon_login::Error`]: files are left whole or as they were; a deployment that failed
    /// midway leaves an upload that the next installer clears).
    #[error(transparent)]
    Machine(#[from] smon_login::Error),
    /// The peer's address could not be listened on. Changes nothing (the peer did not start).
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The SIGTERM handler could not be installed. Changes nothing (the actor did not start).
    #[error("SIGTERM handler: {0}")]
    Signal(#[source] std::io::Error),
    /// The peer binary could not be run. Changes nothing of the machine's state, except that
    /// `start --rollback` has made its rollback (previous version current, the failed one
    /// marked bad) before it tried.
    #[error("{}: {source}", binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The started peer did not come up (`why`: it exited, or did not write its pid file in
    /// time; it was killed then). State as for [`DaemonError::Spawn`].
    #[error("{}: {why}", binary.display())]
    NotStarted { binary: PathBuf, why: String },
    /// A rollback was asked for, but there is no previous version. Changes nothing.
    #[error("no previous version to roll back to")]
    NoPrevious,
    /// Replacing this process with another version's peer failed. State WAS changed: the
    /// version switch (the `current` link, the trial mark or the rollback's bad version) is
    /// committed, so the next start of the peer runs that version.
    #[error("exec {}: {source}", binary.display())]
    Reexec {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DaemonError {
    /// A [`DaemonError::Decode`] of `what`.
    pub fn decode(what: impl Into<String>, source: impl Into<Source>) -> Self {
        DaemonError::Decode {
            what: what.into(),
            source: source.into(),
        }
    }
}
