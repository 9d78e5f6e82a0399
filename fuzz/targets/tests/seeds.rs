//! The seeds are genuine encodings: the ones meant to pass each decoder do pass it, so the
//! fuzzer starts from inside every format rather than at its first check.

use smon_fuzz_targets::{keys, known_hosts, membership, noise_handshake, rpc, userauth};
use smon_proto::{
    Membership, PeerServiceRequest, PeerServiceResponse, app_package, noise, release,
};

#[test]
fn the_first_handshake_message_completes_a_handshake_under_the_fixed_key() {
    let hello = noise_handshake::first_message(&keys::cluster_key());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut io = tokio::io::join(&hello[..], tokio::io::sink());
    runtime
        .block_on(noise::respond(
            &mut io,
            &keys::cluster_key(),
            "seed",
            noise::HANDSHAKE_TIMEOUT,
        ))
        .expect("the seed's handshake message is accepted");
}

#[test]
fn packages_memberships_and_requests_decode_and_verify() {
    let blobs = membership::seeds();
    let pinned = Membership::decode(blobs.last().unwrap()).unwrap();
    assert!(pinned.has_pins());
    pinned.verify_signature(keys::release_public()).unwrap();

    let apps = smon_fuzz_targets::app_package::seeds();
    app_package::verify_app_package(&apps[0][1..], keys::release_public()).unwrap();
    let releases = smon_fuzz_targets::release_package::seeds();
    release::verify_package(&releases[0][1..], keys::release_public()).unwrap();

    for seed in rpc::peer_request_seeds() {
        rpc::request::<PeerServiceRequest, PeerServiceResponse>(&seed).unwrap();
    }
    for seed in rpc::peer_reply_seeds() {
        rpc::reply::<PeerServiceRequest, PeerServiceResponse>(&seed).unwrap();
    }
}

#[test]
fn genuine_user_auth_requests_pass_the_agents_check() {
    let seeds = userauth::seeds();
    for (i, seed) in seeds.iter().enumerate() {
        let (key, blob) = keys::agent_key(seed[0] == 1);
        let parsed = smon_agent::userauth::parse(&seed[1..], key, blob);
        // 0-2 genuine, 3 SHA-1, 4 a bad session id, 5 no user, 6 host-bound (genuine).
        assert_eq!(
            parsed.is_ok(),
            matches!(i, 0..=2 | 6),
            "seed {i}: {parsed:?}"
        );
    }
}

#[tokio::test]
async fn the_known_hosts_seed_pins_its_machines() {
    let seed = &known_hosts::seeds()[0];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    std::fs::write(&path, seed).unwrap();
    let list = Membership::parse("seed", "h1\n[::1]\nh2:2222\n", 1).unwrap();
    let policy = smon_console::host_keys::PinPolicy {
        scan: false,
        trust_on_first_use: false,
    };
    let err = smon_console::host_keys::pin(&path, list, policy, "pin it")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("1 SSH machine(s) have no pinned host key ([::1]:22):"),
        "{err}"
    );
}
