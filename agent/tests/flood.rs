//! The agent under a connection flood from one source (`smon_lab::flood`, over loopback, in a
//! runtime of its own): 1,000 connections held open, opened and dropped in a loop, or
//! wrong-key handshakes at full speed. A legitimate client is answered all along, and the
//! agent's door refuses and closes the flood's connections (its counts say so).

mod common;

use std::time::{Duration, Instant};

use common::*;
use smon_agent::key::KeySource;
use smon_lab::flood::{Flood, FloodReport, Mode};
use smon_proto::{DoorCounts, tarpc::context};

/// Run `flood` on a runtime (and threads) of its own until `stop` says so.
fn flood_in_background(
    flood: Flood,
) -> (
    tokio::sync::watch::Sender<bool>,
    std::thread::JoinHandle<FloodReport>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let thread = std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(flood.run(stopped))
            .unwrap()
    });
    (stop, thread)
}

async fn agent_under_flood(mode: Mode, seen: impl Fn(&DoorCounts) -> bool) {
    if !have_ssh_keygen() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cluster_dir(dir, &["alice@127.0.0.2:2222"]);
    let key = KeySource::from_file(&keygen(dir, "ed25519", ""), None).unwrap();
    let public = key.public_key().to_openssh().unwrap();
    let (agent, addr) = start_agent(dir, key, settings(dir, 100.0, 100.0)).await;
    let (stop, flooder) =
        flood_in_background(Flood::new(mode, addr.parse().unwrap(), 1_000).unwrap());

    let mut slowest = Duration::ZERO;
    let mut answers = 0;
    // Until the door shows the flood, and then five answers more.
    let five = wait_until_async(
        Duration::from_secs(90),
        Duration::from_millis(100),
        async || {
            let started = Instant::now();
            let ask = async {
                let client = client(dir, &addr).await;
                client.public_key(context::current()).await.unwrap()
            };
            let answer = tokio::time::timeout(Duration::from_secs(30), ask)
                .await
                .expect("the agent answers within 30 s under the flood");
            assert_eq!(answer, public);
            slowest = slowest.max(started.elapsed());
            if seen(&agent.door_counts()) {
                answers += 1;
            }
            answers >= 5
        },
    )
    .await;
    assert!(
        five,
        "{mode:?}: the door never showed the flood: {:?}",
        agent.door_counts()
    );
    let _ = stop.send(true);
    let report = tokio::task::spawn_blocking(move || flooder.join().unwrap())
        .await
        .unwrap();
    eprintln!(
        "{mode:?}: slowest answer {slowest:?}; door {:?}; flooder {report:?}",
        agent.door_counts()
    );
    assert!(report.connected > 100, "the flood ran: {report:?}");
    assert_eq!(report.handshakes_accepted, 0, "{report:?}");
    // Every flood connection is closed once the flood is gone.
    let closed = wait_until_async(
        Duration::from_secs(30),
        Duration::from_millis(100),
        async || agent.door_counts().open == 0,
    )
    .await;
    assert!(closed, "left open: {:?}", agent.door_counts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_holding_off_1000_silent_connections_still_answers() {
    agent_under_flood(Mode::Hold, |d| {
        d.refused_source > 0 && d.handshake_timeouts > 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_under_an_open_and_drop_loop_still_answers() {
    agent_under_flood(Mode::Churn, |d| d.refused_rate > 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_under_wrong_key_handshakes_at_full_speed_still_answers() {
    agent_under_flood(Mode::WrongKey, |d| {
        d.handshake_failures > 0 && d.refused_rate > d.handshake_failures
    })
    .await;
}
