//! The names of smon's files on disk, in one place: the operator's cluster directory
//! ([`ClusterFiles`]) and a machine's smon directory ([`MachineFiles`]). Every program that
//! opens one of these files (console, agent, peer, tests, scripts) takes its path from here.
//!
//! What the files hold is written next to the type that reads them: `ClusterConfig`
//! (`cluster.json`), `ClusterKey`/`OperatorKey` (key files), `Membership` (its blob),
//! `release` (the peer package); the peer's own SQLite state and per-application `run.json`
//! are private to the daemon, which alone reads them.

use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use crate::ProtoError;

/// The operator's cluster directory (`smon-console init DIR`):
///
/// ```text
/// DIR/cluster.json      the cluster settings every peer gets (ports, interval, release key)
/// DIR/cluster.key       K_E (0600)
/// DIR/operator.key      the operator key (0600): the agent signs releases only for its holder
/// DIR/release.pub       the release key; DIR/release.key its private half (0600) when the
///                       directory signs itself, DIR/agent-key.json when the agent's key is it
/// DIR/known_hosts       the operator's pinned SSH host keys (the membership carries them);
///                       DIR/known_hosts.tofu what the console itself trusted on first use
/// DIR/machines          the machines file as last set; DIR/membership.blob its versioned blob
/// DIR/package           the signed package of the peer binary; DIR/package.gz its gzip form,
///                       as deployments copy it to SSH machines (made by the first one;
///                       local machines get DIR/package as is)
/// DIR/machines.d/NAME/  the directory of each local:NAME machine (a [`MachineFiles`] root)
/// DIR/agent.pid, DIR/agent.log, DIR/agent-audit.db   the cluster's agent, when it runs
///                          (agent.log rotated at [`AGENT_LOG_BOUND`] by the agent)
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ClusterFiles<'a> {
    dir: &'a Path,
}

impl<'a> ClusterFiles<'a> {
    pub fn new(dir: &'a Path) -> Self {
        Self { dir }
    }

    /// The directory itself.
    pub fn dir(&self) -> &'a Path {
        self.dir
    }

    /// `cluster.json`: the [`crate::ClusterConfig`].
    pub fn config(&self) -> PathBuf {
        self.dir.join("cluster.json")
    }

    /// `cluster.key`: K_E.
    pub fn cluster_key(&self) -> PathBuf {
        self.dir.join("cluster.key")
    }

    /// `operator.key`: the operator key.
    pub fn operator_key(&self) -> PathBuf {
        self.dir.join("operator.key")
    }

    /// `release.key`: the release key's private half, when the directory signs releases.
    pub fn release_key(&self) -> PathBuf {
        self.dir.join("release.key")
    }

    /// `release.pub`: the release key (OpenSSH public key line).
    pub fn release_pub(&self) -> PathBuf {
        self.dir.join("release.pub")
    }

    /// `agent-key.json`: the key `init --key`/`--ssh-agent` chose for the agent.
    pub fn agent_key(&self) -> PathBuf {
        self.dir.join("agent-key.json")
    }

    /// `known_hosts`: the operator's pinned SSH host keys.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join(KNOWN_HOSTS)
    }

    /// `known_hosts.tofu`: host keys the console trusted on first use (never pins).
    pub fn known_hosts_tofu(&self) -> PathBuf {
        self.dir.join("known_hosts.tofu")
    }

    /// `machines`: the machines file as last set.
    pub fn machines(&self) -> PathBuf {
        self.dir.join("machines")
    }

    /// `membership.blob`: the versioned membership blob.
    pub fn membership_blob(&self) -> PathBuf {
        self.dir.join("membership.blob")
    }

    /// `package`: the signed package of the peer binary.
    pub fn package(&self) -> PathBuf {
        self.dir.join("package")
    }

    /// `package.gz`: the package as deployments copy it to SSH machines (gzip), made by the
    /// first one; local machines get [`Self::package`] as is.
    pub fn package_gz(&self) -> PathBuf {
        self.dir.join("package.gz")
    }

    /// `machines.d`: where the directories of `local:` machines live.
    pub fn local_root(&self) -> PathBuf {
        self.dir.join("machines.d")
    }

    /// `agent.pid`: the running agent's pid.
    pub fn agent_pid(&self) -> PathBuf {
        self.dir.join("agent.pid")
    }

    /// `agent.lock`: flocked by the running agent for its whole life; its holder
    /// ([`crate::lock_holder`]) is the agent, whatever `agent.pid` says.
    pub fn agent_lock(&self) -> PathBuf {
        self.dir.join("agent.lock")
    }

    /// `agent.log`: the agent's output (agent.log.1 .. .3 its backups, see
    /// [`AGENT_LOG_BOUND`]).
    pub fn agent_log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    /// `agent-audit.db`: the agent's audit log (SQLite).
    pub fn agent_audit(&self) -> PathBuf {
        self.dir.join("agent-audit.db")
    }
}

