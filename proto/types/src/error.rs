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

pub type Result<T, E = ProtoError> = std::result::Result<T, E>;
