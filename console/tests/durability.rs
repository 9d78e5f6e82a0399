//! Durability under kill -9, the short version of `scripts/durability.py` (which runs 100
//! rounds): a few rounds of control actions committed through a peer that is killed at a
//! random moment; nothing it acknowledged is lost and its database opens. The script's cluster
//! lives in this test's directory, and nothing it started may outlive it.

mod harness;

use std::{path::Path, process::Command};

use harness::{console_bin, describe, kill, peer_bin, processes_mentioning, wait_until};

#[test]
fn kill_9_during_control_actions_loses_nothing_acknowledged() {
    let rounds: u32 = std::env::var("SMON_DURABILITY_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/durability.py");
    let _ = peer_bin(); // built next to the console, or the script could not init
    let out = Command::new("python3")
        .arg(&script)
        .arg(rounds.to_string())
        .args(["--json", "--console"])
        .arg(console_bin())
        .arg("--dir")
        .arg(&work)
        .output()
        .expect("python3 runs the script");
    // Whatever the outcome, nothing the script started may be left.
    let left = processes_mentioning(&work);
    for &pid in &left {
        kill(pid);
    }
    wait_until(std::time::Duration::from_secs(10), || {
        processes_mentioning(&work).is_empty()
    });
    assert!(
        left.is_empty(),
        "processes left behind: {}",
        describe(&left)
    );

    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().last().unwrap_or_default();
    let result: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("no result ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(result["error"], serde_json::Value::Null, "{result}");
    assert_eq!(result["completed"], rounds, "{result}");
    assert_eq!(result["held"], rounds, "{result}");
    assert!(result["acknowledged"].as_u64().unwrap() > 0, "{result}");
    assert!(out.status.success(), "{result}\n{stderr}");
}
