//! The agent over its real Noise transport: what it signs, what it refuses, and that every
//! decision is in the audit log.

mod common;

use common::*;
use russh::keys::{
    signature::Verifier,
    ssh_key::{PublicKey, Signature, encoding::Decode},
};
use smon_agent::{audit, key::KeySource, userauth};
use smon_proto::{
    ChallengeRequest, ClusterFiles, ClusterKey, MachineId, OperatorKey, Refusal, Version,
    release::{package_manifest, verify_signature},
    tarpc::context,
    transport,
};

fn ctx() -> context::Context {
    context::current()
}

fn req(requester: &str, target: &str, data: Vec<u8>) -> ChallengeRequest {
    ChallengeRequest {
        requester: requester.parse().unwrap(),
        target: target.parse().unwrap(),
        data,
    }
}

fn verify(public: &PublicKey, data: &[u8], blob: &[u8]) {
    let sig = Signature::decode(&mut &blob[..]).expect("a signature blob");
    Verifier::verify(public, data, &sig).expect("the signature verifies");
}

async fn genuine_signs(kind: &str, algorithm: &str) {
    if !have_ssh_keygen() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cluster_dir(dir, &["alice@127.0.0.2:2222", "bob@127.0.0.3"]);
    let key_path = keygen(dir, kind, "");
    let key = KeySource::from_file(&key_path, None).unwrap();
    let public = key.public_key().clone();
    let blob = public.to_bytes().unwrap();
    let operator = adopt_release_key(dir, &public);
    let (_agent, addr) = start_agent(dir, key, settings(dir, 100.0, 100.0)).await;
    let client = client(dir, &addr).await;
    assert_eq!(
        client.public_key(ctx()).await.unwrap(),
        public.to_openssh().unwrap()
    );
    let data = userauth::build(&[9; 32], "alice", algorithm, &blob);
    let sig = client
        .resolve_challenge(
            ctx(),
            req("bob@127.0.0.3", "alice@127.0.0.2:2222", data.clone()),
        )
        .await
        .unwrap()
        .unwrap();
    verify(&public, &data, &sig);
    let rows = audit::read(&ClusterFiles::new(dir).agent_audit(), 10, false).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].decision, "signed");
    assert_eq!(rows[0].user, "alice");

    // Release signing: the agent's key is the release key, for the operator only.
    let manifest = package_manifest(b"binary", Version::new(1, 0, 0));
    let proof = operator.prove(&manifest);
    let signed = client
        .sign_package(ctx(), manifest.clone(), proof.clone())
        .await
        .unwrap()
        .unwrap();
    verify_signature(&signed, &public).unwrap();
    // A peer holds K_E but not the operator key: no proof, a forged one, or a proof for
    // another manifest is refused, and audited.
    let other = package_manifest(b"malware", Version::new(9, 0, 0));
    let forged = OperatorKey::create(&dir.join("forged.key")).unwrap();
    for (why, proof) in [
        ("no proof", Vec::new()),
        ("forged", forged.prove(&other)),
        ("another manifest's", proof),
    ] {
        let r = client
            .sign_package(ctx(), other.clone(), proof)
            .await
            .unwrap();
        assert!(
            matches!(&r, Err(Refusal::Denied(s)) if s.contains("operator")),
            "{why}: {r:?}"
        );
    }
    let rows = audit::read(&ClusterFiles::new(dir).agent_audit(), 10, true).unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| r.call == "sign_package"), "{rows:?}");

    // Memberships (their pinned host keys) likewise: signed for the operator only, and only
    // what is an unsigned membership list.
    let mut list = smon_proto::Membership::decode(
        &std::fs::read(ClusterFiles::new(dir).membership_blob()).unwrap(),
    )
    .unwrap();
    let blob = list.signing_bytes();
    let signature = client
        .sign_membership(ctx(), blob.clone(), operator.prove_membership(&blob))
        .await
        .unwrap()
        .unwrap();
    list.set_signature(signature);
    list.verify_signature(&public).unwrap();
    let r = client
        .sign_membership(ctx(), blob.clone(), Vec::new())
        .await
        .unwrap();
    assert!(
        matches!(&r, Err(Refusal::Denied(s)) if s.contains("operator")),
        "{r:?}"
    );
    let garbage = b"not a membership".to_vec();
    let r = client
        .sign_membership(ctx(), garbage.clone(), operator.prove_membership(&garbage))
        .await
        .unwrap();
    assert!(matches!(&r, Err(Refusal::Invalid(_))), "{r:?}");
    let signed = list.encode();
    let r = client
        .sign_membership(ctx(), signed.clone(), operator.prove_membership(&signed))
        .await
        .unwrap();
    assert!(
        matches!(&r, Err(Refusal::Invalid(s)) if s.contains("signed already")),
        "{r:?}"
    );
}

