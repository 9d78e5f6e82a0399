//! Release packages and their signatures: the formats of `smon-proto-types` (re-exported
//! whole), and the generation of a release key, which draws from the thread's RNG and so
//! lives here.

pub use smon_proto_types::release::*;

/// A new ed25519 release key.
pub fn generate_release_key() -> ReleasePrivateKey {
    ReleasePrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("ed25519 key generation")
}
