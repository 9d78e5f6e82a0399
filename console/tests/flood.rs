//! A real peer under a connection flood from one source (`smon_lab::flood`, over loopback):
//! 1,000 connections held open, opened and dropped in a loop, or wrong-key handshakes at full
//! speed. While it runs, the peer answers a legitimate client (and `smon-console status`)
//! within a generous timeout, its door refuses and closes the flood's connections (its
//! counters say so, through `cluster_view` as `metrics` reads them), and the process is the
//! same one at the end.

mod harness;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use harness::Cluster;
use smon_lab::flood::{Flood, Mode};
use smon_proto::{DoorCounts, MachineId, tarpc::context, transport};

/// A legitimate client's view of the peer, through a connection of its own; how long it took.
async fn legit_counts(addr: &str, key: &smon_proto::KeyringHandle) -> (DoorCounts, Duration) {
    let started = Instant::now();
    let ask = async {
        let client = transport::peer_client(addr, key, Duration::from_secs(20))
            .await
            .expect("a legitimate client connects under the flood");
        client
            .cluster_view(context::current(), 0)
            .await
            .expect("the peer answers under the flood")
    };
    let view = tokio::time::timeout(Duration::from_secs(30), ask)
        .await
        .expect("an answer within 30 s under the flood");
    assert_eq!(view.answered_by, MachineId::local("m001"));
    (view.peer.door, started.elapsed())
}

fn peer_under_flood(mode: Mode, seen: impl Fn(&DoorCounts) -> bool) {
    let c = Cluster::new(1, "1s");
    c.ok(&["deploy"]);
    c.ok(&["wait", "--deployed", "all", "--timeout", "60s"]);
    let pid = c.pid("m001").expect("a running peer");
    let dir = smon_console::cluster_dir::ClusterDir::open(&c.dir).unwrap();
    let (key, addr) = (dir.key.clone(), dir.peer_address(&MachineId::local("m001")));
    let target: SocketAddr = addr.parse().unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (counts, report) = runtime.block_on(async {
        let (stop, report) = Flood::new(mode, target, 1_000).unwrap().start();
        // Until the door shows the flood: a legitimate client asks all along, and is answered.
        let mut slowest = Duration::ZERO;
        let mut last = None;
        let shown = harness::wait_until_async(
            Duration::from_secs(90),
            Duration::from_millis(200),
            async || {
                let (counts, took) = legit_counts(&addr, &key).await;
                slowest = slowest.max(took);
                let shown = seen(&counts);
                last = Some(counts);
                shown
            },
        )
        .await;
        let counts = last.expect("one answer at least");
        assert!(
            shown,
            "{mode:?}: the door never showed the flood: {counts:?}"
        );
        // The operator's command too, while the flood still runs.
        let status = c.status();
        assert_eq!(status["versions"]["0.1.0"], 1, "{status}");
        for _ in 0..5 {
            slowest = slowest.max(legit_counts(&addr, &key).await.1);
        }
        eprintln!("{mode:?}: slowest legitimate answer under the flood: {slowest:?}");
        let _ = stop.send(true);
        (counts, report.await.unwrap().unwrap())
    });
    eprintln!("{mode:?}: door {counts:?}; flooder {report:?}");
    assert!(report.connected > 100, "the flood ran: {report:?}");
    assert_eq!(report.handshakes_accepted, 0, "{report:?}");
    assert_eq!(c.pid("m001"), Some(pid), "the peer process changed");
    // Once the flood is gone, every one of its connections is closed.
    let (after, _) = runtime.block_on(async {
        let mut last = None;
        harness::wait_until_async(
            Duration::from_secs(30),
            Duration::from_millis(200),
            async || {
                let r = legit_counts(&addr, &key).await;
                // The legitimate client's own connection is the one left.
                let closed = r.0.open <= 1;
                last = Some(r);
                closed
            },
        )
        .await;
        last.expect("one answer at least")
    });
    assert!(
        after.open <= 1,
        "connections left open after the flood: {after:?}"
    );
    // Thousands refused, a handful of lines: the door logs a sum at most once per 10 s.
    let log = std::fs::read_to_string(c.machine("m001", |f| f.log())).unwrap_or_default();
    let lines = log.lines().filter(|l| l.contains("door: refused")).count();
    assert!(
        (1..=2 + (report.seconds as usize) / 10).contains(&lines),
        "{lines} door lines for {} refusals over {:.0} s",
        after.refused(),
        report.seconds
    );
    c.ok(&["shutdown", "--timeout", "60s"]);
}

#[test]
fn a_peer_holding_off_1000_silent_connections_still_answers() {
    // One source holds at most its handshakes in flight; the rest are refused at once, and the
    // held ones are closed at the handshake timeout.
    peer_under_flood(Mode::Hold, |d| {
        d.refused_source > 0 && d.handshake_timeouts > 0
    });
}

#[test]
fn a_peer_under_an_open_and_drop_loop_still_answers() {
    peer_under_flood(Mode::Churn, |d| d.refused_rate > 0);
}

#[test]
fn a_peer_under_wrong_key_handshakes_at_full_speed_still_answers() {
    // Failed handshakes drain their source's rate: most of the flood is refused before any
    // handshake work.
    peer_under_flood(Mode::WrongKey, |d| {
        d.handshake_failures > 0 && d.refused_rate > d.handshake_failures
    });
}
