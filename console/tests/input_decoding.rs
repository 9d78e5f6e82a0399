//! Files and arguments a user feeds the console are decoded helpfully (issue 15, kind 10): a
//! byte-order mark is accepted, and every refusal is one line saying what and where.

mod harness;

use std::{path::Path, process::Command};

/// `smon-console init` of a cluster from a machines file holding `bytes` (plus `args`): the
/// exit status's success and stderr.
fn init(tmp: &Path, name: &str, bytes: &[u8], args: &[&str]) -> (bool, String) {
    let machines = tmp.join(name);
    std::fs::write(&machines, bytes).unwrap();
    let out = Command::new(harness::console_bin())
        .arg("init")
        .arg(tmp.join(format!("{name}.cluster")))
        .arg("--machines")
        .arg(&machines)
        .arg("--peer-binary")
        .arg(harness::peer_bin())
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    (out.status.success(), err)
}

#[test]
fn machines_files_are_decoded_with_reasons_that_say_what_and_where() {
    let tmp = tempfile::tempdir().unwrap();
    // A byte-order mark on line 1, before a machine or before a comment: accepted.
    for (name, bytes) in [
        ("bom", &b"\xef\xbb\xbflocal:a\nlocal:b\n"[..]),
        ("bom-comment", b"\xef\xbb\xbf# my machines\nlocal:a\n"),
    ] {
        let (ok, err) = init(tmp.path(), name, bytes, &[]);
        assert!(ok, "{name}: {err}");
        let saved = std::fs::read(tmp.path().join(format!("{name}.cluster/machines"))).unwrap();
        assert!(
            !saved.starts_with(b"\xef\xbb\xbf"),
            "{name}: the mark was kept"
        );
    }
    for (name, bytes, says) in [
        (
            "v6",
            &b"local:a\nfe80::1\n"[..],
            "v6:2: \"fe80::1\": an IPv6 address needs brackets: [fe80::1] or [fe80::1]:PORT",
        ),
        (
            "zone",
            b"[fe80::1%eth0]:22\n",
            "zone:1: \"[fe80::1%eth0]:22\": zone ids (%eth0) are not supported",
        ),
        (
            "latin1",
            b"# caf\xc3\xa9 ok\nlocal:a\nlocal:caf\xe9\n",
            "latin1:3: not UTF-8 (byte 0xe9 at column 10): save the file as UTF-8",
        ),
    ] {
        let (ok, err) = init(tmp.path(), name, bytes, &[]);
        assert!(!ok, "{name} was accepted");
        assert_eq!(err.lines().count(), 1, "{name}: not one line: {err}");
        assert!(err.contains(says), "{name}: {err}");
        assert!(
            !tmp.path().join(format!("{name}.cluster")).exists(),
            "{name}: a refused init left a directory"
        );
    }
}