/// The name of a known_hosts file, in a cluster directory and in a machine's directory alike.
pub const KNOWN_HOSTS: &str = "known_hosts";

/// The smon directory of an SSH machine, in its user's home (`$HOME/.smon`).
pub const SSH_ROOT_IN_HOME: &str = ".smon";

/// A machine's smon directory (ROOT: `$HOME/.smon` over SSH, `DIR/machines.d/NAME` for a
/// local machine):
///
/// ```text
/// ROOT/state.db            SQLite: identity, cluster config and key, membership, state
/// ROOT/versions/<v>/smon-peer   the package file of version v (executable)
/// ROOT/current -> versions/<v>  the version that runs; ROOT/previous: the one before
/// ROOT/incoming/<deployer>-<nonce>/  a deployer's upload (package, seed.json)
/// ROOT/arrivals, ROOT/logins    one byte per package arrived / per login (the overhead)
/// ROOT/peer.lock, ROOT/peer.pid, ROOT/install.lock, ROOT/known_hosts
/// ROOT/peer.log, peer.log.1 .. peer.log.3   the peer's log, rotated at [`PEER_LOG_BOUND`]
/// ROOT/apps/<name>/<version>/   an installed application; ROOT/apps/<name>/<version>.pkg
///                          its verified package, run.json its supervisor's record
/// ROOT/apps/<name>/app.log, app.log.1 .. app.log.N   its output (stdout and stderr, and
///                          those of its stop and status commands), rotated by its `[log]`
/// ```
///
/// Logs are rotated by [`crate::log_file::RotatingLog`]; [`crate::log_file::log_files`]
/// lists a log's files, newest first.
#[derive(Clone, Copy, Debug)]
pub struct MachineFiles<'a> {
    root: &'a Path,
}

impl<'a> MachineFiles<'a> {
    pub fn new(root: &'a Path) -> Self {
        Self { root }
    }

    /// The directory itself.
    pub fn root(&self) -> &'a Path {
        self.root
    }

    /// `state.db`: the peer's SQLite state.
    pub fn state_db(&self) -> PathBuf {
        self.root.join("state.db")
    }

    /// `peer.pid`: the running peer's pid.
    pub fn pid(&self) -> PathBuf {
        self.root.join("peer.pid")
    }

    /// `peer.log`: the peer's log (bounded by [`PEER_LOG_BOUND`]).
    pub fn log(&self) -> PathBuf {
        self.root.join("peer.log")
    }

    /// `peer.lock`: held by the running peer (a second one exits at once).
    pub fn lock(&self) -> PathBuf {
        self.root.join("peer.lock")
    }

    /// `cluster`: which cluster this install belongs to, in `key=value` lines that a login's
    /// shell can read (`release_key=` the cluster's release key, `machine=` this machine's
    /// name), written by the installer and by the peer as it starts (issue 15, kind 11).
    pub fn cluster(&self) -> PathBuf {
        self.root.join("cluster")
    }

    /// `install.lock`: held by the one installer that finishes.
    pub fn install_lock(&self) -> PathBuf {
        self.root.join("install.lock")
    }

    /// `known_hosts`: SSH host keys this peer trusted on first use.
    pub fn known_hosts(&self) -> PathBuf {
        self.root.join(KNOWN_HOSTS)
    }

    /// `arrivals`: one byte per package that arrived (the deployment overhead).
    pub fn arrivals(&self) -> PathBuf {
        self.root.join("arrivals")
    }

    /// `logins`: one byte per login a deployer made here.
    pub fn logins(&self) -> PathBuf {
        self.root.join("logins")
    }

    /// `incoming`: the deployers' uploads, one directory each.
    pub fn incoming(&self) -> PathBuf {
        self.root.join("incoming")
    }

    /// `versions`: one directory per installed peer version.
    pub fn versions(&self) -> PathBuf {
        self.root.join("versions")
    }

    /// A link to a version directory: [`CURRENT`] or [`PREVIOUS`].
    pub fn link(&self, link: &str) -> PathBuf {
        self.root.join(link)
    }

    /// The peer binary that runs: `current/smon-peer`.
    pub fn current_binary(&self) -> PathBuf {
        self.root.join(CURRENT).join(PEER_BINARY)
    }

    /// `apps`: the installed applications.
    pub fn apps(&self) -> PathBuf {
        self.root.join("apps")
    }

    /// `apps/<name>`: everything of one application.
    pub fn app(&self, name: &str) -> PathBuf {
        self.apps().join(name)
    }

    /// `apps/<name>/app.log`: the application's output (bounded by its spec's `log`), the one
    /// place that names it (the runner writes it, `read_log` serves it). `name` must be a
    /// valid application name (`valid_app_name`), or this is not a path under the root.
    pub fn app_log(&self, name: &str) -> PathBuf {
        self.app(name).join("app.log")
    }
}

