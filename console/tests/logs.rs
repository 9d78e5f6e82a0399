//! `logs` through the overlay (issue 16, part 1) on a real 12-machine local cluster: a
//! peer's log and an application's, read by the machine's own peer and reached through a
//! peer that is not the target; `--follow` sees a line appended after it started; a missing
//! log, a machine not in the membership and a machine whose peer does not answer get clear
//! one-line errors.

mod harness;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use harness::{Cluster, console_bin, wait_for};

fn append(path: &std::path::Path, text: &str) {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// An application that says where it runs, then sleeps.
fn install_talker(c: &Cluster) {
    let app = c.tmp.path().join("talker");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("app.toml"),
        "name = \"talker\"\nversion = \"1.0.0\"\n\
         start = \"echo hello from $SMON_MACHINE; exec sleep 100000\"\n",
    )
    .unwrap();
    c.ok(&["app", "install", app.to_str().unwrap()]);
}

#[test]
fn logs_of_a_peer_and_an_application_through_another_peer_follow_and_errors() {
    let c = Cluster::deployed(12);
    install_talker(&c);
    let app_log = c.machine("m007", |f| f.app_log("talker"));
    wait_for(Duration::from_secs(60), "talker's log on m007", || {
        std::fs::read_to_string(&app_log).is_ok_and(|t| t.contains("hello from local:m007"))
    });

    // The peer's own log of m007, read by m007's peer, asked of m001's.
    let marker = format!("marker of m007 {}\n", std::process::id());
    append(&c.machine("m007", |f| f.log()), &marker);
    let via = ["--via", "local:m001"];
    let started = Instant::now();
    let peer_log = c.ok(&[&["logs", "local:m007", "-n", "100"][..], &via].concat());
    eprintln!(
        "logs local:m007 -n 100 through local:m001: {:?}",
        started.elapsed()
    );
    assert!(
        peer_log.contains(marker.trim()),
        "no marker in:\n{peer_log}"
    );
    assert!(peer_log.lines().count() <= 100);
    let own = c.ok(&[&["logs", "local:m001", "-n", "100"][..], &via].concat());
    assert!(!own.contains(marker.trim()), "m001's log is not m007's");

    // The application's log.
    let talker = c.ok(&[&["logs", "local:m007", "talker", "-n", "100"][..], &via].concat());
    assert_eq!(talker, "hello from local:m007\n");

    follow_sees_an_appended_line(&c, &app_log);
    hostile_requests_are_refused_and_the_peer_lives(&c);
    errors_are_clear(&c);
}

/// Requests the console would never send, straight over RPC: each is refused or bounded, and
/// the peer goes on answering.
fn hostile_requests_are_refused_and_the_peer_lives(c: &Cluster) {
    use smon_proto::{LOG_MAX_LINES, LogFrom, LogRequest, MachineId, Refusal};
    let pid = c.pid("m002").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = c.client("m002").await;
        let ask = |machine: &str, app: Option<&str>, lines: u32, relayed: bool| {
            let req = LogRequest {
                machine: MachineId::local(machine),
                app: app.map(str::to_owned),
                from: LogFrom::Tail {
                    lines,
                    within_ms: Some(u64::MAX),
                },
                relayed,
            };
            client.read_log(smon_proto::tarpc::context::current(), req)
        };
        for name in [
            "..",
            "../../../../etc/passwd",
            "talker/../..",
            "/etc/passwd",
        ] {
            let answer = ask("m002", Some(name), 10, false).await.unwrap();
            assert!(
                matches!(answer, Err(Refusal::Invalid(_))),
                "{name}: {answer:?}"
            );
            let relayed = ask("m007", Some(name), 10, false).await.unwrap();
            assert!(
                matches!(relayed, Err(Refusal::Invalid(_))),
                "{name}: {relayed:?}"
            );
        }
        // A relayed request for another machine is not relayed again.
        let answer = ask("m007", None, 10, true).await.unwrap();
        assert!(matches!(answer, Err(Refusal::Invalid(_))), "{answer:?}");
        let huge = ask("m002", None, u32::MAX, false).await.unwrap().unwrap();
        assert!(huge.data.iter().filter(|&&b| b == b'\n').count() <= LOG_MAX_LINES as usize);
    });
    assert_eq!(c.pid("m002"), Some(pid), "the peer still runs");
}

fn follow_sees_an_appended_line(c: &Cluster, app_log: &std::path::Path) {
    let mut child = Command::new(console_bin())
        .arg("-C")
        .arg(&c.dir)
        .args(["logs", "local:m007", "talker", "--follow", "-n", "5"])
        .args(["--via", "local:m003"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(first, "hello from local:m007");
    let line = format!("written after the follower started {}", std::process::id());
    append(app_log, &format!("{line}\n"));
    let seen = rx.recv_timeout(Duration::from_secs(30));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(seen.unwrap(), line);
}

fn errors_are_clear(c: &Cluster) {
    let via = ["--via", "local:m001"];
    let one_line = |err: &str| {
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("smon-console: "), "{err}");
    };
    let err = c.fails(&[&["logs", "local:m007", "nosuch"][..], &via].concat());
    one_line(&err);
    assert!(
        err.contains("no application nosuch on local:m007") && err.contains("through local:m001"),
        "{err}"
    );
    let err = c.fails(&[&["logs", "local:m404"][..], &via].concat());
    one_line(&err);
    assert!(err.contains("local:m404 is not in the membership"), "{err}");
    let err = c.fails(&["logs", "local:m007", ".."]);
    one_line(&err);
    assert!(err.contains("\"..\" is not an application name"), "{err}");

    // A machine whose peer is gone (self-management off, so that nobody restarts it).
    c.ok(&["disable"]);
    c.ok(&["wait", "--disabled", "--timeout", "60s"]);
    c.kill9("m012");
    let err = c.fails(&[&["logs", "local:m012"][..], &via].concat());
    one_line(&err);
    assert!(
        err.contains("the peer of local:m012")
            && err.contains("does not answer")
            && err.contains("through local:m001"),
        "{err}"
    );
}
