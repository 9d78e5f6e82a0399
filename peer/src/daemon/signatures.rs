//! The daemon's check of control state's signatures (issue 14, item 1): sshsig by the
//! cluster's release key, the key this peer was installed with (never one a message names).
//! The core decides what to check and refuses what fails ([`crate::core::SignatureCheck`]).

use smon_proto::{ReleasePublicKey, SignedBytes, release};

use crate::core::SignatureCheck;

/// Verifies with the trusted release key (ed25519, or whatever the cluster's key is).
#[derive(Debug)]
pub struct ReleaseKeySignatures(pub ReleasePublicKey);

impl SignatureCheck for ReleaseKeySignatures {
    fn check(&self, signed: SignedBytes<'_>) -> Result<(), String> {
        release::verify_bytes(signed.namespace, signed.bytes, signed.signature, &self.0)
    }
}
