//! Fixed keys, so that a seed made once (a signed package, a first handshake message) stays
//! valid input every time the corpus is replayed.

use std::sync::OnceLock;

use smon_proto::{ClusterKey, ReleasePrivateKey, ReleasePublicKey};
use ssh_key::private::Ed25519Keypair;

/// K_E of the fuzzed cluster.
pub fn cluster_key() -> ClusterKey {
    ClusterKey::from_bytes([0x4b; 32])
}

/// The cluster's release key (signs packages and memberships), ed25519 from a fixed seed.
pub fn release_private() -> &'static ReleasePrivateKey {
    static KEY: OnceLock<ReleasePrivateKey> = OnceLock::new();
    KEY.get_or_init(|| ReleasePrivateKey::from(Ed25519Keypair::from_seed(&[0x5e; 32])))
}

pub fn release_public() -> &'static ReleasePublicKey {
    release_private().public_key()
}

/// An RSA public key (made with `ssh-keygen -t rsa -b 2048`; the agent's checks need only the
/// public half).
const AGENT_RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC8gOyii7L0cNX1qUHdGvAQghMq/739jyR9wNz+Rasc3SXML3UbVczLFceNTvbq4GHsntE+ogr9frMyL1NSBePN96Z9kc/qLOy7MRYpiSwVedBChO/F5vhcv0pK3K/3iOuWdKzojvpsKAW3UI6w3fStj9VID+oaIuhQqJjIUTzQAxjBshH+1j8ME3SW66x1eHJTPqSgbExPWJJodCLOXKyQ33/R4tfGQBsqxxL8hvOC8a8qfaKJ5Vg/IE8XWLFx/o9TA+axOFPvs3XCPqCyTeXB5Yxi1auXhlTNt3HZWd044dDhxoINv6M19pll1h8caB2jGdGEj9FZQFMVRSmTyuJz fuzz";

/// The agent's key, as the agent holds it: the public key and its SSH wire blob. `rsa`
/// picks the RSA key, otherwise ed25519 (the release key's public half).
pub fn agent_key(rsa: bool) -> &'static (ReleasePublicKey, Vec<u8>) {
    static ED: OnceLock<(ReleasePublicKey, Vec<u8>)> = OnceLock::new();
    static RSA: OnceLock<(ReleasePublicKey, Vec<u8>)> = OnceLock::new();
    let with_blob = |key: ReleasePublicKey| {
        let blob = key.to_bytes().expect("a public key encodes");
        (key, blob)
    };
    if rsa {
        RSA.get_or_init(|| {
            with_blob(ReleasePublicKey::from_openssh(AGENT_RSA).expect("the fixed RSA key"))
        })
    } else {
        ED.get_or_init(|| with_blob(release_public().clone()))
    }
}