/// The bound of the agent's log (`DIR/agent.log`): the peer's.
pub const AGENT_LOG_BOUND: crate::LogBound = PEER_LOG_BOUND;

/// The bound of the peer's own log: 8 MiB per file, 3 backups (32 MiB in all).
pub const PEER_LOG_BOUND: crate::LogBound = crate::LogBound {
    max_bytes: 8 << 20,
    backups: 3,
};

/// The environment variable that sets the peer's log bound in place of [`PEER_LOG_BOUND`]:
/// `MAX_BYTES,BACKUPS` (within [`crate::LogBound`]'s limits), inherited by the peers a peer
/// starts. For tests, and for machines short of disk.
pub const PEER_LOG_BOUND_VAR: &str = "SMON_PEER_LOG_BOUND";

/// The bound of the peer's log: [`PEER_LOG_BOUND_VAR`]'s when it is set and valid, else
/// [`PEER_LOG_BOUND`].
pub fn peer_log_bound() -> crate::LogBound {
    std::env::var(PEER_LOG_BOUND_VAR)
        .ok()
        .and_then(|spec| parse_log_bound(&spec))
        .unwrap_or(PEER_LOG_BOUND)
}

/// `MAX_BYTES,BACKUPS` as a bound, if both are numbers within the limits of app logs.
fn parse_log_bound(spec: &str) -> Option<crate::LogBound> {
    use crate::LogBound;
    let (bytes, backups) = spec.split_once(',')?;
    let bound = LogBound {
        max_bytes: bytes.trim().parse().ok()?,
        backups: backups.trim().parse().ok()?,
    };
    let ok = (LogBound::MIN_BYTES..=LogBound::MAX_BYTES).contains(&bound.max_bytes)
        && bound.backups <= LogBound::MAX_BACKUPS;
    ok.then_some(bound)
}

/// The link to the version that runs, in a machine's directory.
pub const CURRENT: &str = "current";
/// The link to the version before it (what a rollback returns to).
pub const PREVIOUS: &str = "previous";
/// The peer binary's name in a version directory.
pub const PEER_BINARY: &str = "smon-peer";

/// Read a text file a user wrote (machines file, known_hosts, `app.toml`): see
/// [`crate::text::decode_text`] (a byte-order mark dropped, a byte that is not UTF-8 placed
/// by line and column). Errors: [`ProtoError::File`] (with the IO error's kind, so that a
/// caller can tell a missing file), [`ProtoError::NotUtf8`].
pub fn read_text(path: &Path) -> Result<String, ProtoError> {
    let bytes = std::fs::read(path).map_err(|source| ProtoError::File {
        path: path.to_owned(),
        source,
    })?;
    crate::text::decode_text(&path.display().to_string(), bytes)
}

/// Write `data` to `path` so that a crash leaves the old file or the new one, never half of
/// one: a temporary file beside it (mode `mode`), fsync, rename over.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), ProtoError> {
    let tmp = path.with_extension("tmp");
    let file_error = |path: &Path| {
        let path = path.to_owned();
        move |source| ProtoError::File { path, source }
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(file_error(&tmp))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(file_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(file_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_log_bound_is_read_within_the_limits_of_app_logs() {
        let b = parse_log_bound("65536,2").unwrap();
        assert_eq!((b.max_bytes, b.backups), (65536, 2));
        for bad in ["65536", "1024,2", "65536,x", "65536,101", ""] {
            assert!(parse_log_bound(bad).is_none(), "{bad:?} was taken");
        }
    }

    #[test]
    fn write_atomic_replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.json"]);
        let err = write_atomic(&dir.path().join("nowhere/x"), b"", 0o600).unwrap_err();
        assert!(err.to_string().contains("nowhere"), "{err}");
    }
}
