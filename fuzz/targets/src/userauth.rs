//! The agent's check of an SSH user-auth request (what a peer asks it to sign): the first
//! input byte picks the agent's key (ed25519 or RSA), the rest is the request. A request that
//! passes is exactly what an SSH client builds for that user, algorithm and key.

use smon_agent::userauth::{self, METHOD_PUBLICKEY};

use crate::keys;

pub fn run(data: &[u8]) {
    let Some((&which, request)) = data.split_first() else {
        return;
    };
    let (key, blob) = keys::agent_key(which & 1 == 1);
    let Ok(parsed) = userauth::parse(request, key, blob) else {
        return;
    };
    assert!(!parsed.user.is_empty());
    if parsed.method == METHOD_PUBLICKEY {
        let len = u32::from_be_bytes(request[..4].try_into().expect("4 bytes")) as usize;
        let session = &request[4..4 + len];
        let rebuilt = userauth::build(session, &parsed.user, &parsed.algorithm, blob);
        assert_eq!(
            rebuilt, request,
            "the accepted request is not what a client sends"
        );
    }
}

/// Genuine requests for both keys (the first one is used elsewhere as a challenge), every
/// session-id length, the host-bound method, and near misses.
pub fn seeds() -> Vec<Vec<u8>> {
    let (_, ed) = keys::agent_key(false);
    let (_, rsa) = keys::agent_key(true);
    let mut seeds = vec![
        [
            vec![0],
            userauth::build(&[7; 32], "alice", "ssh-ed25519", ed),
        ]
        .concat(),
        [
            vec![1],
            userauth::build(&[9; 64], "root", "rsa-sha2-512", rsa),
        ]
        .concat(),
        [
            vec![1],
            userauth::build(&[9; 20], "bob", "rsa-sha2-256", rsa),
        ]
        .concat(),
        [vec![1], userauth::build(&[9; 48], "bob", "ssh-rsa", rsa)].concat(),
        [
            vec![0],
            userauth::build(&[7; 31], "alice", "ssh-ed25519", ed),
        ]
        .concat(),
        [vec![0], userauth::build(&[7; 32], "", "ssh-ed25519", ed)].concat(),
    ];
    // The host-bound method: the method name swapped, the server's host key appended.
    let mut bound = userauth::build(&[3; 32], "carol", "ssh-ed25519", ed);
    let plain = userauth::METHOD_PUBLICKEY.as_bytes();
    let at = bound
        .windows(plain.len())
        .position(|w| w == plain)
        .expect("the method is in the request")
        - 4;
    let method = userauth::METHOD_HOSTBOUND.as_bytes();
    bound.splice(
        at..at + 4 + plain.len(),
        [&(method.len() as u32).to_be_bytes()[..], method].concat(),
    );
    bound.extend_from_slice(&(ed.len() as u32).to_be_bytes());
    bound.extend_from_slice(ed);
    seeds.push([vec![0], bound].concat());
    seeds
}
