//! Issue 15, kind 2: an application whose processes cannot be stopped cannot be tracked. It
//! is marked `failed` with the reason (which processes), in `app status` and the machine's
//! `status` row, and is not started again beside them; once they end, it starts.
//!
//! A process that SIGKILL does not end is made the real way: frozen by the cgroup v1 freezer
//! (a frozen task keeps a pending SIGKILL until thawed). Needs root and a writable
//! `/sys/fs/cgroup/freezer`; skipped with a message otherwise.

mod harness;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use harness::{Cluster, holds_for, wait_for};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(120);

/// A process carrying `app_dir` as its application marker (`SMON_APP_DIR`), frozen in a
/// freezer cgroup of its own. Dropped: thawed (so that it acts on pending signals), killed,
/// reaped, and its cgroup removed.
struct Frozen {
    child: Child,
    cgroup: PathBuf,
}

impl Frozen {
    /// `None` (and a message) where the freezer cannot be used.
    fn start(app_dir: &Path) -> Option<Self> {
        use std::os::unix::process::CommandExt;
        let parent = Path::new("/sys/fs/cgroup/freezer");
        let cgroup = parent.join(format!("smon-test-{}", std::process::id()));
        if !parent.join("freezer.state").exists() && !parent.join("tasks").exists()
            || std::fs::create_dir(&cgroup).is_err()
        {
            eprintln!("skipped: needs root and a writable cgroup v1 freezer");
            return None;
        }
        // A group of its own: the peer kills a stray's whole group, which must not be ours.
        let child = Command::new("sleep")
            .arg("100000")
            .env("SMON_APP_DIR", app_dir)
            .process_group(0)
            .spawn()
            .unwrap();
        let frozen = Frozen { child, cgroup };
        frozen.write("cgroup.procs", &frozen.child.id().to_string());
        frozen.write("freezer.state", "FROZEN");
        wait_for(LONG, "the process to freeze", || {
            frozen.read("freezer.state").trim() == "FROZEN"
        });
        Some(frozen)
    }

    fn write(&self, file: &str, what: &str) {
        std::fs::write(self.cgroup.join(file), what).unwrap();
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.cgroup.join(file)).unwrap_or_default()
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn thaw(&self) {
        self.write("freezer.state", "THAWED");
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::fs::write(self.cgroup.join("freezer.state"), "THAWED");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

/// The `app status --json` row of `app` on `machine`, if reported.
fn app_row(c: &Cluster, app: &str, machine: &str) -> Option<Value> {
    let out = c.run(&["app", "status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).ok()?;
    status["rows"]
        .as_array()?
        .iter()
        .find(|r| r["app"] == app && r["machine"] == format!("local:{machine}"))
        .cloned()
}

/// How many times the application's start command ran on `machine` (it counts itself).
fn starts(c: &Cluster, machine: &str) -> usize {
    std::fs::read_to_string(c.root(machine).join("apps/frozen/starts"))
        .map_or(0, |s| s.lines().count())
}

/// The pids of live processes carrying `marker` as their application marker, but `not`.
fn marked(marker: &Path, not: i32) -> Vec<i32> {
    let want = format!("SMON_APP_DIR={}", marker.display());
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if pid != not && !zombie && env.split(|&b| b == 0).any(|v| v == want.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

/// SIGKILL the process group of each of `pids`.
fn kill_groups(pids: &[i32]) {
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let pgid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(2).map(str::to_owned));
        if let Some(pgid) = pgid {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .status();
        }
    }
}

#[test]
fn an_untrackable_app_is_failed_with_its_reason_and_not_started_again() {
    let c = Cluster::deployed(2);
    let app = c.tmp.path().join("frozen");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("app.toml"),
        "name = \"frozen\"\nversion = \"1.0.0\"\n\
         start = \"echo start >> \\\"$SMON_APP_DIR/../starts\\\"; exec sleep 100000\"\n",
    )
    .unwrap();
    c.ok(&["app", "install", app.to_str().unwrap()]);
    wait_for(LONG, "frozen running on both machines", || {
        ["m001", "m002"]
            .iter()
            .all(|m| app_row(&c, "frozen", m).is_some_and(|r| r["state"] == "running"))
    });
    assert_eq!(starts(&c, "m001"), 1);
    // A process of the application outside its instance that SIGKILL does not end (as one
    // left by an earlier start, frozen); then the instance dies, and is to be restarted.
    let marker = c.root("m001").join("apps/frozen/1.0.0");
    let Some(frozen) = Frozen::start(&marker) else {
        c.ok(&["shutdown"]);
        return;
    };
    let instance = marked(&marker, frozen.pid());
    assert!(!instance.is_empty(), "no process of the instance found");
    kill_groups(&instance);
    // m001 cannot stop the frozen process: failed, saying which; m002 runs on.
    let why = format!(
        "processes {{{}}} of the application could not be stopped",
        frozen.pid()
    );
    wait_for(LONG, "frozen failed on m001 with its reason", || {
        app_row(&c, "frozen", "m001")
            .is_some_and(|r| r["state"] == "failed" && r["reason"] == why.as_str())
    });
    let text = c.ok(&["status"]);
    let line = text.lines().find(|l| l.starts_with("local:m001")).unwrap();
    assert!(line.contains(&format!("frozen: {why}")), "{line}");
    // Never started beside the process it cannot stop, through several retries.
    holds_for(Duration::from_secs(15), "m001 not starting it", || {
        starts(&c, "m001") == 1
            && app_row(&c, "frozen", "m001").is_some_and(|r| r["state"] == "failed")
    });
    assert!(app_row(&c, "frozen", "m002").is_some_and(|r| r["state"] == "running"));
    // Thawed, the process dies of the SIGKILL it holds: the application starts again, once.
    frozen.thaw();
    wait_for(LONG, "frozen running on m001 without a reason", || {
        app_row(&c, "frozen", "m001")
            .is_some_and(|r| r["state"] == "running" && r["reason"].is_null())
    });
    assert_eq!(starts(&c, "m001"), 2);
    drop(frozen);
    c.shutdown_leaves_nothing();
}
