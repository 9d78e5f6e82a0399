//! The one error enum of the wire crate.

use std::path::PathBuf;

/// Everything that can go wrong while parsing, encoding or transporting smon data.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("{source_name}:{line}: {reason}")]
    MachineLine {
        source_name: String,
        line: usize,
        reason: String,
    },
    /// A user's text file with a byte that is not UTF-8 (see `text::decode_text`).
    #[error(
        "{source_name}:{line}: not UTF-8 (byte {byte:#04x} at column {column}): save the file as UTF-8"
    )]
    NotUtf8 {
        source_name: String,
        line: usize,
        column: usize,
        byte: u8,
    },
    /// A machine given as an argument (the reason names the text).
    #[error("{0}")]
    Machine(String),
    #[error("invalid version {text:?}: expected MAJOR.MINOR.PATCH, numbers such as 0.2.0")]
    Version { text: String },
    #[error("membership blob: {0}")]
    MembershipBlob(String),
    #[error("membership blob claims {claimed} bytes uncompressed, more than the cap of {cap}")]
    MembershipTooLarge { claimed: u64, cap: u64 },
    #[error("manifest: {0}")]
    Manifest(String),
    /// A malformed `app.toml`: `FILE:LINE: field `FIELD`: REASON`.
    #[error("{file}{}: {}{reason}", line.map(|l| format!(":{l}")).unwrap_or_default(), field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
    AppToml {
        file: String,
        line: Option<usize>,
        field: Option<String>,
        reason: String,
    },
    #[error("application package: {0}")]
    AppPackage(String),
    #[error("key file {path}: {reason}")]
    ClusterKey { path: PathBuf, reason: String },
    #[error("noise handshake with {peer}: {reason}")]
    Handshake { peer: String, reason: String },
    #[error("noise handshake with {peer} refused: wrong cluster key")]
    WrongKey { peer: String },
    #[error("noise handshake with {peer} timed out after {after:?}")]
    HandshakeTimeout {
        peer: String,
        after: std::time::Duration,
    },
    /// A file that could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A `cluster.json` that does not parse.
    #[error("{}: not a valid cluster config: {reason}", path.display())]
    ClusterConfig { path: PathBuf, reason: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl ProtoError {
    /// Whether this is the local host running out of something (file descriptors, buffers,
    /// memory) rather than anything the other side did. Such a failure says nothing about
    /// whether a peer runs (issue 15, kind 4).
    pub fn is_local_exhaustion(&self) -> bool {
        match self {
            ProtoError::Io(io) | ProtoError::File { source: io, .. } => is_exhaustion(io),
            _ => false,
        }
    }
}

/// Whether `io` says this host ran out of something: `EMFILE` (24), `ENFILE` (23), `ENOMEM`
/// (12), `ENOBUFS` (105), Linux's numbers as in errno(3).
pub fn is_exhaustion(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::OutOfMemory
        || matches!(io.raw_os_error(), Some(24 | 23 | 12 | 105))
}

/// Whether `e`, or any error in its chain of sources, is this host running out of something
/// (see [`is_exhaustion`]): for errors that wrap an io error several layers down (a login
/// that could not spawn `sh`, an agent connection that could not open a socket).
pub fn chain_is_local_exhaustion(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        let found = match (
            e.downcast_ref::<std::io::Error>(),
            e.downcast_ref::<ProtoError>(),
        ) {
            (Some(io), _) => is_exhaustion(io),
            (_, Some(proto)) => proto.is_local_exhaustion(),
            _ => false,
        };
        if found {
            return true;
        }
        next = e.source();
    }
    false
}

pub type Result<T, E = ProtoError> = std::result::Result<T, E>;
