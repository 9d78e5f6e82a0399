//! Release packages and their signatures.
//!
//! A package is one executable file: the peer binary with a trailer appended (ELF ignores
//! trailing bytes), so the file that is copied to a machine is also the installer that runs
//! there. Trailer: `manifest (wire encoding) || u32 LE manifest length || "SMONPKG1"`.
//! The manifest holds the SHA-256 of the binary part and an SSH signature ("sshsig", namespace
//! `smon-release`) over [`PackageManifest::signing_bytes`] by the release key.

use ssh_key::{HashAlg, PrivateKey, PublicKey, SshSig};

use crate::{FileDigest, PackageKind, PackageManifest, ProtoError, Version, sha256};

const MAGIC: &[u8; 8] = b"SMONPKG1";
/// The file name of the peer binary inside a package manifest.
pub const PEER_FILE: &str = "smon-peer";
/// sshsig namespace of release signatures.
pub const SIGNATURE_NAMESPACE: &str = "smon-release";
/// A package larger than this is refused before it is read whole.
pub const MAX_PACKAGE_BYTES: u64 = 64 << 20;
const MAX_MANIFEST_BYTES: usize = 1 << 20;

fn bad(reason: impl Into<String>) -> ProtoError {
    ProtoError::Manifest(reason.into())
}

/// Build an unsigned package of `binary` as `version`.
pub fn package_manifest(binary: &[u8], version: Version) -> PackageManifest {
    PackageManifest {
        kind: PackageKind::Peer,
        name: PEER_FILE.into(),
        version,
        files: vec![FileDigest {
            path: PEER_FILE.into(),
            size: binary.len() as u64,
            sha256: sha256(binary),
            mode: 0o755,
        }],
        signer: String::new(),
        signature: Vec::new(),
    }
}

/// The package file: `binary` followed by the trailer.
pub fn encode_package(binary: &[u8], manifest: &PackageManifest) -> Vec<u8> {
    let encoded = bincode::serialize(manifest).expect("manifest serializes");
    let mut file = Vec::with_capacity(binary.len() + encoded.len() + 12);
    file.extend_from_slice(binary);
    file.extend_from_slice(&encoded);
    file.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
    file.extend_from_slice(MAGIC);
    file
}

/// Split a package file into its binary part and its manifest (nothing is verified yet).
pub fn split_package(file: &[u8]) -> Result<(&[u8], PackageManifest), ProtoError> {
    if file.len() < 12 || &file[file.len() - 8..] != MAGIC {
        return Err(bad("not an smon package (no SMONPKG1 trailer)"));
    }
    let len_at = file.len() - 12;
    let len = u32::from_le_bytes(file[len_at..len_at + 4].try_into().expect("4 bytes")) as usize;
    if len > MAX_MANIFEST_BYTES || len > len_at {
        return Err(bad(format!("manifest length {len} is out of bounds")));
    }
    let manifest_at = len_at - len;
    let manifest: PackageManifest = bincode::deserialize(&file[manifest_at..len_at])
        .map_err(|e| bad(format!("manifest does not decode: {e}")))?;
    Ok((&file[..manifest_at], manifest))
}

/// Verify a package file: the binary's size and SHA-256, and the release signature by
/// `trusted` (the release key the cluster was set up with, never the one the package names).
pub fn verify_package<'a>(
    file: &'a [u8],
    trusted: &PublicKey,
) -> Result<(&'a [u8], PackageManifest), ProtoError> {
    let (binary, manifest) = split_package(file)?;
    if manifest.kind != PackageKind::Peer {
        return Err(bad("not a peer package"));
    }
    manifest.verify_file(PEER_FILE, binary)?;
    verify_signature(&manifest, trusted)?;
    Ok((binary, manifest))
}

