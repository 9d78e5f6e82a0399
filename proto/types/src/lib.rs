//! `smon-proto-types`: the pure wire types of smon, with no IO.
//!
//! Machines, versions, livetag, membership, manifests, records, applications, the package
//! formats and the messages of the RPC services ([`PeerCall`] / [`PeerReply`], the language of
//! the peer's sans-IO core). Nothing here opens a file or a socket, reads a clock or draws
//! from a global RNG (checked by the crate's `clippy.toml`), so the core can depend on it
//! alone. `smon-proto` re-exports all of it and adds the transport, the tarpc services and
//! the key files.

pub mod aggregate;
mod app;
pub mod app_package;
mod app_toml;
mod bad_version;
mod error;
mod livetag;
mod logs;
mod machine;
mod manifest;
mod membership;
mod messages;
mod reason;
mod record;
mod rekey;
pub mod release;
mod signed;
mod sparse_counts;
pub mod text;
mod version;
pub mod zones;

pub use aggregate::{Aggregate, AppCount, LoadStats, RowOrder, ZoneRow};
pub use app::{
    AppDecl, AppReport, AppSpec, AppState, AppStatus, BackoffPolicy, DesiredState, LogBound,
};
pub use bad_version::{BAD_SAMPLE, BadMark, BadReason, BadVersion, MAX_BAD_VERSIONS, note_bad};
pub use error::{ProtoError, Result, chain_is_local_exhaustion, is_exhaustion};
pub use livetag::LiveTag;
pub use logs::{LOG_MAX_BYTES, LOG_MAX_LINES, LogChunk, LogCursor, LogFrom, LogRequest};
pub use machine::{DEFAULT_SSH_PORT, MachineId, canonical_host};
pub use manifest::{FileDigest, PackageKind, PackageManifest, SIGNING_DOMAIN, sha256};
pub use membership::{MAX_MACHINES, MAX_MEMBERSHIP_BYTES, MEMBERSHIP_NAMESPACE, Membership};
pub use messages::*;
pub use reason::{MAX_REASON_BYTES, Reason};
pub use record::{HEARTBEAT_ROUNDS, MachineRecord, PeerState};
pub use rekey::{MAX_SEALED_KEY, SignedRekey};
pub use signed::{
    CONTROL_NAMESPACE, CONTROL_PREFIX, ControlKind, MAX_CONTROL_SIGNATURE, MachineAppDesired,
    SignedBytes, SignedLiveTag, app_desired_signing_bytes, control_signing_bytes,
};
pub use version::Version;
pub use zones::{Zone, ZoneIdx, ZoneTree};

pub use release::{ReleasePrivateKey, ReleasePublicKey};
