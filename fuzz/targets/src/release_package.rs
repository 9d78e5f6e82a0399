//! The release package (the peer binary with its manifest trailer), as a peer verifies one a
//! console pushed or another peer served, and as it reads its installed versions: the first
//! input byte chooses the file as it is, or re-signed by the release key (the operator's own
//! package) to reach the checks behind the signature.

use smon_proto::release::{self, encode_package, split_package, verify_package};

use crate::keys;

pub fn run(data: &[u8]) {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let file = match split_package(file) {
        Ok((binary, mut manifest)) if mode & 1 == 1 => {
            release::sign_manifest(&mut manifest, keys::release_private()).expect("signing");
            encode_package(binary, &manifest)
        }
        _ => file.to_vec(),
    };
    let Ok((binary, manifest)) = verify_package(&file, keys::release_public()) else {
        return;
    };
    manifest
        .verify_file(release::PEER_FILE, binary)
        .expect("a verified package's binary matches its manifest");
}

pub fn seeds() -> Vec<Vec<u8>> {
    let binary = b"\x7fELF\x02\x01\x01 a pretend peer binary".to_vec();
    let mut manifest = release::package_manifest(&binary, smon_proto::Version::new(1, 4, 0));
    let unsigned = encode_package(&binary, &manifest);
    release::sign_manifest(&mut manifest, keys::release_private()).expect("signing");
    let signed = encode_package(&binary, &manifest);
    vec![
        [&[0u8][..], &signed].concat(),
        [&[1u8][..], &signed].concat(),
        [&[0u8][..], &unsigned].concat(),
        [&[1u8][..], &unsigned].concat(),
    ]
}
