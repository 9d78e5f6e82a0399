//! The lab itself, on real namespaces, sshds and users: `up` and its contract, SSH into each
//! machine (own address, own home), partition and heal, crash, boot and reboot, wipe, slow, and
//! `down` leaving nothing, also after `up` was killed half-way. Each test takes its lab down in
//! its cleanup (a guard), so a failing test leaves nothing either. Needs root, iproute2 and
//! openssh-server; skipped with a message otherwise.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use smon_lab::{Lab, LabGuard, UpOptions, leftovers};

fn lab_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_smon-lab"))
}

/// A temporary directory the lab's users can traverse, or None (with a message) when this
/// host cannot run a lab.
fn workspace() -> Option<tempfile::TempDir> {
    if let Some(why) = smon_lab::unavailable() {
        eprintln!("skipped: {why}");
        return None;
    }
    let tmp = tempfile::Builder::new()
        .prefix("smon-lab-test")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(tmp)
}

fn up(tmp: &tempfile::TempDir, machines: usize, users_per_machine: usize) -> LabGuard {
    let options = UpOptions {
        machines,
        users_per_machine,
    };
    LabGuard::up(&tmp.path().join("lab"), &options).unwrap()
}

fn cli(args: &[&str]) -> Output {
    Command::new(lab_bin()).args(args).output().unwrap()
}

