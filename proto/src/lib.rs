//! `smon-proto`: the wire of smon, and the only crate that knows it.
//!
//! Everything of [`smon_proto_types`] (machines, versions, livetag, membership, manifests,
//! records, applications, package formats, the RPC messages), re-exported here so that users
//! name one crate; plus what does IO: the tarpc services of the peer and the agent, the
//! Noise-encrypted transport they run on, the chunked transfer of packages over it, the key
//! files, and reading application directories.

pub use smon_proto_types::*;

pub mod app_package;
pub mod chunked;
mod cluster;
mod cluster_key;
pub mod door;
mod envelope;
pub mod files;
mod idle;
pub mod keyring;
mod keyring_file;
mod lock_holder;
pub mod log_file;
pub mod noise;
mod operator_key;
pub mod rekey_seal;
pub mod release;
mod service;
pub mod token_bucket;
pub mod transport;

pub use cluster::{ClusterConfig, InstallSeed, MetricsSetting};
pub use cluster_key::{CLUSTER_KEY_LEN, ClusterKey};
pub use files::{ClusterFiles, MachineFiles, SSH_ROOT_IN_HOME, read_text, write_atomic};
pub use keyring::{KeyEpoch, Keyring, KeyringHandle, NoiseKeys, PreviousKey};
pub use keyring_file::{KEYRING_MAGIC, KeyringFile};
pub use lock_holder::lock_holder;
pub use log_file::RotatingLog;
pub use operator_key::OperatorKey;
pub use service::*;

/// tarpc itself, re-exported so that users of the services need no second copy of it.
pub use tarpc;