#[tokio::test]
async fn an_agent_whose_key_is_not_the_release_key_signs_no_release() {
    if !have_ssh_keygen() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cluster_dir(dir, &["alice@127.0.0.2"]);
    let key = KeySource::from_file(&keygen(dir, "ed25519", ""), None).unwrap();
    // The cluster trusts another key (a local release.key, as `init` without --key makes).
    let other_dir = dir.join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let release = KeySource::from_file(&keygen(&other_dir, "ed25519", ""), None).unwrap();
    let operator = adopt_release_key(dir, release.public_key());
    let (_agent, addr) = start_agent(dir, key, settings(dir, 100.0, 100.0)).await;
    let client = client(dir, &addr).await;
    let manifest = package_manifest(b"binary", Version::new(1, 0, 0));
    let r = client
        .sign_package(ctx(), manifest.clone(), operator.prove(&manifest))
        .await
        .unwrap();
    assert!(
        matches!(&r, Err(Refusal::Denied(s)) if s.contains("not this agent's key")),
        "{r:?}"
    );
}

#[tokio::test]
async fn signs_a_genuine_ed25519_request_and_the_signature_verifies() {
    genuine_signs("ed25519", "ssh-ed25519").await;
}

#[tokio::test]
async fn signs_a_genuine_rsa_request_and_the_signature_verifies() {
    genuine_signs("rsa", "rsa-sha2-512").await;
    genuine_signs("rsa", "rsa-sha2-256").await;
}

#[tokio::test]
async fn refuses_and_audits_everything_that_is_not_a_genuine_member_login() {
    if !have_ssh_keygen() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cluster_dir(dir, &["alice@127.0.0.2:2222", "127.0.0.4", "local:m1"]);
    let key = KeySource::from_file(&keygen(dir, "ed25519", ""), None).unwrap();
    let blob = key.public_key().to_bytes().unwrap();
    let (_agent, addr) = start_agent(dir, key, settings(dir, 1000.0, 1000.0)).await;
    let client = client(dir, &addr).await;
    let good = userauth::build(&[1; 32], "alice", "ssh-ed25519", &blob);
    let me = "local:m1";
    let target = "alice@127.0.0.2:2222";

    let random: Vec<u8> = (0..200).map(|_| rand::random()).collect();
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"\0\0\0\x01x");
    let other_dir = dir.join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let other = KeySource::from_file(&keygen(&other_dir, "ed25519", ""), None)
        .unwrap()
        .public_key()
        .to_bytes()
        .unwrap();
    type Case = (&'static str, ChallengeRequest, fn(&Refusal) -> bool);
    let cases: Vec<Case> = vec![
        ("random data", req(me, target, random), |r| {
            matches!(r, Refusal::Invalid(_))
        }),
        (
            "trailing bytes",
            req(me, target, trailing),
            |r| matches!(r, Refusal::Invalid(s) if s.contains("trailing")),
        ),
        (
            "host not in the membership",
            req(me, "alice@127.0.0.9:2222", good.clone()),
            |r| matches!(r, Refusal::Denied(s) if s.contains("membership")),
        ),
        (
            "user not in the membership",
            req(
                me,
                target,
                userauth::build(&[1; 32], "root", "ssh-ed25519", &blob),
            ),
            |r| matches!(r, Refusal::Denied(s) if s.contains("user")),
        ),
        (
            "entry without user: only the default user",
            req(me, "127.0.0.4", good.clone()),
            |r| matches!(r, Refusal::Denied(_)),
        ),
        ("a local machine", req(me, "local:m1", good.clone()), |r| {
            matches!(r, Refusal::Denied(_))
        }),
        (
            "wrong algorithm",
            req(
                me,
                target,
                userauth::build(&[1; 32], "alice", "rsa-sha2-512", &blob),
            ),
            |r| matches!(r, Refusal::Invalid(_)),
        ),
    ];
    let n = cases.len();
    for (what, request, expect) in cases {
        let r = client.resolve_challenge(ctx(), request).await.unwrap();
        let refusal = r.expect_err(what);
        assert!(expect(&refusal), "{what}: {refusal:?}");
    }
    let another_key = userauth::build(&[1; 32], "alice", "ssh-ed25519", &other);
    let r = client
        .resolve_challenge(ctx(), req(me, target, another_key))
        .await
        .unwrap();
    assert!(matches!(r, Err(Refusal::Invalid(_))), "{r:?}");
    // The default user is accepted for an entry without one.
    let ok = userauth::build(&[1; 32], "nobody", "ssh-ed25519", &blob);
    assert!(
        client
            .resolve_challenge(ctx(), req(me, "127.0.0.4", ok))
            .await
            .unwrap()
            .is_ok()
    );

    // A client with the wrong K_E gets nothing, and the attempt is audited.
    let wrong = ClusterKey::generate();
    let bad = transport::agent_client(addr.as_str(), &wrong, TIMEOUT).await;
    if let Ok(bad) = bad {
        assert!(bad.public_key(ctx()).await.is_err());
    }
    let read = || audit::read(&ClusterFiles::new(dir).agent_audit(), 100, true).unwrap();
    wait_until_async(TIMEOUT, std::time::Duration::from_millis(20), async || {
        read().iter().any(|r| r.call == "handshake")
    })
    .await;
    let rows = read();
    assert!(rows.iter().any(|r| r.call == "handshake"), "{rows:?}");
    let refused_challenges = rows
        .iter()
        .filter(|r| r.call == "resolve_challenge")
        .count();
    assert!(refused_challenges > n, "{rows:#?}");
    assert!(rows.iter().all(|r| r.decision == "refused"));

    // `smon-agent audit` prints them.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smon-agent"))
        .args(["audit", "--refused", "-C"])
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("trailing bytes") && text.contains("handshake"),
        "{text}"
    );
}

