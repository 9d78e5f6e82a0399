//! Cluster-key rotation end to end (issue 14, item 2) on local machines with 1 s rounds:
//! `rekey` spreads a new key to every peer, both keys work during the grace period, and
//! after it a client with the old key is refused by every peer while the new key works; a
//! machine away during the whole grace (its peer stopped, its directory out of reach) comes
//! back on the new key, deployed over by the others.

mod harness;

use std::time::{Duration, Instant};

use harness::Cluster;
use smon_proto::{ClusterKey, Keyring, MachineId, NoiseKeys, ProtoError, transport};

/// Whether the peer of `machine` completes a handshake with `keys`; `Err` for anything but
/// a refused key (the peer must be up).
async fn accepts(c: &Cluster, machine: &str, keys: &impl NoiseKeys) -> Result<bool, String> {
    let dir = smon_console::cluster_dir::ClusterDir::open(&c.dir).unwrap();
    let addr = dir.peer_address(&MachineId::local(machine));
    match transport::peer_client(addr.as_str(), keys, Duration::from_secs(5)).await {
        Ok(_) => Ok(true),
        Err(ProtoError::WrongKey { .. }) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// How many of `names`' peers accept `keys` (one that does not answer counts as not).
async fn accepting(c: &Cluster, names: &[String], keys: &impl NoiseKeys) -> usize {
    let mut n = 0;
    for name in names {
        n += usize::from(accepts(c, name, keys).await == Ok(true));
    }
    n
}

#[test]
fn a_rekey_spreads_to_every_peer_and_the_old_key_is_refused_after_the_grace() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // SMON_REKEY_MACHINES=60 for the BENCHMARKS.md run (the goal: every peer on the new key
    // within 2·log2(N) rounds).
    let n: usize = std::env::var("SMON_REKEY_MACHINES").map_or(8, |v| v.parse().unwrap());
    let c = Cluster::deployed(n);
    let old = Keyring::load(&c.files().cluster_key()).unwrap();
    assert_eq!(old.epoch(), 0);
    let old_key: ClusterKey = old.current().clone();

    // One machine goes away for the whole grace: its directory out of reach (a file where
    // it was, so that logins fail), its peer stopped.
    let away = c.names[n - 1].clone();
    let here: Vec<String> = c.names[..n - 1].to_vec();
    let pid = c.pid(&away).expect("the away machine runs a peer");
    let (root, parked) = (c.root(&away), c.root(&away).with_extension("away"));
    std::fs::rename(&root, &parked).unwrap();
    std::fs::write(&root, b"away").unwrap();
    harness::kill(pid);
    harness::wait_for(Duration::from_secs(30), "the away peer to die", || {
        !harness::is_alive(pid)
    });

    let grace = Duration::from_secs(25);
    let started = Instant::now();
    let out = c.ok(&["rekey", "--grace", "25s"]);
    assert!(out.contains("epoch 1"), "{out}");
    let ring = Keyring::load(&c.files().cluster_key()).unwrap();
    assert_eq!(ring.epoch(), 1);
    let new_only = ring.current().clone();
    assert_ne!(new_only, old_key);
    let err = c.fails(&["rekey", "--grace", "25s"]);
    assert!(err.contains("still in its grace period"), "{err}");

    // A peer accepts the new key alone once it took the rotation.
    let all = here.len();
    let spread = rt.block_on(harness::wait_until_async(
        grace,
        Duration::from_millis(200),
        async || accepting(&c, &here, &new_only).await == all,
    ));
    let took = started.elapsed();
    assert!(spread, "not every peer took the new key within the grace");
    eprintln!("all {all} peers (of {n}) on epoch 1 after {took:?} (1 s rounds)");
    // During the grace the old key still works everywhere (checked while well inside it).
    if started.elapsed() + Duration::from_secs(8) < grace {
        assert_eq!(
            rt.block_on(accepting(&c, &here, &old_key)),
            all,
            "old key in grace"
        );
    }

    // `status` says where the rotation stands.
    let text = c.ok(&["status"]);
    let line = format!("rekey: epoch 1, {all} of {n} machines on it, grace ends in");
    assert!(text.contains(&line), "{text}");

    // After the grace: the old key is refused by every peer (WrongKey), the new one works.
    let refused = rt.block_on(harness::wait_until_async(
        grace + Duration::from_secs(30),
        Duration::from_millis(200),
        async || {
            for name in &here {
                if accepts(&c, name, &old_key).await != Ok(false) {
                    return false;
                }
            }
            true
        },
    ));
    assert!(refused, "a peer still accepts the old key after the grace");
    assert!(
        started.elapsed() >= grace,
        "the old key was refused before the grace ended"
    );
    assert_eq!(rt.block_on(accepting(&c, &here, &new_only)), all);

    // The away machine comes back, still on the old key: it is deployed over (not merely
    // restarted) and its peer takes the new key.
    std::fs::remove_file(&root).unwrap();
    std::fs::rename(&parked, &root).unwrap();
    let back = Instant::now();
    let recovered = rt.block_on(harness::wait_until_async(
        Duration::from_secs(120),
        Duration::from_millis(500),
        async || accepts(&c, &away, &new_only).await == Ok(true),
    ));
    assert!(
        recovered,
        "{away} is not back on the new key\n{}",
        c.log_tails(20)
    );
    eprintln!(
        "{away} back on epoch 1 {:?} after its return",
        back.elapsed()
    );
    let installed = std::fs::read_to_string(c.machine(&away, |f| f.cluster())).unwrap();
    assert!(installed.contains("key_epoch=1"), "{installed}");
    // The console, its keyring past the grace, still reads the cluster.
    harness::wait_for(
        Duration::from_secs(60),
        "status to count every machine deployed",
        || c.status()["deployed"] == n,
    );
    let rekey = &c.status()["rekey"];
    assert_eq!(rekey["epoch"], 1, "{rekey}");
    assert_eq!(rekey["on_epoch"], n, "{rekey}");
    assert_eq!(rekey["grace_left_ms"], 0, "{rekey}");
    let text = c.ok(&["status"]);
    let line = format!("rekey: epoch 1, {n} of {n} machines on it, grace over");
    assert!(text.contains(&line), "{text}");
}
