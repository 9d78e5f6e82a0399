//! What operators reach for on day 2 (issue 16), on real local clusters: shell completions
//! and the man page, SMON_CLUSTER, `--json` on every query command, and `events`.

mod harness;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use harness::{Cluster, console_bin, have};
use serde_json::Value;

fn console(args: &[&str]) -> std::process::Output {
    Command::new(console_bin())
        .args(args)
        .env_remove("SMON_CLUSTER")
        .output()
        .expect("smon-console runs")
}

#[test]
fn completions_name_the_subcommands_and_the_man_page_renders() {
    for shell in ["bash", "zsh", "fish"] {
        let out = console(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        for sub in ["status", "events", "membership", "completions", "man"] {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let bash = String::from_utf8(console(&["completions", "bash"]).stdout).unwrap();
    assert!(
        bash.contains("complete -F _smon__console"),
        "not a bash completion"
    );
    if have("bash", "bash") {
        // The script loads in a real bash and registers the completion.
        let out = Command::new("bash")
            .arg("-c")
            .arg("source /dev/stdin && complete -p smon-console")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(bash.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("smon-console"),
            "bash did not register it: {out:?}"
        );
    }
    let bad = console(&["completions", "tcsh"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("tcsh"));

    let man = console(&["man"]);
    assert!(man.status.success());
    let roff = String::from_utf8(man.stdout).unwrap();
    assert!(roff.contains(".TH smon-console 1"), "no title:\n{roff}");
    for section in [
        "\"SMON-CONSOLE EVENTS\"",
        "\"SMON-CONSOLE MEMBERSHIP SHOW\"",
    ] {
        assert!(roff.contains(section), "no section {section}");
    }
    if have("man", "man-db") {
        let path = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(path.path(), &roff).unwrap();
        let out = Command::new("man")
            .arg("-l")
            .arg(path.path())
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "man -l failed: {out:?}");
        assert!(
            text.contains("SMON-CONSOLE EVENTS") && text.contains("--follow"),
            "rendered page lacks events:\n{text}"
        );
        assert!(
            !text.contains(".SH") && !text.contains("\\fB"),
            "roff left unrendered"
        );
    }
}

#[test]
fn smon_cluster_is_the_default_directory_and_every_query_answers_json() {
    let c = Cluster::deployed(3);
    let dir = c.dir.to_str().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let status_with = |env: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new(console_bin());
        cmd.current_dir(elsewhere.path()).env_remove("SMON_CLUSTER");
        if let Some(env) = env {
            cmd.env("SMON_CLUSTER", env);
        }
        cmd.args(args).output().unwrap()
    };
    // From a directory that is no cluster, SMON_CLUSTER alone finds it.
    let out = status_with(Some(dir), &["status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["machines"], 3);
    assert_eq!(status["deployed"], 3);
    // Without it, the current directory is no cluster.
    let out = status_with(None, &["status"]);
    assert!(!out.status.success());
    // An explicit -C wins over the environment, both ways.
    let nowhere = elsewhere.path().join("nowhere");
    let out = status_with(Some(dir), &["-C", nowhere.to_str().unwrap(), "status"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nowhere"),
        "{out:?}"
    );
    let out = status_with(Some(nowhere.to_str().unwrap()), &["-C", dir, "status"]);
    assert!(out.status.success(), "{out:?}");

    // --json on every query command parses, with the fields it promises.
    let json = |args: &[&str]| -> Value {
        let text = c.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}:\n{text}"))
    };
    assert_eq!(json(&["status", "--json"])["deployed"], 3);
    assert!(json(&["app", "status", "--json"]).is_object());
    let agent = json(&["agent", "status", "--json"]);
    assert_eq!(agent["running"], false, "{agent}");
    let members = json(&["membership", "show", "--json"]);
    assert_eq!(
        members["version"], members["directory_version"],
        "{members}"
    );
    assert_eq!(
        members["machines"],
        serde_json::json!(["local:m001", "local:m002", "local:m003"])
    );
    let text = c.ok(&["membership", "show"]);
    assert!(
        text.starts_with("membership version ") && text.contains("local:m002"),
        "{text}"
    );
    // `events` without --follow: the current state, one object per line, then exit.
    let events = c.ok(&["events", "--json"]);
    let lines: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for machine in ["local:m001", "local:m002", "local:m003"] {
        assert!(
            lines
                .iter()
                .any(|e| e["machine"] == machine && e["kind"] == "deployed"),
            "{machine} not deployed in:\n{events}"
        );
    }
    assert!(lines.iter().any(|e| e["kind"] == "livetag"));
    for e in &lines {
        assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
    }
}

/// Lines a child prints, as they come.
fn read_lines(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Read events until one satisfies `want`; every event read is kept in `seen`.
fn wait_event(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<Value>,
    what: &str,
    want: impl Fn(&Value) -> bool,
) -> usize {
    if let Some(i) = seen.iter().position(&want) {
        return i;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {what} event in 120 s; saw:\n{seen:#?}"));
        let event: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for field in ["time", "machine", "kind"] {
            assert!(event.get(field).is_some(), "no {field}: {line}");
        }
        seen.push(event);
        if want(seen.last().unwrap()) {
            return seen.len() - 1;
        }
    }
}

#[test]
fn events_follow_json_sees_a_deploy_an_app_state_change_and_a_livetag_flip_in_order() {
    let c = Cluster::new(3, "1s");
    let mut child = Command::new(console_bin())
        .arg("-C")
        .arg(&c.dir)
        .args(["events", "--follow", "--json", "--every", "300ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = read_lines(child.stdout.take().unwrap());
    let mut seen = Vec::new();

    c.ok(&["deploy"]);
    let deployed = wait_event(&rx, &mut seen, "deployed", |e| {
        e["kind"] == "deployed" && e["machine"] == "local:m002"
    });

    let app = c.tmp.path().join("sleeper");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("app.toml"),
        "name = \"sleeper\"\nversion = \"1.0.0\"\nstart = \"exec sleep 100000\"\n",
    )
    .unwrap();
    c.ok(&["app", "install", app.to_str().unwrap()]);
    let running = wait_event(&rx, &mut seen, "sleeper running", |e| {
        e["kind"] == "app_state" && e["app"] == "sleeper" && e["to"] == "running"
    });
    let asked = Instant::now();
    c.ok(&["app", "set", "sleeper", "offline"]);
    let acknowledged = asked.elapsed();
    let stopped = wait_event(&rx, &mut seen, "sleeper stopped", |e| {
        e["kind"] == "app_state"
            && e["app"] == "sleeper"
            && e["from"] == "running"
            && e["to"] == "stopped"
    });
    // Issue 16's goal: printed within 3 rounds (1 s each here) of the change.
    eprintln!(
        "app set offline: acknowledged after {acknowledged:?}, its event printed after {:?}",
        asked.elapsed()
    );

    c.ok(&["disable"]);
    let flipped = wait_event(&rx, &mut seen, "livetag off", |e| {
        e["kind"] == "livetag" && e["enabled"] == false
    });
    assert!(
        deployed < running && running < stopped && stopped < flipped,
        "out of order ({deployed}, {running}, {stopped}, {flipped}):\n{seen:#?}"
    );
    let flip = &seen[flipped];
    assert!(
        flip["machine"]
            .as_str()
            .is_some_and(|m| m.starts_with("local:m"))
    );
    assert!(flip["version"].as_u64().is_some());

    child.kill().unwrap();
    child.wait().unwrap();
}

/// `systemd-analyze verify` of a unit file: its complaints (it exits 0 on most of them).
fn verify_unit(path: &std::path::Path) -> String {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(path)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        if out.status.success() { "" } else { "failed" }
    )
}

#[test]
fn the_systemd_unit_examples_verify() {
    if !have("systemd-analyze", "systemd") {
        return;
    }
    let assets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/systemd");
    let tmp = tempfile::tempdir().unwrap();
    // The agent's unit names /usr/local/bin/smon-agent, which verify wants to exist: point it
    // at the built one. The peer's is a template: verify an instance of it.
    let agent = std::fs::read_to_string(assets.join("smon-agent.service")).unwrap();
    let built = console_bin().with_file_name("smon-agent");
    assert!(built.is_file(), "build smon-agent first");
    let agent = agent.replace("/usr/local/bin/smon-agent", built.to_str().unwrap());
    std::fs::write(tmp.path().join("smon-agent.service"), &agent).unwrap();
    std::fs::copy(
        assets.join("smon-peer@.service"),
        tmp.path().join("smon-peer@root.service"),
    )
    .unwrap();
    for unit in ["smon-agent.service", "smon-peer@root.service"] {
        let complaints = verify_unit(&tmp.path().join(unit));
        assert!(complaints.is_empty(), "{unit}: {complaints}");
    }
    // The check can fail: a broken copy is refused.
    std::fs::write(
        tmp.path().join("broken.service"),
        agent.replace("Type=simple", "Type=bogus"),
    )
    .unwrap();
    assert!(!verify_unit(&tmp.path().join("broken.service")).is_empty());
}
