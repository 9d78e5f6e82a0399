//! Machine identity (issue 15 kind 5): the spellings of one machine in a machines file are
//! one machine, so `init` and `membership set` refuse a file listing it twice, in one line
//! naming both lines, and change nothing. (Who answers a ping is checked end to end over SSH
//! in `ssh.rs`: `ssh_two_names_of_one_account_are_a_conflict_not_a_deployment`.)

mod harness;

use std::{path::Path, process::Command};

/// The file: every machine below line 1 is a spelling of the one above it.
const SPELLINGS: &[(&str, &str)] = &[
    ("alice@box2:2222", "alice@BOX2:2222"),
    ("alice@box2:2222", "alice@box2.:2222"),
    ("[::1]:2222", "[0:0:0:0:0:0:0:1]:2222"),
    ("box3", "box3:22"),
];

fn run(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(harness::console_bin())
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    (out.status.success(), err)
}

fn init(dir: &Path, machines: &Path) -> (bool, String) {
    run(&[
        "init".as_ref(),
        dir.as_os_str(),
        "--machines".as_ref(),
        machines.as_os_str(),
        "--peer-binary".as_ref(),
        harness::peer_bin().as_os_str(),
        "--ssh-trust-on-first-use".as_ref(),
    ])
}

/// The one-line refusal of `list` (written as `file`), naming both lines.
fn assert_names_both_lines(ok: bool, err: &str, file: &Path, first: &str) {
    assert!(!ok, "accepted");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    let f = file.display();
    assert!(err.contains(&format!("{f}:4: ")), "{err}");
    assert!(
        err.contains(&format!("is the machine of {f}:2 ({first:?})")),
        "{err}"
    );
}

#[test]
fn init_refuses_two_spellings_of_one_machine_naming_both_lines() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, (first, second)) in SPELLINGS.iter().enumerate() {
        let list = tmp.path().join(format!("m{i}.txt"));
        std::fs::write(&list, format!("# lab\n{first}\nlocal:a\n{second}\n")).unwrap();
        let dir = tmp.path().join(format!("c{i}"));
        let (ok, err) = init(&dir, &list);
        assert_names_both_lines(ok, &err, &list, first);
        assert!(!dir.exists(), "a refused init left {}", dir.display());
    }
    // The whole file: refused at its first repeat (line 2 repeats line 1).
    let list = tmp.path().join("all.txt");
    let all: Vec<&str> = [
        "alice@box2:2222",
        "alice@BOX2:2222",
        "alice@box2.:2222",
        "[::1]:2222",
        "[0:0:0:0:0:0:0:1]:2222",
        "box3",
        "box3:22",
    ]
    .to_vec();
    std::fs::write(&list, all.join("\n") + "\n").unwrap();
    let (ok, err) = init(&tmp.path().join("all"), &list);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "{}:2: \"alice@BOX2:2222\" is the machine of {}:1",
            list.display(),
            list.display()
        )),
        "{err}"
    );
    // Two accounts of one host, and one account on two ports, are distinct machines.
    let list = tmp.path().join("accounts.txt");
    std::fs::write(
        &list,
        "alice@box2:2222\nbob@box2:2222\nalice@box2:2223\nbox3\n",
    )
    .unwrap();
    let dir = tmp.path().join("accounts");
    let (ok, err) = init(&dir, &list);
    assert!(ok, "{err}");
    let files = smon_proto::ClusterFiles::new(&dir);
    let blob = std::fs::read(files.membership_blob()).unwrap();
    let names: Vec<String> = smon_proto::Membership::decode(&blob)
        .unwrap()
        .machines()
        .iter()
        .map(|m| m.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "alice@box2:2222",
            "alice@box2:2223",
            "bob@box2:2222",
            "box3:22"
        ],
        "the membership holds the canonical forms"
    );
}

#[test]
fn membership_set_refuses_two_spellings_of_one_machine_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("first.txt");
    std::fs::write(&list, "alice@box2:2222\nbox3\n").unwrap();
    let dir = tmp.path().join("c");
    let (ok, err) = init(&dir, &list);
    assert!(ok, "{err}");
    let before = std::fs::read(dir.join("machines")).unwrap();
    for (i, (first, second)) in SPELLINGS.iter().enumerate() {
        let list = tmp.path().join(format!("set{i}.txt"));
        std::fs::write(&list, format!("# new\n{first}\nbob@box9\n{second}\n")).unwrap();
        // No peer runs: the file is refused before any is asked.
        let (ok, err) = run(&[
            "-C".as_ref(),
            dir.as_os_str(),
            "membership".as_ref(),
            "set".as_ref(),
            list.as_os_str(),
        ]);
        assert_names_both_lines(ok, &err, &list, first);
        assert_eq!(std::fs::read(dir.join("machines")).unwrap(), before);
    }
}
