//! The membership blob, as a peer takes it from the network (`SetMembership`, a member
//! exchange), from its seed or from its database: decoded, its signature checked against the
//! release key, every machine's pinned host key looked up. A list that decodes gives every
//! machine its own index (gossip names machines by index) and re-encodes to an equal list.

use smon_proto::{MachineId, Membership, release};

use crate::keys;

pub fn run(data: &[u8]) {
    let Ok(list) = Membership::decode(data) else {
        return;
    };
    let _ = list.verify_signature(keys::release_public());
    for (i, machine) in list.machines().iter().enumerate() {
        assert_eq!(
            list.index_of(machine),
            Some(i as u32),
            "{machine} is not at {i}"
        );
        let _ = list.host_key(machine);
    }
    let _ = list.unpinned().count();
    let again = Membership::decode(&list.encode()).expect("a decoded list re-encodes");
    assert_eq!(again, list, "the list changed on a round trip");
    assert_eq!(again.signing_bytes(), list.signing_bytes());
}

/// Seeds: an empty list, local machines, every SSH form, and a signed list with pinned keys
/// (signed by the fixed release key, so its signature verifies). The last is the richest.
pub fn seeds() -> Vec<Vec<u8>> {
    let parse = |text: &str, version| Membership::parse("seed", text, version).expect("a list");
    let local = parse("local:m001\nlocal:m002\nlocal:m010\n", 2);
    let ssh = parse("h1\nalice@h2:2222\n[::1]:22\n10.0.0.1\nlocal:a\n", 3);
    let key = keys::release_public().clone();
    let mut pinned = ssh
        .clone()
        .with_host_keys(|m| matches!(m, MachineId::Ssh { .. }).then(|| key.clone()));
    let signature = release::sign_bytes(
        smon_proto::MEMBERSHIP_NAMESPACE,
        &pinned.signing_bytes(),
        keys::release_private(),
    )
    .expect("signing");
    pinned.set_signature(signature);
    vec![
        Membership::new(1, Vec::new()).encode(),
        local.encode(),
        ssh.encode(),
        pinned.encode(),
    ]
}
