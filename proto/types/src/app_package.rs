//! Application packages: the signed, lz4-compressed archive of an application directory.
//! Its spec, `app.toml`, is parsed by [`parse_app_toml`] (re-exported here from `app_toml.rs`).
//!
//! `"SMONAPP1" || u32 LE manifest length || manifest (wire encoding) || payload`, where the
//! payload is the lz4 block compression of the files' contents concatenated in manifest
//! order. The manifest (kind [`PackageKind::App`], name and version of the application) lists
//! every file's path, size, SHA-256 and mode, and carries the release signature; nothing is
//! used before the signature, every size and every hash verified.
//!
//! Reading an application directory from disk (`read_app_dir`) is `smon-proto`'s: this crate
//! does no IO.

use ssh_key::PublicKey;

pub use crate::app_toml::{APP_TOML, parse_app_toml, valid_app_name};
use crate::{AppSpec, FileDigest, PackageKind, PackageManifest, ProtoError, release, sha256};

const MAGIC: &[u8; 8] = b"SMONAPP1";
/// A package file larger than this is refused before it is read whole.
pub const MAX_APP_PACKAGE_BYTES: u64 = 64 << 20;
/// The files of a package, uncompressed, may not add up to more than this.
pub const MAX_APP_UNPACKED_BYTES: u64 = 256 << 20;
pub const MAX_APP_FILES: usize = 10_000;
const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// One file of an application directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppFile {
    /// Relative, `/`-separated.
    pub path: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

fn bad(reason: impl Into<String>) -> ProtoError {
    ProtoError::AppPackage(reason.into())
}

/// A relative path that stays inside the directory it is joined to.
pub fn safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 4096
        && !path.contains('\0')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// The unsigned manifest of an application's files.
pub fn app_manifest(spec: &AppSpec, files: &[AppFile]) -> PackageManifest {
    PackageManifest {
        kind: PackageKind::App,
        name: spec.name.clone(),
        version: spec.version,
        files: files
            .iter()
            .map(|f| FileDigest {
                path: f.path.clone(),
                size: f.data.len() as u64,
                sha256: sha256(&f.data),
                mode: f.mode,
            })
            .collect(),
        signer: String::new(),
        signature: Vec::new(),
    }
}