fn cli_ok(args: &[&str]) -> String {
    let out = cli(args);
    assert!(
        out.status.success(),
        "smon-lab {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A refused command: its one-line error.
fn cli_err(args: &[&str]) -> String {
    let out = cli(args);
    assert!(!out.status.success(), "smon-lab {args:?} succeeded");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.trim().is_empty(), "{args:?}: no message");
    err
}

/// Run `script` on machine `entry` over SSH; its output (the command must succeed).
fn ssh(lab: &Lab, entry: usize, script: &str) -> String {
    let out = lab.ssh(entry).unwrap().arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "ssh {entry} {script:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// From machine `entry`, a TCP connection to `addr`:22: "open", "refused" or "timeout" (what
/// a partition looks like: packets vanish).
fn probe(lab: &Lab, entry: usize, addr: std::net::Ipv4Addr) -> String {
    let script = format!(
        "timeout 2 bash -c '</dev/tcp/{addr}/22' 2>/dev/null; case $? in 0) echo open;; 124) echo timeout;; *) echo refused;; esac"
    );
    ssh(lab, entry, &script).trim().to_owned()
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn up_prints_the_contract_and_every_account_is_a_machine_of_its_own() {
    let Some(tmp) = workspace() else { return };
    let dir = tmp.path().join("lab");
    let d = dir.to_str().unwrap();
    let out = cli_ok(&["up", "3", "--dir", d, "--users-per-machine", "2"]);
    let guard = LabGuard::adopt(Lab::open(&dir).unwrap());
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let machines: Vec<String> = json["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(machines.len(), 6, "{json}");
    let file = std::fs::read_to_string(json["machines_file"].as_str().unwrap()).unwrap();
    assert_eq!(file.lines().collect::<Vec<_>>(), machines);
    let known = std::fs::read_to_string(json["known_hosts"].as_str().unwrap()).unwrap();
    assert_eq!(known.lines().count(), 3, "{known}");
    let key = Path::new(json["key"].as_str().unwrap());
    assert_eq!(std::fs::metadata(key).unwrap().mode() & 0o777, 0o600);
    let host = json["host_address"].as_str().unwrap();
    assert!(
        host.starts_with("198.18.") || host.starts_with("198.19."),
        "{host}"
    );

    for (i, entry) in machines.iter().enumerate() {
        let e = i + 1;
        let (user, addr) = entry.split_once('@').unwrap();
        let seen = ssh(
            &guard,
            e,
            "id -un; echo $HOME; hostname -I; cat /proc/net/route; echo $USER > marker",
        );
        let lines: Vec<&str> = seen.lines().collect();
        assert_eq!(lines[0], user);
        let home = guard.home(e).unwrap();
        assert_eq!(Path::new(lines[1]), home);
        // Its own address and no other; one route, the lab's /24 (no default route out).
        assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), vec![addr]);
        let routes: Vec<&str> = lines[3..].iter().skip(1).copied().collect();
        assert_eq!(routes.len(), 1, "{seen}");
        assert!(!routes[0].split_whitespace().nth(1).unwrap().eq("00000000"));
        // Its home is its own: owned by it, holding only what it wrote.
        assert_eq!(
            std::fs::read_to_string(home.join("marker")).unwrap().trim(),
            user
        );
        let owner = std::fs::metadata(&home).unwrap().uid();
        assert_ne!(owner, 0);
    }
    // Two accounts of one machine share its address but not their homes.
    assert_eq!(guard.address(1).unwrap(), guard.address(2).unwrap());
    assert_ne!(guard.address(2).unwrap(), guard.address(3).unwrap());
    assert_ne!(guard.home(1).unwrap(), guard.home(2).unwrap());

    // `down` from the command line: nothing left, and a second `down` is harmless.
    let id = json["id"].as_str().unwrap().to_owned();
    cli_ok(&["down", "--dir", d]);
    assert_eq!(leftovers(&id), Vec::<String>::new());
    assert!(!dir.exists());
    let again = cli(&["down", "--dir", d]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to remove"));
    guard.down().unwrap();
}

#[test]
fn partition_splits_the_machines_silently_and_heal_joins_them() {
    let Some(tmp) = workspace() else { return };
    let mut lab = up(&tmp, 4, 1);
    let addr = |e: usize| lab.address(e).unwrap();
    let (a2, a3, a4) = (addr(2), addr(3), addr(4));
    assert_eq!(probe(&lab, 1, a3), "open");

    let d = lab.dir().to_str().unwrap().to_owned();
    cli_ok(&["partition", "--dir", &d, "1,2", "3-4"]);
    assert_eq!(probe(&lab, 1, a2), "open");
    assert_eq!(probe(&lab, 1, a3), "timeout");
    assert_eq!(probe(&lab, 1, a4), "timeout");
    assert_eq!(probe(&lab, 4, addr(1)), "timeout");
    assert_eq!(probe(&lab, 4, a3), "open");
    // The host (the operator's console and agent) still reaches both sides.
    for e in 1..=4 {
        std::net::TcpStream::connect_timeout(&(addr(e), 22).into(), Duration::from_secs(2))
            .unwrap();
    }
    let status: serde_json::Value =
        serde_json::from_str(&cli_ok(&["status", "--dir", &d])).unwrap();
    assert_eq!(status["partition"], serde_json::json!([[1, 2], [3, 4]]));

    cli_ok(&["heal", "--dir", &d]);
    assert_eq!(probe(&lab, 1, a3), "open");
    assert_eq!(probe(&lab, 4, addr(1)), "open");

    // The library's own call, three groups.
    lab.partition(&[vec![1], vec![2], vec![3, 4]]).unwrap();
    assert_eq!(probe(&lab, 1, a2), "timeout");
    assert_eq!(probe(&lab, 3, a4), "open");
    lab.heal().unwrap();
    assert_eq!(probe(&lab, 1, a2), "open");
    lab.down().unwrap();
}

#[test]
fn crash_kills_every_process_of_the_machine_and_boot_brings_sshd_back() {
    let Some(tmp) = workspace() else { return };
    let lab = up(&tmp, 2, 1);
    // Processes that detach every way they can: a new session, a double fork, nohup.
    ssh(
        &lab,
        1,
        "setsid sh -c 'sleep 100001 & exec sleep 100002' </dev/null >/dev/null 2>&1 & \
         (nohup sleep 100003 </dev/null >/dev/null 2>&1 &) ; echo started",
    );
    wait_for("the sleepers", Duration::from_secs(10), || {
        lab.processes(1).unwrap().len() >= 4
    });
    let before = lab.processes(1).unwrap();
    let other = lab.processes(2).unwrap();
    assert!(!other.is_empty());

    let d = lab.dir().to_str().unwrap().to_owned();
    let out = cli(&["crash", "--dir", &d, "1"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("processes killed"));
    for pid in &before {
        assert!(!smon_lab::is_alive(*pid), "pid {pid} survived the crash");
    }
    assert_eq!(lab.processes(1).unwrap(), Vec::<i32>::new());
    // The other machine did not notice.
    for pid in &other {
        assert!(smon_lab::is_alive(*pid));
    }
    // Down means down: no sshd answers.
    assert!(
        lab.ssh(1)
            .unwrap()
            .arg("true")
            .output()
            .unwrap()
            .status
            .code()
            != Some(0)
    );

    cli_ok(&["boot", "--dir", &d, "1"]);
    // Same host key (StrictHostKeyChecking against the lab's known_hosts), same home.
    assert!(ssh(&lab, 1, "echo $HOME").trim().ends_with("u1"));

    // The session's own sshd child may still be exiting after ssh returned.
    wait_for("only sshd after a boot", Duration::from_secs(10), || {
        lab.processes(1).unwrap().len() == 1
    });
    let sshd = lab.processes(1).unwrap();
    let killed = lab.reboot(1).unwrap();
    assert_eq!(killed, 1);
    assert!(!smon_lab::is_alive(sshd[0]));
    assert_eq!(ssh(&lab, 1, "echo back").trim(), "back");
    lab.down().unwrap();
}

#[test]
fn wipe_empties_every_home_of_the_machine_and_keeps_it_reachable() {
    let Some(tmp) = workspace() else { return };
    let lab = up(&tmp, 2, 2);
    for e in 1..=4 {
        ssh(
            &lab,
            e,
            "mkdir -p .smon/bin && echo x > .smon/bin/peer && echo y > .hidden",
        );
    }
    let d = lab.dir().to_str().unwrap().to_owned();
    // Line 2 is machine 1's second account: the whole machine is wiped.
    cli_ok(&["wipe", "--dir", &d, "2"]);
    for e in [1, 2] {
        let home = lab.home(e).unwrap();
        assert!(home.is_dir());
        assert_eq!(std::fs::read_dir(&home).unwrap().count(), 0, "{home:?}");
        assert_ne!(std::fs::metadata(&home).unwrap().uid(), 0);
        assert_eq!(ssh(&lab, e, "touch again && ls").trim(), "again");
    }
    for e in [3, 4] {
        assert!(lab.home(e).unwrap().join(".smon/bin/peer").exists());
    }
    lab.down().unwrap();
}

/// Seconds to push `bytes` to machine `entry` over SSH.
fn push_seconds(lab: &Lab, entry: usize, bytes: usize) -> f64 {
    let data = vec![0x5au8; bytes];
    let start = Instant::now();
    let mut child = lab
        .ssh(entry)
        .unwrap()
        .arg("cat > /dev/null")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&data).unwrap();
    assert!(child.wait().unwrap().success());
    start.elapsed().as_secs_f64()
}

#[test]
fn slow_limits_the_machines_link_and_off_lifts_it() {
    let Some(tmp) = workspace() else { return };
    let lab = up(&tmp, 2, 1);
    let bytes = 400_000;
    let fast = push_seconds(&lab, 2, bytes);
    let d = lab.dir().to_str().unwrap().to_owned();
    cli_ok(&["slow", "--dir", &d, "2", "1mbit"]);
    let slow = push_seconds(&lab, 2, bytes);
    let mbit = bytes as f64 * 8.0 / slow / 1e6;
    // 1 Mbit/s, a burst and SSH's framing aside: at most ~1.2 Mbit/s got through.
    assert!(
        mbit < 1.2,
        "{mbit:.2} Mbit/s through a 1mbit link ({slow:.2} s)"
    );
    assert!(
        mbit > 0.5,
        "{mbit:.2} Mbit/s: the limit is far below its rate"
    );
    // The other machine is not limited.
    let other = push_seconds(&lab, 1, bytes);
    assert!(other < slow / 2.0, "machine 1: {other:.2} s vs {slow:.2} s");
    cli_ok(&["slow", "--dir", &d, "2", "off"]);
    let lifted = push_seconds(&lab, 2, bytes);
    assert!(
        lifted < slow / 2.0,
        "after off: {lifted:.2} s (fast was {fast:.2} s)"
    );
    lab.down().unwrap();
}

#[test]
fn down_removes_a_lab_whose_up_was_killed_half_way() {
    let Some(tmp) = workspace() else { return };
    let dir = tmp.path().join("lab");
    let mut child = Command::new(lab_bin())
        .args(["up", "40", "--dir", dir.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once some machines exist, before it finishes.
    let mut id = String::new();
    wait_for("up to make machines", Duration::from_secs(60), || {
        id = std::fs::read_to_string(dir.join("lab.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        !id.is_empty()
            && leftovers(&id)
                .iter()
                .filter(|l| l.starts_with("user"))
                .count()
                >= 3
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!leftovers(&id).is_empty());
    // A lab that never finished cannot be acted on, only removed.
    let err = cli_err(&["crash", "--dir", dir.to_str().unwrap(), "1"]);
    assert!(err.contains("never finished"), "{err}");
    cli_ok(&["down", "--dir", dir.to_str().unwrap()]);
    assert_eq!(leftovers(&id), Vec::<String>::new());
    assert!(!dir.exists());
    cli_ok(&["down", "--dir", dir.to_str().unwrap()]);
}

#[test]
fn bad_input_is_refused_in_one_line_and_changes_nothing() {
    let Some(tmp) = workspace() else { return };
    let fresh = tmp.path().join("fresh");
    let f = fresh.to_str().unwrap();
    for (args, says) in [
        (vec!["up", "0", "--dir", f], "1 to 253"),
        (vec!["up", "300", "--dir", f], "1 to 253"),
        (
            vec!["up", "2", "--dir", f, "--users-per-machine", "0"],
            "1 to 16",
        ),
        (vec!["crash", "--dir", f, "1"], "no lab here"),
    ] {
        let err = cli_err(&args);
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!fresh.exists(), "{args:?} made {f}");
    }
    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("mine"), "x").unwrap();
    let err = cli_err(&["up", "1", "--dir", busy.to_str().unwrap()]);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);

    let lab = up(&tmp, 2, 1);
    let d = lab.dir().to_str().unwrap().to_owned();
    let record = std::fs::read(lab.dir().join("lab.json")).unwrap();
    for (args, says) in [
        (vec!["crash", "--dir", &d, "3"], "there are 2 machines"),
        (vec!["slow", "--dir", &d, "1", "fast"], "rate \"fast\""),
        (vec!["partition", "--dir", &d, "1,2", "2"], "in two groups"),
        (
            vec!["partition", "--dir", &d, "1", "7"],
            "there are 2 machines",
        ),
    ] {
        let err = cli_err(&args);
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert_eq!(std::fs::read(lab.dir().join("lab.json")).unwrap(), record);
    assert_eq!(probe(&lab, 1, lab.address(2).unwrap()), "open");
    lab.down().unwrap();
}
