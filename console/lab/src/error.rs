//! The one error enum of the lab: each says what failed and where, in one line.

use std::path::PathBuf;

/// Everything that can go wrong while making, changing or removing a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("the lab needs root (network namespaces, users, sshd): run it as root")]
    NotRoot,
    #[error("{tool} is missing: apt-get install {package}")]
    MissingTool { tool: String, package: String },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    State { path: PathBuf, reason: String },
    #[error("{}: no lab here (no lab.json)", path.display())]
    NoLab { path: PathBuf },
    #[error("{}: not empty; `up` makes a new directory of its own (down removes it)", path.display())]
    DirNotEmpty { path: PathBuf },
    #[error(
        "{}: mode {mode:o}, the lab's users cannot reach their homes under it (chmod o+x, or another --dir)",
        path.display()
    )]
    NotTraversable { path: PathBuf, mode: u32 },
    #[error("{what}: {reason}")]
    BadArgument { what: String, reason: String },
    #[error("machine {index}: there are {count} machines (1-based indices into the machines file)")]
    BadIndex { index: usize, count: usize },
    #[error("no free /24 left in 198.18.0.0/15 (every one is in use on this host)")]
    NoSubnet,
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
}

impl LabError {
    /// An IO error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LabError {
        let path = path.into();
        move |source| LabError::Io { path, source }
    }

    pub fn bad(what: impl Into<String>, reason: impl Into<String>) -> LabError {
        LabError::BadArgument {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = LabError> = std::result::Result<T, E>;
