//! `smon-agent serve --log FILE` (what `smon-console agent start` runs, with DIR/agent.log):
//! the agent's own output is bounded like the peer's log (issue 15, the agent.log gap), and an
//! error it exits with is in the log.

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use smon_proto::{LogBound, log_file::log_files};

const MAX: u64 = 2000;

fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_for(Duration::from_secs(60), what, cond);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_log_is_rotated_at_its_bound_and_keeps_its_last_words() {
    if !have_ssh_keygen() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cluster_dir(dir, &["alice@127.0.0.2"]);
    let key = keygen(dir, "ed25519", "");
    let log = dir.join("agent.log");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_smon-agent"))
        .args(["serve", "--listen", "127.0.0.1:0", "--key"])
        .arg(&key)
        .arg("-C")
        .arg(dir)
        .arg("--log")
        .arg(&log)
        .args(["--log-max-bytes", &MAX.to_string()])
        // Every call traced: output enough to rotate many times.
        .env("SMON_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bound = LogBound {
        max_bytes: MAX,
        backups: 3,
    };
    let all = || -> String {
        log_files(&log, bound)
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .collect()
    };
    let mut addr = String::new();
    wait_until("listening on", || {
        let text = all();
        let found = text.lines().find_map(|l| l.strip_prefix("listening on "));
        addr = found.unwrap_or_default().trim().to_owned();
        !addr.is_empty()
    });
    // Calls until the last backup exists and the first lines were dropped: the bound holds
    // all along.
    let client = client(dir, &addr).await;
    let mut calls = 0;
    let mut after_full = 0;
    while after_full < 10 {
        client
            .public_key(smon_proto::tarpc::context::current())
            .await
            .unwrap();
        calls += 1;
        assert!(
            calls < 20_000,
            "{calls} calls did not fill the log's backups"
        );
        if log_files(&log, bound).iter().all(|f| f.exists()) && !all().contains("listening on") {
            after_full += 1;
        }
        for f in log_files(&log, bound) {
            let len = std::fs::metadata(&f).map_or(0, |m| m.len());
            assert!(len <= MAX, "{} is {len} bytes", f.display());
        }
        assert!(!dir.join("agent.log.4").exists(), "a fourth backup");
    }
    // SAFETY: kill(2) of the agent this test started.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    agent.wait().unwrap();

    // A fatal error is written to the log before the agent exits with it.
    let encrypted = keygen(dir, "rsa", "a passphrase");
    let failed_log = dir.join("failed.log");
    let status = Command::new(env!("CARGO_BIN_EXE_smon-agent"))
        .args(["serve", "--listen", "127.0.0.1:0", "--key"])
        .arg(&encrypted)
        .arg("-C")
        .arg(dir)
        .arg("--log")
        .arg(&failed_log)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
    let text = std::fs::read_to_string(&failed_log).unwrap();
    assert!(
        text.contains("Error: ") && text.contains("encrypted"),
        "{text}"
    );
}