pub fn verify_signature(manifest: &PackageManifest, trusted: &PublicKey) -> Result<(), ProtoError> {
    if manifest.signature.is_empty() {
        return Err(bad("the package is not signed"));
    }
    verify_bytes(
        SIGNATURE_NAMESPACE,
        &manifest.signing_bytes(),
        &manifest.signature,
        trusted,
    )
    .map_err(|e| bad(format!("the release signature: {e}")))
}

/// Sign a manifest with a private key held in this process (the agent signs with its own).
pub fn sign_manifest(manifest: &mut PackageManifest, key: &PrivateKey) -> Result<(), ProtoError> {
    manifest.signer = key
        .public_key()
        .to_openssh()
        .map_err(|e| bad(format!("public key: {e}")))?;
    manifest.signature.clear();
    manifest.signature = sign_bytes(SIGNATURE_NAMESPACE, &manifest.signing_bytes(), key)?;
    Ok(())
}

/// An sshsig (PEM) of `data` in `namespace` by `key`.
pub fn sign_bytes(namespace: &str, data: &[u8], key: &PrivateKey) -> Result<Vec<u8>, ProtoError> {
    let sig = key
        .sign(namespace, HashAlg::Sha512, data)
        .map_err(|e| bad(format!("signing: {e}")))?;
    Ok(sig
        .to_pem(LineEnding::LF)
        .map_err(|e| bad(format!("signature: {e}")))?
        .into_bytes())
}

/// Check an sshsig (PEM) of `data` in `namespace` against `trusted`.
pub fn verify_bytes(
    namespace: &str,
    data: &[u8],
    signature: &[u8],
    trusted: &PublicKey,
) -> Result<(), String> {
    let sig = SshSig::from_pem(signature).map_err(|e| format!("does not decode: {e}"))?;
    trusted
        .verify(namespace, data, &sig)
        .map_err(|_| "does not verify with the cluster's release key".to_owned())
}

/// A new ed25519 release key for tests: a distinct, seeded key per call (this crate draws
/// from no global RNG; `smon_proto::release::generate_release_key` is the real one).
#[cfg(test)]
pub(crate) fn generate_release_key() -> PrivateKey {
    use rand::SeedableRng;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: AtomicU64 = AtomicU64::new(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED.fetch_add(1, Ordering::Relaxed));
    PrivateKey::random(&mut rng, ssh_key::Algorithm::Ed25519).expect("ed25519 key generation")
}

pub use ssh_key::{
    Algorithm, LineEnding, PrivateKey as ReleasePrivateKey, PublicKey as ReleasePublicKey,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_packages_verify_and_tampering_is_refused() {
        let key = generate_release_key();
        let other = generate_release_key();
        let binary = b"\x7fELF pretend binary".to_vec();
        let mut manifest = package_manifest(&binary, Version::new(1, 2, 3));
        sign_manifest(&mut manifest, &key).unwrap();
        let file = encode_package(&binary, &manifest);

        let (bin, m) = verify_package(&file, key.public_key()).unwrap();
        assert_eq!(bin, &binary[..]);
        assert_eq!(m.version, Version::new(1, 2, 3));

        let err = verify_package(&file, other.public_key())
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not verify"), "{err}");

        let mut corrupted = file.clone();
        corrupted[3] ^= 1;
        let err = verify_package(&corrupted, key.public_key())
            .unwrap_err()
            .to_string();
        assert!(err.contains("SHA-256"), "{err}");

        let mut relabelled = manifest.clone();
        relabelled.version = Version::new(9, 0, 0);
        let forged = encode_package(&binary, &relabelled);
        assert!(verify_package(&forged, key.public_key()).is_err());

        let unsigned = encode_package(&binary, &package_manifest(&binary, Version::new(1, 0, 0)));
        assert!(
            verify_package(&unsigned, key.public_key())
                .unwrap_err()
                .to_string()
                .contains("not signed")
        );

        for junk in [&b""[..], b"SMONPKG1", &file[..file.len() - 1]] {
            assert!(split_package(junk).is_err());
        }
    }
}
