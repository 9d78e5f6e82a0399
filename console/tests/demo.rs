//! `smon-console demo --machines N --headless --json`, the contract scripts use: a temporary
//! cluster of N local machines, deployed, summed up as JSON on standard output, and shut
//! down: no process left running, the temporary directory removed.

mod harness;

use std::{
    io::Read,
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;

/// Run `smon-console ARGS` with TMPDIR set to `tmp`; (success, stdout, stderr). Killed (and
/// the test failed) if it runs longer than `limit`.
fn console_in(tmp: &std::path::Path, args: &[&str], limit: Duration) -> (bool, String, String) {
    let mut child = Command::new(harness::console_bin())
        .args(args)
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("smon-console runs");
    let finished = harness::wait_until(limit, || child.try_wait().unwrap().is_some());
    if !finished {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        finished,
        "smon-console {args:?} still ran after {limit:?}:\n{err}"
    );
    (status.success(), out, err)
}

/// A headless demo of `n` local machines at 1 s rounds: its JSON summary, after checking
/// that it succeeded, left no process and no file behind.
fn demo(n: usize) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let peer = harness::peer_bin();
    let n = n.to_string();
    let args = [
        "demo",
        "--machines",
        &n,
        "--interval",
        "1s",
        "--headless",
        "--json",
        "--peer-binary",
        peer.to_str().unwrap(),
    ];
    let (ok, out, err) = console_in(tmp.path(), &args, Duration::from_secs(300));
    // Whatever happened, end what it left before judging it.
    let left = harness::processes_mentioning(tmp.path());
    let described = harness::describe(&left);
    for &pid in &left {
        harness::kill(pid);
    }
    assert!(ok, "demo failed:\n{err}");
    assert!(left.is_empty(), "left running after the demo: {described}");
    let remains: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(remains.is_empty(), "the demo left {remains:?}");
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("standard output is not one JSON value ({e}):\n{out}"))
}

fn number(summary: &Value, field: &str) -> f64 {
    summary[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number: {summary}"))
}

#[test]
fn a_headless_demo_deploys_prints_its_summary_as_json_and_leaves_nothing() {
    let summary = demo(8);
    assert_eq!(summary["machines"], 8, "{summary}");
    assert_eq!(summary["deployed"], 8, "{summary}");
    let number = |field: &str| number(&summary, field);
    assert!(number("seconds") > 0.0 && number("seconds") < 300.0);
    // Eight machines deploy in a few rounds (the paper's analysis: about log2(8) + ln(8)).
    assert!((0.0..30.0).contains(&number("rounds")), "{summary}");
    assert!(number("overhead_mean") >= 1.0, "{summary}");
    assert!(number("overhead_max") >= 1.0, "{summary}");
    assert!(
        number("overhead_max") >= number("overhead_mean"),
        "{summary}"
    );
    // The gzip form an SSH machine would be sent (local machines get the package as is).
    let (gzip, plain) = (number("package_gzip_bytes"), number("package_bytes"));
    assert!(gzip > 0.0 && gzip < plain, "{summary}");
}

/// First to last peer start of 30 local machines at 1 s rounds, seconds, at most.
const BOUND_30_S: f64 = 3.0;

#[test]
fn thirty_machines_start_within_a_few_seconds_of_the_first() {
    // Issue 17: deployment pipelines (a new peer deploys at once, a deployer goes on as soon as
    // a deployment ends, no ping where the answer is known). 30 local machines at 1 s rounds
    // then start within about log2(30) install-times of the first (an install here is a
    // fraction of a second of CPU); the loop of one attempt per round took one round or more
    // per step. `rounds` is first to last peer start in rounds, here seconds. Generous: the
    // tests share two cores (BENCHMARKS.md has the measurements behind the bound).
    let summary = demo(30);
    assert_eq!(summary["deployed"], 30, "{summary}");
    let span = number(&summary, "rounds");
    assert!(
        span <= BOUND_30_S,
        "first to last start {span} s: {summary}"
    );
    assert!(number(&summary, "overhead_mean") <= 1.05, "{summary}");
}

#[test]
fn json_without_headless_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _, err) = console_in(tmp.path(), &["demo", "--json"], Duration::from_secs(30));
    assert!(!ok);
    assert!(err.contains("--headless"), "{err}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
