//! The operator key: a secret that only the operator's cluster directory holds (never a peer),
//! with which the console proves to the agent that a release signature is wanted by the
//! operator. K_E alone is not enough: every peer holds K_E, and a release signed for one of
//! them would be installed by all.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{ClusterKey, PackageManifest, ProtoError};

/// What the proof is computed over, before the manifest's signing bytes.
const DOMAIN: &[u8] = b"smon-operator/1 ";

#[derive(Clone, PartialEq, Eq)]
pub struct OperatorKey(ClusterKey);

impl std::fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorKey(..)")
    }
}

impl OperatorKey {
    /// Create a new key file (32 random bytes, mode 0600); never overwrites.
    pub fn create(path: &Path) -> Result<Self, ProtoError> {
        ClusterKey::create(path).map(Self)
    }

    /// Load a key file; one that others can read, or of the wrong size, is refused.
    pub fn load(path: &Path) -> Result<Self, ProtoError> {
        ClusterKey::load(path).map(Self)
    }

    fn mac(&self, purpose: &[u8], data: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.0.bytes()).expect("HMAC takes any key length");
        mac.update(DOMAIN);
        mac.update(purpose);
        mac.update(b"\0");
        mac.update(data);
        mac
    }

    /// Over the manifest's content: who signs it, and how, is not the operator's to say.
    fn manifest_mac(&self, manifest: &PackageManifest) -> Hmac<Sha256> {
        let unsigned = PackageManifest {
            signer: String::new(),
            signature: Vec::new(),
            ..manifest.clone()
        };
        self.mac(b"sign_package", &unsigned.signing_bytes())
    }

    /// The proof that the holder of this key asks for `manifest` to be signed.
    pub fn prove(&self, manifest: &PackageManifest) -> Vec<u8> {
        self.manifest_mac(manifest).finalize().into_bytes().to_vec()
    }

    /// Whether `proof` was made with this key for exactly this manifest (constant time).
    pub fn verify(&self, manifest: &PackageManifest, proof: &[u8]) -> bool {
        self.manifest_mac(manifest).verify_slice(proof).is_ok()
    }

    /// The proof that the holder of this key asks for the membership `blob` to be signed.
    pub fn prove_membership(&self, blob: &[u8]) -> Vec<u8> {
        self.mac(b"sign_membership", blob)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    pub fn verify_membership(&self, blob: &[u8], proof: &[u8]) -> bool {
        self.mac(b"sign_membership", blob)
            .verify_slice(proof)
            .is_ok()
    }

    /// The proof that the holder of this key asks for control state's signed `bytes` (a
    /// livetag, an application's desired state) to be signed.
    pub fn prove_control(&self, bytes: &[u8]) -> Vec<u8> {
        self.mac(b"sign_control", bytes)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    pub fn verify_control(&self, bytes: &[u8], proof: &[u8]) -> bool {
        self.mac(b"sign_control", bytes).verify_slice(proof).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Version, release::package_manifest};

    #[test]
    fn a_proof_holds_for_its_manifest_and_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let key =
            OperatorKey::create(&crate::ClusterFiles::new(dir.path()).operator_key()).unwrap();
        let other = OperatorKey::create(&dir.path().join("other.key")).unwrap();
        let manifest = package_manifest(b"binary", Version::new(1, 0, 0));
        let proof = key.prove(&manifest);
        assert!(key.verify(&manifest, &proof));
        assert!(!other.verify(&manifest, &proof));
        let changed = package_manifest(b"binary!", Version::new(1, 0, 0));
        assert!(!key.verify(&changed, &proof));
        assert!(!key.verify(&manifest, &proof[..31]));
        assert!(!key.verify(&manifest, b""));
        // A proof for one purpose is not one for the other.
        let bytes = manifest.signing_bytes();
        assert!(key.verify_membership(b"blob", &key.prove_membership(b"blob")));
        assert!(!key.verify_membership(b"blob", &key.prove_membership(b"blob2")));
        assert!(!key.verify_membership(&bytes, &proof));
    }
}
