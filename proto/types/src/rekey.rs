//! A cluster-key rotation as it spreads (issue 14, item 2): the new K_E sealed under the
//! current one, signed by the release key like the rest of the control state (`signed.rs`).
//! Sealing and unsealing are `smon_proto::rekey_seal`'s (this crate does no cryptography
//! with keys it does not verify).

use serde::{Deserialize, Serialize};

use crate::{CONTROL_NAMESPACE, ControlKind, SignedBytes, control_signing_bytes};

/// The longest sealed key a rekey may carry: a 12-byte nonce, 32 bytes of key and a 16-byte
/// tag; anything longer is refused before it is looked at.
pub const MAX_SEALED_KEY: usize = 12 + 32 + 16;

/// A rotation to the key of `epoch`, accepted next to the previous key until
/// `grace_until_ms`. Epoch 0 (the default) is the key `init` made and needs no signature.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedRekey {
    /// The epoch of the new key: one more than the key it is sealed under.
    pub epoch: u32,
    /// End of the grace period, unix milliseconds: until then both keys are accepted.
    pub grace_until_ms: u64,
    /// The new key sealed under the key of `epoch - 1` (nonce, ChaCha20-Poly1305 ciphertext
    /// and tag; see `smon_proto::rekey_seal`).
    pub sealed: Vec<u8>,
    /// sshsig (PEM) over [`SignedRekey::signing_bytes`]; empty if unsigned.
    pub signature: Vec<u8>,
}

impl SignedRekey {
    /// The bytes signed: kind rekey, the epoch, then the grace deadline (u64 big-endian) and
    /// the sealed key.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut content = Vec::with_capacity(8 + self.sealed.len());
        content.extend_from_slice(&self.grace_until_ms.to_be_bytes());
        content.extend_from_slice(&self.sealed);
        control_signing_bytes(ControlKind::Rekey, u64::from(self.epoch), &content)
    }

    /// Whether this rotation supersedes `other`: a newer epoch wins.
    pub fn is_newer_than(&self, other: &SignedRekey) -> bool {
        self.epoch > other.epoch
    }

    /// What a verifier checks, given the signed bytes `bytes` ([`SignedRekey::signing_bytes`]).
    pub fn signed<'a>(&'a self, bytes: &'a [u8]) -> SignedBytes<'a> {
        SignedBytes {
            namespace: CONTROL_NAMESPACE,
            bytes,
            signature: &self.signature,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_grace_and_sealed_key_are_all_signed() {
        let rekey = SignedRekey {
            epoch: 2,
            grace_until_ms: 1_000,
            sealed: vec![1, 2, 3],
            signature: Vec::new(),
        };
        let bytes = rekey.signing_bytes();
        let changed = [
            SignedRekey {
                epoch: 3,
                ..rekey.clone()
            },
            SignedRekey {
                grace_until_ms: 1_001,
                ..rekey.clone()
            },
            SignedRekey {
                sealed: vec![1, 2, 4],
                ..rekey.clone()
            },
        ];
        for other in changed {
            assert_ne!(other.signing_bytes(), bytes, "{other:?}");
        }
        assert!(
            SignedRekey {
                epoch: 3,
                ..rekey.clone()
            }
            .is_newer_than(&rekey)
                && !rekey.is_newer_than(&rekey)
        );
        // Not the bytes of another kind with the same number and content.
        let mut content = 1_000u64.to_be_bytes().to_vec();
        content.extend_from_slice(&[1, 2, 3]);
        assert_ne!(
            control_signing_bytes(ControlKind::Livetag, 2, &content),
            bytes
        );
    }
}
