//! Issue 15, kind 7: a machine that cannot be managed shows why. A peer whose login to a
//! machine fails records the failure ("login failed: ...", the core's `on_login`) in the
//! machine's record, and `status` shows it, in text and in JSON. The machine here is an SSH
//! entry on a loopback port where nothing listens.

mod harness;

use std::time::Duration;

use harness::Cluster;

/// A loopback port nothing listens on (bound to port 0, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_failed_login_s_reason_reaches_the_record_and_status() {
    let c = Cluster::new_with(3, "1s", |_| vec!["--ssh-trust-on-first-use".into()]);
    c.ok(&["deploy"]);
    c.ok(&["wait", "--deployed", "all", "--timeout", "120s"]);
    let ssh = format!("nobody@127.0.0.1:{}", closed_port());
    let list = c.tmp.path().join("with-ssh.txt");
    std::fs::write(
        &list,
        format!("local:m001\nlocal:m002\nlocal:m003\n{ssh}\n"),
    )
    .unwrap();
    c.ok(&["membership", "set", list.to_str().unwrap()]);
    let mut last = serde_json::Value::Null;
    let shown = harness::wait_until(Duration::from_secs(120), || {
        last = c.status();
        last["records"].as_array().is_some_and(|rows| {
            rows.iter().any(|r| {
                r["machine"] == ssh.as_str()
                    && r["reason"]
                        .as_str()
                        .is_some_and(|why| why.contains("login failed: "))
            })
        })
    });
    assert!(
        shown,
        "no failed login in {ssh}'s row: {last}\n{}",
        c.log_tails(20)
    );
    let row = last["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["machine"] == ssh.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["state"], "unreachable", "{row}");
    let why = row["reason"].as_str().unwrap().to_owned();
    assert!(
        why.starts_with("pinged without answer; login failed: ") && why.len() > 40,
        "{why}"
    );
    // Text status: the row, with why after it.
    let text = c.ok(&["status"]);
    let line = text
        .lines()
        .find(|l| l.starts_with(&ssh))
        .unwrap_or_else(|| panic!("no row for {ssh}: {text}"));
    assert!(line.contains("unreachable"), "{line}");
    assert!(line.contains("login failed: "), "{line}");
    c.shutdown_leaves_nothing();
}