#[test]
fn known_hosts_and_arguments_are_refused_with_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    for (name, known, says) in [
        (
            "port",
            format!("[h1]:22x {key}\n"),
            "known_hosts.port:1: bad port \"22x\"",
        ),
        (
            "short",
            "\u{feff}# c\nh1 ssh-ed25519\n".into(),
            "known_hosts.short:2: not a known_hosts entry",
        ),
        ("latin1", "h1 \u{e9}\n".into(), "ok"),
    ] {
        let path = tmp.path().join(format!("known_hosts.{name}"));
        let mut bytes = known.into_bytes();
        if name == "latin1" {
            bytes = b"# h\xe9\n".to_vec();
        }
        std::fs::write(&path, &bytes).unwrap();
        let says = if name == "latin1" {
            "known_hosts.latin1:1: not UTF-8 (byte 0xe9 at column 4)"
        } else {
            says
        };
        let (ok, err) = init(
            tmp.path(),
            &format!("m-{name}"),
            b"h1\n",
            &["--known-hosts", path.to_str().unwrap()],
        );
        assert!(!ok, "{name} was accepted");
        assert_eq!(err.lines().count(), 1, "{name}: not one line: {err}");
        assert!(err.contains(says), "{name}: {err}");
    }
    // Arguments: a machine, a duration and a version, each refused saying why.
    for (args, says) in [
        (
            &["--via", "fe80::1", "status"][..],
            "IPv6 address needs brackets",
        ),
        (&["wait", "--deployed", "1", "--timeout", "5"], "--timeout"),
        (
            &["package", "--version", "v1", "--out", "x"],
            "MAJOR.MINOR.PATCH",
        ),
    ] {
        let out = Command::new(harness::console_bin())
            .args(["-C", tmp.path().to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
        assert!(!err.contains("<argument>"), "{args:?}: {err}");
    }
}

/// `app status --json` of `c` once `cond` holds of it (polled; the console asks anew each time).
fn app_status_when(
    c: &harness::Cluster,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let reached = harness::wait_until(std::time::Duration::from_secs(120), || {
        let out = c.run(&["app", "status", "--json"]);
        if out.status.success() {
            last = serde_json::from_slice(&out.stdout).expect("app status JSON");
        }
        cond(&last)
    });
    assert!(reached, "timed out waiting for {what}: {last}");
    last
}

/// Kind 10 beyond machines files: an application's `app.toml` (`app install DIR`) and the
/// list of `membership set FILE` are decoded the same way: a leading byte-order mark is
/// dropped (the file is taken as without it), and a byte that is not UTF-8 is refused in one
/// line naming the file, the line and the column, with nothing changed.
#[test]
fn app_toml_and_membership_files_are_decoded_like_machines_files() {
    let c = harness::Cluster::deployed(2);
    let app = |name: &str, bytes: &[u8]| {
        let dir = c.tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app.toml"), bytes).unwrap();
        dir
    };
    // A mark before the first line (a comment): installed, and runs on both machines.
    let bom = app(
        "bom",
        b"\xef\xbb\xbf# saved by a Windows editor\nname = \"bom\"\nversion = \"1.0.0\"\nstart = \"exec sleep 100000\"\n",
    );
    c.ok(&["app", "install", bom.to_str().unwrap()]);
    app_status_when(&c, "bom running on both machines", |s| {
        let rows: Vec<_> = s["rows"]
            .as_array()
            .map(|r| r.iter().filter(|r| r["app"] == "bom").collect())
            .unwrap_or_default();
        rows.len() == 2 && rows.iter().all(|r| r["state"] == "running")
    });
    // A Latin-1 byte on line 3: refused, saying where; nothing of it reaches a machine.
    let latin1 = app(
        "latin1",
        b"name = \"latin1\"\nversion = \"1.0.0\"\nstart = \"echo caf\xe9\"\n",
    );
    let err = c.fails(&["app", "install", latin1.to_str().unwrap()]);
    let says = format!(
        "{}:3: not UTF-8 (byte 0xe9 at column 18): save the file as UTF-8",
        latin1.join("app.toml").display()
    );
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(&says), "{err}");
    let status = c.ok(&["app", "status", "--json"]);
    assert!(!status.contains("latin1"), "{status}");
    for name in &c.names {
        assert!(!c.root(name).join("apps/latin1").exists(), "{name} got it");
    }

    // membership set: the same list behind a mark (and a comment) is the same list.
    let machines = c.dir.join("machines");
    let before = std::fs::read(&machines).unwrap();
    let version = |c: &harness::Cluster| c.status()["membership_version"].clone();
    let v_before = version(&c);
    let list = c.tmp.path().join("bom-list.txt");
    std::fs::write(
        &list,
        b"\xef\xbb\xbf# the same two\nlocal:m001\nlocal:m002\n",
    )
    .unwrap();
    let out = c.ok(&["membership", "set", list.to_str().unwrap()]);
    assert!(out.contains("unchanged"), "{out}");
    // A Latin-1 byte on line 2, column 11: refused in one line; the list is as it was.
    let list = c.tmp.path().join("latin1-list.txt");
    std::fs::write(&list, b"local:m001\nlocal:caf\xe9\nlocal:m002\n").unwrap();
    let err = c.fails(&["membership", "set", list.to_str().unwrap()]);
    let says = format!(
        "{}:2: not UTF-8 (byte 0xe9 at column 10): save the file as UTF-8",
        list.display()
    );
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(&says), "{err}");
    assert_eq!(
        std::fs::read(&machines).unwrap(),
        before,
        "the list changed"
    );
    assert_eq!(version(&c), v_before, "the cluster's list changed");
    c.shutdown_leaves_nothing();
}
