//! `smon-proto`: the wire of smon, and the only crate that knows it.
//!
//! Types (machines, versions, livetag, membership, manifests, records, applications), the
//! tarpc services of the peer and the agent, and the Noise-encrypted transport they run on.

mod app;
pub mod app_package;
mod cluster;
mod cluster_key;
mod error;
mod idle;
mod livetag;
mod machine;
mod manifest;
mod membership;
pub mod noise;
mod operator_key;
mod record;
pub mod release;
mod service;
pub mod transport;
mod version;

pub use app::{AppDecl, AppReport, AppSpec, AppState, AppStatus, BackoffPolicy, DesiredState};
pub use cluster::{ClusterConfig, InstallSeed};
pub use cluster_key::{CLUSTER_KEY_LEN, ClusterKey};
pub use error::{ProtoError, Result};
pub use livetag::LiveTag;
pub use machine::MachineId;
pub use manifest::{FileDigest, PackageKind, PackageManifest, SIGNING_DOMAIN, sha256};
pub use membership::{MAX_MACHINES, MAX_MEMBERSHIP_BYTES, MEMBERSHIP_NAMESPACE, Membership};
pub use operator_key::{OPERATOR_KEY_FILE, OperatorKey};
pub use record::{MachineRecord, PeerState};
pub use service::*;
pub use version::Version;

pub use release::{ReleasePrivateKey, ReleasePublicKey};
/// tarpc itself, re-exported so that users of the services need no second copy of it.
pub use tarpc;