#[tokio::test]
async fn refuses_requests_over_the_rate_limits() {
    if !have_ssh_keygen() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cluster_dir(dir, &["alice@127.0.0.2"]);
    let key = KeySource::from_file(&keygen(dir, "ed25519", ""), None).unwrap();
    let blob = key.public_key().to_bytes().unwrap();
    // 5 at once, then one every 1000 s: the 6th in a row is refused.
    let (_agent, addr) = start_agent(dir, key, settings(dir, 0.001, 5.0)).await;
    let client = client(dir, &addr).await;
    let data = userauth::build(&[1; 32], "alice", "ssh-ed25519", &blob);
    for i in 0..5 {
        let r = client
            .resolve_challenge(ctx(), req("local:a", "alice@127.0.0.2", data.clone()))
            .await
            .unwrap();
        assert!(r.is_ok(), "request {i}: {r:?}");
    }
    let r = client
        .resolve_challenge(ctx(), req("local:a", "alice@127.0.0.2", data.clone()))
        .await
        .unwrap();
    assert_eq!(r, Err(Refusal::RateLimited));
    // The allowance is the connection's address's, not the requester's it claims: naming
    // another peer gets nothing more.
    let r = client
        .resolve_challenge(ctx(), req("local:b", "alice@127.0.0.2", data.clone()))
        .await
        .unwrap();
    assert_eq!(r, Err(Refusal::RateLimited));
    // Another peer (another source address) has its own allowance.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let key = ClusterKey::load(&ClusterFiles::new(dir).cluster_key()).unwrap();
    let transport = transport::initiate_on(stream, &key, TIMEOUT).await.unwrap();
    let other = smon_proto::AgentServiceClient::new(Default::default(), transport).spawn();
    let r = other
        .resolve_challenge(ctx(), req("local:a", "alice@127.0.0.2", data.clone()))
        .await
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
    let rows = audit::read(&ClusterFiles::new(dir).agent_audit(), 100, true).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.detail.contains("rate")), "{rows:?}");
}

#[tokio::test]
async fn an_encrypted_key_without_a_terminal_is_refused_with_a_clear_message() {
    if !have_ssh_keygen() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cluster_dir(dir, &["alice@127.0.0.2"]);
    let key = keygen(dir, "ed25519", "secret passphrase");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smon-agent"))
        .args(["serve", "--listen", "127.0.0.1:0", "--key"])
        .arg(&key)
        .arg("-C")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("encrypted") && err.contains("ssh-agent"),
        "{err}"
    );

    // A key others can read is refused too.
    let plain = keygen(dir, "rsa", "");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = KeySource::from_file(&plain, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("chmod 600"), "{err}");
    let _ = MachineId::local("x");
}