/// The package file of `files` (in the manifest's order) under a (signed) manifest.
pub fn encode_app_package(manifest: &PackageManifest, files: &[AppFile]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(files.iter().map(|f| f.data.len()).sum());
    for digest in &manifest.files {
        if let Some(f) = files.iter().find(|f| f.path == digest.path) {
            raw.extend_from_slice(&f.data);
        }
    }
    let payload = lz4_flex::block::compress(&raw);
    let encoded = bincode::serialize(manifest).expect("manifest serializes");
    let mut out = Vec::with_capacity(12 + encoded.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
    out.extend_from_slice(&encoded);
    out.extend_from_slice(&payload);
    out
}

/// Read a package's manifest (nothing is verified yet) and locate its payload.
pub fn split_app_package(file: &[u8]) -> Result<(PackageManifest, &[u8]), ProtoError> {
    if file.len() < 12 || &file[..8] != MAGIC {
        return Err(bad("not an application package (no SMONAPP1 header)"));
    }
    let len = u32::from_le_bytes(file[8..12].try_into().expect("4 bytes")) as usize;
    if len > MAX_MANIFEST_BYTES || len > file.len() - 12 {
        return Err(bad(format!("manifest length {len} is out of bounds")));
    }
    let manifest: PackageManifest = bincode::deserialize(&file[12..12 + len])
        .map_err(|e| bad(format!("the manifest does not decode: {e}")))?;
    Ok((manifest, &file[12 + len..]))
}

/// A package whose signature, sizes and hashes all verified.
#[derive(Clone, Debug)]
pub struct VerifiedApp {
    pub manifest: PackageManifest,
    pub spec: AppSpec,
    pub files: Vec<AppFile>,
}

/// Verify a package file against `trusted` (the cluster's release key, never the one the
/// package names): signature, file list, sizes, hashes, and its `app.toml`, which must name
/// the same application and version as the manifest.
pub fn verify_app_package(file: &[u8], trusted: &PublicKey) -> Result<VerifiedApp, ProtoError> {
    if file.len() as u64 > MAX_APP_PACKAGE_BYTES {
        return Err(bad(format!("{} bytes, over the cap", file.len())));
    }
    let (manifest, payload) = split_app_package(file)?;
    if manifest.kind != PackageKind::App {
        return Err(bad("not an application package"));
    }
    release::verify_signature(&manifest, trusted)?;
    if !valid_app_name(&manifest.name) {
        return Err(bad(format!("{:?} is not a valid name", manifest.name)));
    }
    if manifest.files.len() > MAX_APP_FILES {
        return Err(bad(format!("{} files, over the cap", manifest.files.len())));
    }
    let mut total = 0u64;
    let mut seen = std::collections::HashSet::new();
    for f in &manifest.files {
        if !safe_relative_path(&f.path) {
            return Err(bad(format!("{:?}: unusable path", f.path)));
        }
        if !seen.insert(f.path.as_str()) {
            return Err(bad(format!("{:?}: listed twice", f.path)));
        }
        total = total.saturating_add(f.size);
    }
    if total > MAX_APP_UNPACKED_BYTES {
        return Err(bad(format!("{total} bytes unpacked, over the cap")));
    }
    let mut raw = vec![0u8; total as usize];
    let n = lz4_flex::block::decompress_into(payload, &mut raw)
        .map_err(|e| bad(format!("the payload does not decompress: {e}")))?;
    if n as u64 != total {
        return Err(bad(format!(
            "the payload holds {n} bytes, the manifest {total}"
        )));
    }
    let mut files = Vec::with_capacity(manifest.files.len());
    let mut at = 0usize;
    for f in &manifest.files {
        let data = &raw[at..at + f.size as usize];
        at += f.size as usize;
        manifest.verify_file(&f.path, data)?;
        files.push(AppFile {
            path: f.path.clone(),
            mode: if f.mode & 0o111 != 0 { 0o755 } else { 0o644 },
            data: data.to_vec(),
        });
    }
    let toml = files
        .iter()
        .find(|f| f.path == APP_TOML)
        .ok_or_else(|| bad("the package has no app.toml"))?;
    let source_name = format!("{}/{APP_TOML}", manifest.name);
    let text = crate::text::decode_text(&source_name, toml.data.clone())?;
    let spec = parse_app_toml(&source_name, &text)?;
    if spec.name != manifest.name || spec.version != manifest.version {
        return Err(bad(format!(
            "app.toml says {} {}, the manifest {} {}",
            spec.name, spec.version, manifest.name, manifest.version
        )));
    }
    Ok(VerifiedApp {
        manifest,
        spec,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Version, app_toml::tests::GOOD};

    fn sample() -> (AppSpec, Vec<AppFile>) {
        let spec = parse_app_toml("app.toml", GOOD).unwrap();
        let files = vec![
            AppFile {
                path: "app.toml".into(),
                mode: 0o644,
                data: GOOD.as_bytes().to_vec(),
            },
            AppFile {
                path: "bin/run.sh".into(),
                mode: 0o755,
                data: b"#!/bin/sh\necho hi\n".repeat(100),
            },
        ];
        (spec, files)
    }

    #[test]
    fn packages_verify_and_tampering_is_refused() {
        let key = release::generate_release_key();
        let other = release::generate_release_key();
        let (spec, files) = sample();
        let mut manifest = app_manifest(&spec, &files);
        release::sign_manifest(&mut manifest, &key).unwrap();
        let file = encode_app_package(&manifest, &files);
        assert!(file.len() < 1000, "compressed: {} bytes", file.len());

        let app = verify_app_package(&file, key.public_key()).unwrap();
        assert_eq!(app.files, files);
        assert_eq!(app.spec, spec);

        let e = verify_app_package(&file, other.public_key()).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");

        // A flipped payload byte: the hash (or the decompression) catches it.
        let mut corrupted = file.clone();
        let last = corrupted.len() - 3;
        corrupted[last] ^= 0x55;
        assert!(verify_app_package(&corrupted, key.public_key()).is_err());

        // Unsigned.
        let unsigned = encode_app_package(&app_manifest(&spec, &files), &files);
        let e = verify_app_package(&unsigned, key.public_key()).unwrap_err();
        assert!(e.to_string().contains("not signed"), "{e}");

        // A manifest that lies about the version is signed, but app.toml disagrees.
        let mut lying = app_manifest(&spec, &files);
        lying.version = Version::new(9, 0, 0);
        release::sign_manifest(&mut lying, &key).unwrap();
        let e =
            verify_app_package(&encode_app_package(&lying, &files), key.public_key()).unwrap_err();
        assert!(e.to_string().contains("app.toml says"), "{e}");

        // Paths that escape are refused even when signed.
        let mut escaping = files.clone();
        escaping[1].path = "../evil".into();
        let mut m = app_manifest(&spec, &escaping);
        release::sign_manifest(&mut m, &key).unwrap();
        let e =
            verify_app_package(&encode_app_package(&m, &escaping), key.public_key()).unwrap_err();
        assert!(e.to_string().contains("unusable path"), "{e}");

        for junk in [&b""[..], b"SMONAPP1", b"SMONAPP1\xff\xff\xff\xff"] {
            assert!(split_app_package(junk).is_err());
        }
    }
}
