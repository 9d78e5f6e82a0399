//! Issue 15, kind 3: a peer's own `peer.log` stays within its bound. The bound is 8 MiB × 3
//! backups in production; `SMON_PEER_LOG_BOUND` sets a small one here, and trace logging
//! drives real peers' logs well past it.

mod harness;

use std::{process::Command, time::Duration};

use harness::{Cluster, wait_for};

/// Bytes per file and backups, as given to the peers.
const MAX_BYTES: u64 = 64 << 10;
const BACKUPS: u32 = 2;

/// The sizes of `machine`'s peer log files, `peer.log` first, and whether a file past the
/// last backup exists.
fn log_files(c: &Cluster, machine: &str) -> (Vec<u64>, bool) {
    let log = c.machine(machine, |f| f.log());
    let path = |n: u32| {
        if n == 0 {
            log.clone()
        } else {
            log.with_file_name(format!("peer.log.{n}"))
        }
    };
    let sizes = (0..=BACKUPS)
        .filter_map(|n| std::fs::metadata(path(n)).ok().map(|m| m.len()))
        .collect();
    (sizes, path(BACKUPS + 1).exists())
}

#[test]
fn a_peer_s_own_log_stays_within_its_bound() {
    // Short rounds: the logs fill four times as fast as at 1 s.
    let c = Cluster::new(3, "250ms");
    // Every peer inherits the first one's environment (it starts the others).
    let out = Command::new(harness::console_bin())
        .arg("-C")
        .arg(&c.dir)
        .arg("deploy")
        .env("SMON_PEER_LOG_BOUND", format!("{MAX_BYTES},{BACKUPS}"))
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.ok(&["wait", "--deployed", "all", "--timeout", "120s"]);
    // Written past the whole bound several times over, on every machine at once: every
    // backup is there, and no file ever holds more than its bound.
    let total = MAX_BYTES * (u64::from(BACKUPS) + 1);
    let mut written = vec![0u64; c.names.len()];
    let mut last_live = vec![0u64; c.names.len()];
    wait_for(
        Duration::from_secs(300),
        "every peer's log to rotate past its bound twice over",
        || {
            let mut done = true;
            for (i, name) in c.names.iter().enumerate() {
                let (sizes, extra) = log_files(&c, name);
                assert!(!extra, "{name}: a file past the last backup: {sizes:?}");
                for &size in &sizes {
                    assert!(
                        size <= MAX_BYTES,
                        "{name}: a file of {size} bytes: {sizes:?}"
                    );
                }
                // A live file shorter than before was rotated: what it held is written.
                let live = sizes.first().copied().unwrap_or(0);
                if live < last_live[i] {
                    written[i] += last_live[i];
                }
                last_live[i] = live;
                done &= sizes.len() == BACKUPS as usize + 1 && written[i] >= 2 * total;
            }
            done
        },
    );
    // The peers still answer, and say so in their logs.
    c.ok(&["status"]);
    c.shutdown_leaves_nothing();
}
