//! Sealing a rotated cluster key under the key it replaces (issue 14, item 2): a peer that
//! holds the key of epoch E, and no other, can read the key of epoch E + 1 from a
//! [`SignedRekey`] (whose signature the core checks).
//!
//! `sealed` = 12-byte nonce || ChaCha20-Poly1305(old key, nonce, new key, aad). The design
//! note suggested a nonce derived from the epoch; a random one is used instead, because two
//! rotations attempted from the same key to the same epoch (a console that retried) would
//! otherwise reuse a nonce under one key. The aad is the epoch and the grace deadline, so a
//! sealed key cannot be moved to another rotation.

use chacha20poly1305::{
    ChaCha20Poly1305, Key, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use rand::RngExt;

use crate::{CLUSTER_KEY_LEN, ClusterKey, Keyring, SignedRekey};

const NONCE_LEN: usize = 12;

fn aad(epoch: u32, grace_until_ms: u64) -> [u8; 12] {
    let mut aad = [0u8; 12];
    aad[..4].copy_from_slice(&epoch.to_be_bytes());
    aad[4..].copy_from_slice(&grace_until_ms.to_be_bytes());
    aad
}

/// An unsigned rekey to `next` at epoch `keyring.epoch() + 1`, sealed under the keyring's
/// current key, with a grace period until `grace_until_ms` (unix ms). The caller signs it.
pub fn seal(keyring: &Keyring, next: &ClusterKey, grace_until_ms: u64) -> SignedRekey {
    let epoch = keyring.epoch() + 1;
    let nonce: [u8; NONCE_LEN] = rand::rng().random();
    let cipher = ChaCha20Poly1305::new(Key::from_slice(keyring.current().bytes()));
    let payload = Payload {
        msg: next.bytes(),
        aad: &aad(epoch, grace_until_ms),
    };
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), payload)
        .expect("encrypting 32 bytes cannot fail");
    SignedRekey {
        epoch,
        grace_until_ms,
        sealed: [nonce.as_slice(), &sealed].concat(),
        signature: Vec::new(),
    }
}

/// The keyring after `rekey`: its key unsealed with the key of `rekey.epoch - 1`, which
/// `keyring` must hold as its current key. The error says why not (an epoch that does not
/// follow ours, a sealed key that does not open). The signature is not checked here.
pub fn unseal(keyring: &Keyring, rekey: &SignedRekey) -> Result<Keyring, String> {
    if keyring.epoch().checked_add(1) != Some(rekey.epoch) {
        return Err(format!(
            "rekey to epoch {} does not follow this keyring's epoch {}",
            rekey.epoch,
            keyring.epoch()
        ));
    }
    if rekey.sealed.len() != NONCE_LEN + CLUSTER_KEY_LEN + 16 {
        return Err(format!("sealed key of {} bytes", rekey.sealed.len()));
    }
    let (nonce, sealed) = rekey.sealed.split_at(NONCE_LEN);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(keyring.current().bytes()));
    let payload = Payload {
        msg: sealed,
        aad: &aad(rekey.epoch, rekey.grace_until_ms),
    };
    let key = cipher
        .decrypt(Nonce::from_slice(nonce), payload)
        .map_err(|_| "the sealed key does not open with this keyring's key".to_string())?;
    let key: [u8; CLUSTER_KEY_LEN] = key.try_into().expect("32 bytes, checked above");
    keyring
        .rotated(
            rekey.epoch,
            ClusterKey::from_bytes(key),
            rekey.grace_until_ms,
        )
        .ok_or_else(|| "not a newer epoch".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_previous_key_unseals_and_nothing_can_be_moved() {
        let ring = Keyring::from(ClusterKey::generate());
        let next = ClusterKey::generate();
        let rekey = seal(&ring, &next, 5_000);
        assert_eq!(rekey.epoch, 1);
        let rotated = unseal(&ring, &rekey).unwrap();
        assert_eq!(rotated.epoch(), 1);
        assert_eq!(rotated.current(), &next);
        assert_eq!(rotated.previous().unwrap().key, *ring.current());
        assert_eq!(rotated.previous().unwrap().grace_until_ms, 5_000);

        let stranger = Keyring::from(ClusterKey::generate());
        assert!(
            unseal(&stranger, &rekey)
                .unwrap_err()
                .contains("does not open")
        );
        let moved = SignedRekey {
            grace_until_ms: 9_999,
            ..rekey.clone()
        };
        assert!(unseal(&ring, &moved).unwrap_err().contains("does not open"));
        let skipped = seal(&rotated, &ClusterKey::generate(), 6_000);
        assert!(
            unseal(&ring, &skipped)
                .unwrap_err()
                .contains("does not follow")
        );
        assert_eq!(unseal(&rotated, &skipped).unwrap().epoch(), 2);
        let cut = SignedRekey {
            sealed: rekey.sealed[1..].to_vec(),
            ..rekey
        };
        assert!(unseal(&ring, &cut).unwrap_err().contains("59 bytes"));
    }
}
