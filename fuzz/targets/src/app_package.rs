//! The application package, as a peer verifies it after a console pushed it or another peer
//! served it: `verify_app_package` against the cluster's release key. The first input byte
//! chooses between the file as it is (a forger's: the signature stops it) and the file with
//! its manifest re-signed by the release key (the operator's own package, however odd), which
//! takes the fuzzer past the signature into sizes, paths, decompression and `app.toml`.

use smon_proto::{
    PackageManifest,
    app_package::{self, AppFile, safe_relative_path, split_app_package, verify_app_package},
    release,
};

use crate::keys;

const MAGIC: &[u8; 8] = b"SMONAPP1";

pub fn run(data: &[u8]) {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let file = if mode & 1 == 1 {
        resigned(file)
    } else {
        file.to_vec()
    };
    let Ok(app) = verify_app_package(&file, keys::release_public()) else {
        return;
    };
    assert_eq!(app.spec.name, app.manifest.name);
    assert_eq!(app.spec.version, app.manifest.version);
    assert_eq!(app.files.len(), app.manifest.files.len());
    for (f, digest) in app.files.iter().zip(&app.manifest.files) {
        assert!(safe_relative_path(&f.path), "{:?}", f.path);
        assert_eq!(f.data.len() as u64, digest.size);
        assert!(f.mode == 0o644 || f.mode == 0o755);
    }
}

/// `file` with its manifest signed by the release key (unchanged if it has no manifest).
fn resigned(file: &[u8]) -> Vec<u8> {
    let Ok((mut manifest, payload)) = split_app_package(file) else {
        return file.to_vec();
    };
    sign(&mut manifest);
    let encoded = bincode::serialize(&manifest).expect("a manifest encodes");
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
    out.extend_from_slice(&encoded);
    out.extend_from_slice(payload);
    out
}

fn sign(manifest: &mut PackageManifest) {
    release::sign_manifest(manifest, keys::release_private()).expect("signing");
}

/// A genuine signed package of a small application, as is and to be re-signed; an unsigned
/// one; one whose app.toml disagrees with its manifest.
pub fn seeds() -> Vec<Vec<u8>> {
    let toml = "name = \"demo\"\nversion = \"1.0.0\"\nstart = \"exec sleep 1000\"\n";
    let files = |toml: &str| {
        vec![
            AppFile {
                path: "app.toml".into(),
                mode: 0o644,
                data: toml.as_bytes().to_vec(),
            },
            AppFile {
                path: "bin/run".into(),
                mode: 0o755,
                data: b"#!/bin/sh\nexec sleep 1000\n".to_vec(),
            },
        ]
    };
    let package = |toml: &str, signed: bool| {
        let spec = app_package::parse_app_toml("app.toml", toml).expect("a seed app.toml");
        let mut manifest = app_package::app_manifest(&spec, &files(toml));
        if signed {
            sign(&mut manifest);
        }
        app_package::encode_app_package(&manifest, &files(toml))
    };
    let good = package(toml, true);
    let mut lying = app_package::app_manifest(
        &app_package::parse_app_toml("app.toml", toml).expect("toml"),
        &files(toml),
    );
    lying.version = smon_proto::Version::new(2, 0, 0);
    sign(&mut lying);
    let lying = app_package::encode_app_package(&lying, &files(toml));
    vec![
        [&[0u8][..], &good].concat(),
        [&[1u8][..], &good].concat(),
        [&[0u8][..], &package(toml, false)].concat(),
        [&[1u8][..], &lying].concat(),
    ]
}
