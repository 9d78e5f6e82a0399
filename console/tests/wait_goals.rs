//! `wait` on a real local cluster: goals that can never be met are refused at once, goals
//! already met succeed at once, and each ending has its documented exit code (issue 15, kind 8).

mod harness;

use std::time::{Duration, Instant};

use harness::Cluster;

/// Exit codes, as `wait --help` documents them.
const REACHED: i32 = 0;
const USAGE: i32 = 2;
const REFUSED: i32 = 6;
const UNREACHABLE: i32 = 3;
const TIMED_OUT: i32 = 4;

/// Run `wait ARGS`: its exit code, how long it took, and its stdout + stderr.
fn wait(c: &Cluster, args: &[&str]) -> (i32, Duration, String) {
    let start = Instant::now();
    let out = c.run(&[&["wait"][..], args].concat());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().expect("exited"), start.elapsed(), text)
}

/// `wait ARGS` ends with `code` well before its timeout (every call here gives 120 s).
fn ends_at_once(c: &Cluster, args: &[&str], code: i32) -> String {
    let args = [args, &["--timeout", "120s"][..]].concat();
    let (got, took, text) = wait(c, &args);
    assert_eq!(got, code, "wait {args:?} exited {got}, not {code}:\n{text}");
    assert!(
        took < Duration::from_secs(20),
        "wait {args:?} took {took:?}: it should end at once"
    );
    text
}

#[test]
fn wait_refuses_impossible_goals_at_once_and_says_how_it_ended() {
    let c = Cluster::new(12, "1s");

    // Usage: no goal, two goals, a goal that is not a number: clap's exit 2 at once.
    for args in [
        &[][..],
        &["--deployed", "-1"],
        &["--deployed", "many"],
        &["--enabled", "--disabled"],
    ] {
        ends_at_once(&c, args, USAGE);
    }

    // Nothing deployed yet: the directory's own list already rules out 50 of 12.
    let text = ends_at_once(&c, &["--deployed", "50"], REFUSED);
    assert!(
        text.contains("refused") && text.contains("only 12"),
        "{text}"
    );
    // --deployed 0 is met by any cluster, even one no peer of which answers.
    let text = ends_at_once(&c, &["--deployed", "0"], REACHED);
    assert!(text.contains("nothing to wait for"), "{text}");
    // A goal that can be met, with no peer answering: unreachable, not "timed out" alone.
    for goal in [
        &["--deployed", "all"][..],
        &["--disabled"],
        &["--version", "0.1.0"],
    ] {
        let args = [goal, &["--timeout", "1s"][..]].concat();
        let (code, _, text) = wait(&c, &args);
        assert_eq!(code, UNREACHABLE, "wait {args:?}:\n{text}");
        assert!(text.contains("no peer answered"), "{text}");
    }

    c.ok(&["deploy"]);
    ends_at_once(&c, &["--deployed", "1"], REACHED);
    c.ok(&["wait", "--deployed", "all", "--timeout", "96s"]);

    // The inputs, on a deployed 12-machine cluster.
    let text = ends_at_once(&c, &["--deployed", "50"], REFUSED);
    assert!(text.contains("50") && text.contains("only 12"), "{text}");
    ends_at_once(&c, &["--deployed", "0"], REACHED);
    // Already met: at once.
    ends_at_once(&c, &["--deployed", "all"], REACHED);
    ends_at_once(&c, &["--deployed", "12"], REACHED);
    ends_at_once(&c, &["--version", "0.1.0"], REACHED);
    ends_at_once(&c, &["--enabled"], REACHED);
    // An older release than every machine runs: peers never go back to it.
    let text = ends_at_once(&c, &["--version", "0.0.9"], REFUSED);
    assert!(text.contains("newer release"), "{text}");
    // Possible but not reached: the timeout's own code.
    for goal in [&["--version", "9.0.0"][..], &["--disabled"]] {
        let args = [goal, &["--timeout", "2s"][..]].concat();
        let (code, _, text) = wait(&c, &args);
        assert_eq!(code, TIMED_OUT, "wait {args:?}:\n{text}");
        assert!(text.contains("timed out after 2s"), "{text}");
    }
    c.ok(&["disable"]);
    c.ok(&["wait", "--disabled", "--timeout", "60s"]);
    c.ok(&["shutdown"]);
}
