//! The package manifest: what a release (of the peer or of an application) contains, with the
//! SHA-256 of every file and the release signature over everything else.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{ProtoError, Version};

/// Domain separation for release signatures: a signature over a manifest can never be
/// mistaken for a signature over anything else (an SSH login, say).
pub const SIGNING_DOMAIN: &[u8] = b"smon-release-manifest-v1\0";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PackageKind {
    Peer,
    App,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub path: String,
    pub size: u64,
    pub sha256: [u8; 32],
    /// Unix permission bits the file is installed with (only 0o644 and 0o755 are used).
    pub mode: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageManifest {
    pub kind: PackageKind,
    pub name: String,
    pub version: Version,
    pub files: Vec<FileDigest>,
    /// The signer's public key, OpenSSH text form.
    pub signer: String,
    /// SSH signature blob over [`PackageManifest::signing_bytes`]; empty until signed.
    pub signature: Vec<u8>,
}

impl PackageManifest {
    /// The exact bytes the release key signs: the domain, then the manifest without its
    /// signature, in the wire encoding.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let unsigned = PackageManifest {
            signature: Vec::new(),
            ..self.clone()
        };
        let mut bytes = SIGNING_DOMAIN.to_vec();
        bytes.extend(bincode::serialize(&unsigned).expect("manifest serializes"));
        bytes
    }

    /// Check one file's content against the manifest.
    pub fn verify_file(&self, path: &str, content: &[u8]) -> Result<(), ProtoError> {
        let entry = self
            .files
            .iter()
            .find(|f| f.path == path)
            .ok_or_else(|| ProtoError::Manifest(format!("{path}: not in the manifest")))?;
        if entry.size != content.len() as u64 {
            return Err(ProtoError::Manifest(format!(
                "{path}: {} bytes, the manifest says {}",
                content.len(),
                entry.size
            )));
        }
        if sha256(content) != entry.sha256 {
            return Err(ProtoError::Manifest(format!("{path}: SHA-256 mismatch")));
        }
        Ok(())
    }
}

pub fn sha256(content: &[u8]) -> [u8; 32] {
    Sha256::digest(content).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_files_and_signs_without_the_signature() {
        let mut m = PackageManifest {
            kind: PackageKind::Peer,
            name: "smon-peer".into(),
            version: Version::new(1, 0, 0),
            files: vec![FileDigest {
                path: "smon-peer".into(),
                size: 3,
                sha256: sha256(b"abc"),
                mode: 0o755,
            }],
            signer: String::new(),
            signature: Vec::new(),
        };
        m.verify_file("smon-peer", b"abc").unwrap();
        assert!(m.verify_file("smon-peer", b"abd").is_err());
        assert!(m.verify_file("smon-peer", b"abcd").is_err());
        assert!(m.verify_file("other", b"abc").is_err());
        let before = m.signing_bytes();
        m.signature = vec![1, 2, 3];
        assert_eq!(before, m.signing_bytes());
        assert!(before.starts_with(SIGNING_DOMAIN));
    }
}
