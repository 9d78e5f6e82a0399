//! Applications end to end, on real local clusters: real peers, real application processes
//! (the example `assets/apps/hello-http`, a python3 HTTP server, and small shell apps), a real
//! report listener.

mod harness;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use harness::Cluster;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(180);

fn assets_app(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../assets/apps")
        .join(name)
}

/// A free loopback port (bound to port 0, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Copy an application directory, replacing text in its app.toml.
fn copy_app(from: &Path, to: &Path, replace: &[(&str, &str)]) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    let toml = to.join("app.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    for (a, b) in replace {
        assert!(text.contains(a), "{a:?} not in app.toml");
        text = text.replace(a, b);
    }
    std::fs::write(&toml, text).unwrap();
}

/// Write a small application: app.toml from `toml` lines.
fn write_app(dir: &Path, toml: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("app.toml"), toml).unwrap();
}

/// Poll `cond` every half second (each poll runs the console) until it holds.
fn wait_status(
    c: &Cluster,
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    let mut last = Value::Null;
    loop {
        let out = c.run(&["app", "status", "--json"]);
        if out.status.success() {
            last = serde_json::from_slice(&out.stdout).expect("status JSON");
            if cond(&last) {
                return last;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last status:\n{}\n{}",
            summary(&last),
            c.log_tails(30)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn summary(status: &Value) -> String {
    serde_json::to_string_pretty(&status["apps"]).unwrap_or_default()
}

/// The rows of `app` (machine → row).
fn rows<'a>(status: &'a Value, app: &str) -> Vec<&'a Value> {
    status["rows"]
        .as_array()
        .map(|rows| rows.iter().filter(|r| r["app"] == app).collect())
        .unwrap_or_default()
}

/// `n` machines report `app` `version` in `state`.
fn all_in(status: &Value, app: &str, version: &str, state: &str, n: usize) -> bool {
    let rows = rows(status, app);
    rows.len() == n
        && rows
            .iter()
            .all(|r| r["version"] == version && r["state"] == state)
}

fn row<'a>(status: &'a Value, app: &str, machine: &str) -> Option<&'a Value> {
    rows(status, app)
        .into_iter()
        .find(|r| r["machine"] == format!("local:{machine}"))
}

/// Is `pid` the peer's runner of an application command (`smon-peer app-run`)?
fn is_runner(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.starts_with(b"smon-peer\0app-run\0"))
}

/// Live processes working in `ROOT/apps/<app>/` of a machine, the peer's runners left out:
/// (pid, version directory).
fn app_procs(c: &Cluster, machine: &str, app: &str) -> Vec<(i32, String)> {
    let base = c.machine(machine, |f| f.app(app));
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd"))
            && let Ok(rest) = cwd.strip_prefix(&base)
            && harness::is_alive(pid)
            && !is_runner(pid)
        {
            found.push((pid, rest.to_string_lossy().into_owned()));
        }
    }
    found
}

/// The one process of `app` on `machine`, once there is exactly one.
fn one_proc(c: &Cluster, machine: &str, app: &str) -> (i32, String) {
    let mut last = Vec::new();
    let ok = harness::wait_until(Duration::from_secs(60), || {
        last = app_procs(c, machine, app);
        last.len() == 1
    });
    assert!(ok, "{machine}: expected one {app} process, found {last:?}");
    last.pop().unwrap()
}

fn http_get(addr: &str) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The loopback address of a local machine.
fn machine_addr(c: &Cluster, machine: &str) -> String {
    c.config().local_address(machine).to_string()
}

/// A report listener: every line received, parsed.
struct Listener {
    port: u16,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Listener {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        let value: Value = serde_json::from_str(&line)
                            .unwrap_or_else(|e| panic!("report line {line:?}: {e}"));
                        sink.lock().unwrap().push(value);
                    }
                });
            }
        });
        Self { port, lines }
    }

    fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    fn wait(&self, what: &str, mut cond: impl FnMut(&[Value]) -> bool) {
        let ok = harness::wait_until(LONG, || cond(&self.lines()));
        assert!(
            ok,
            "timed out waiting for reports: {what}; got {:?}",
            self.lines().len()
        );
    }
}

#[test]
fn install_supervise_report_restart_peer_and_upgrade_on_twenty_machines() {
    // The example application is a python3 HTTP server.
    if !harness::have("python3", "python3") {
        return;
    }
    let c = Cluster::deployed(20);
    let listener = Listener::start();
    let port = free_port().to_string();
    let v1 = install_hello_v1(&c, &listener, &port);
    let mut pids = hello_runs_everywhere(&c, &listener, &port);
    killed_apps_are_restarted(&c, &listener, &mut pids);
    a_restarted_peer_adopts_its_app(&c, &pids);
    offline_stops_it_everywhere(&c);
    ignore_starts_it_once(&c);
    an_upgrade_replaces_it_everywhere(&c, &v1, &port);
    shutdown_keep_apps_leaves_them_running(&c);
}

/// `shutdown --keep-apps`: every peer stops, every application process stays.
fn shutdown_keep_apps_leaves_them_running(c: &Cluster) {
    c.ok(&["app", "set", "hello-http", "online"]);
    wait_status(c, LONG, "hello-http running on all 20", |s| {
        all_in(s, "hello-http", "2.0.0", "running", 20)
    });
    let before = app_processes(c);
    assert!(!before.is_empty(), "no application process to keep");
    let out = c.ok(&["shutdown", "--keep-apps"]);
    assert!(out.contains("applications keep running"), "{out}");
    assert!(
        c.names.iter().all(|n| c.pid(n).is_none()),
        "a peer still runs"
    );
    for pid in &before {
        assert!(harness::is_alive(*pid), "application pid {pid} was stopped");
    }
}

/// Live processes of the cluster that are not peers: the applications'.
fn app_processes(c: &Cluster) -> Vec<i32> {
    c.processes()
        .into_iter()
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !String::from_utf8_lossy(&cmd).contains("smon-peer")
        })
        .collect()
}

/// hello-http 1.0.0 on `port`, reporting to `listener`, installed; its directory.
fn install_hello_v1(c: &Cluster, listener: &Listener, port: &str) -> PathBuf {
    let report = format!("report = \"127.0.0.1:{}\"\n", listener.port);
    let v1 = c.tmp.path().join("hello-v1");
    copy_app(
        &assets_app("hello-http"),
        &v1,
        &[
            ("PORT = \"8080\"", &format!("PORT = \"{port}\"")),
            (
                "default_state = \"online\"\n",
                &format!("default_state = \"online\"\n{report}"),
            ),
        ],
    );
    let out = c.ok(&["app", "install", v1.to_str().unwrap()]);
    assert!(
        out.contains("hello-http 1.0.0 verified and installed"),
        "{out}"
    );

    v1
}

/// Running everywhere: in the view, as processes, and answering HTTP; machine → pid.
fn hello_runs_everywhere(c: &Cluster, listener: &Listener, port: &str) -> BTreeMap<String, i32> {
    wait_status(c, LONG, "hello-http running on all 20", |s| {
        all_in(s, "hello-http", "1.0.0", "running", 20)
    });
    let mut pids = BTreeMap::new();
    for name in &c.names {
        let (pid, dir) = one_proc(c, name, "hello-http");
        assert_eq!(dir, "1.0.0");
        pids.insert(name.clone(), pid);
        let addr = format!("{}:{port}", machine_addr(c, name));
        let mut body = None;
        harness::wait_for(Duration::from_secs(30), &format!("HTTP on {addr}"), || {
            body = http_get(&addr);
            body.is_some()
        });
        let body = body.unwrap();
        assert!(
            body.contains(&format!("hello from local:{name} (hello-http 1.0.0)")),
            "{body}"
        );
    }
    listener.wait("a running report from every machine", |lines| {
        c.names.iter().all(|n| {
            lines.iter().any(|l| {
                l["machine"] == format!("local:{n}")
                    && l["app"] == "hello-http"
                    && l["state"] == "running"
                    // The process group: that of the runner, python's parent.
                    && l["pid"] == parent(pids[n])
            })
        })
    });

    pids
}

/// Kill its process on 3 machines: each is restarted (a new process, one restart counted).
fn killed_apps_are_restarted(c: &Cluster, listener: &Listener, pids: &mut BTreeMap<String, i32>) {
    let victims = &c.names[3..6];
    for v in victims {
        harness::kill(pids[v]);
    }
    for v in victims {
        harness::wait_for(LONG, &format!("{v}: hello-http restarted"), || {
            let procs = app_procs(c, v, "hello-http");
            procs.len() == 1 && procs[0].0 != pids[v]
        });
        pids.insert(v.clone(), one_proc(c, v, "hello-http").0);
    }
    let status = wait_status(c, LONG, "the restarts in the view", |s| {
        all_in(s, "hello-http", "1.0.0", "running", 20)
            && victims
                .iter()
                .all(|v| row(s, "hello-http", v).is_some_and(|r| r["restarts"] == 1))
    });
    assert_eq!(status["apps"][0]["restarts"], 3, "{}", summary(&status));
    listener.wait("the deaths and restarts reported", |lines| {
        victims.iter().all(|v| {
            let mine: Vec<_> = lines
                .iter()
                .filter(|l| l["machine"] == format!("local:{v}"))
                .collect();
            mine.iter()
                .any(|l| l["state"] == "backoff" || l["state"] == "starting")
                && mine
                    .iter()
                    .any(|l| l["restarts"] == 1 && l["state"] == "running")
        })
    });
}

/// Restart a peer (kill -9; the others restart it): its application is adopted, neither
/// duplicated nor orphaned.
fn a_restarted_peer_adopts_its_app(c: &Cluster, pids: &BTreeMap<String, i32>) {
    let host = &c.names[7];
    let app_pid = pids[host];
    let old_peer = c.kill9(host);
    harness::wait_for(LONG, &format!("{host}'s peer restarted"), || {
        c.pid(host).is_some_and(|p| p != old_peer)
    });
    let reported = local_app_status(c, host);
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(
        reported[0].state,
        smon_proto::AppState::Running,
        "{reported:?}"
    );
    assert_eq!(
        app_procs(c, host, "hello-http"),
        vec![(app_pid, "1.0.0".to_string())]
    );
    let log = std::fs::read_to_string(c.machine(host, |f| f.log())).unwrap();
    assert!(log.contains("adopted running process group"), "{log}");
}

/// Offline on all: stopped everywhere.
fn offline_stops_it_everywhere(c: &Cluster) {
    let out = c.ok(&["app", "set", "hello-http", "offline", "--all"]);
    assert!(out.contains("hello-http set offline"), "{out}");
    wait_status(c, LONG, "hello-http stopped on all 20", |s| {
        all_in(s, "hello-http", "1.0.0", "stopped", 20)
    });
    for name in &c.names {
        assert!(
            app_procs(c, name, "hello-http").is_empty(),
            "{name} still runs it"
        );
    }
}

/// Ignore: started once everywhere, and not restarted after a kill.
fn ignore_starts_it_once(c: &Cluster) {
    c.ok(&["app", "set", "hello-http", "ignore"]);
    wait_status(c, LONG, "hello-http running (ignore) on all 20", |s| {
        all_in(s, "hello-http", "1.0.0", "running", 20)
            && rows(s, "hello-http")
                .iter()
                .all(|r| r["desired"] == "ignore")
    });
    let ignored = &c.names[10..12];
    for v in ignored {
        let (pid, _) = one_proc(c, v, "hello-http");
        harness::kill(pid);
    }
    wait_status(c, LONG, "the killed ignored ones stopped", |s| {
        ignored
            .iter()
            .all(|v| row(s, "hello-http", v).is_some_and(|r| r["state"] == "stopped"))
    });
    // Time passes (a per-machine setting elsewhere takes effect): they stay stopped.
    c.ok(&[
        "app",
        "set",
        "hello-http",
        "offline",
        "--machine",
        "local:m013",
    ]);
    wait_status(c, LONG, "m013 offline", |s| {
        row(s, "hello-http", "m013")
            .is_some_and(|r| r["state"] == "stopped" && r["desired"] == "offline")
    });
    for v in ignored {
        assert!(
            app_procs(c, v, "hello-http").is_empty(),
            "{v}: an ignored app was restarted"
        );
    }
    assert!(app_procs(c, "m013", "hello-http").is_empty());
}

/// Upgrade: the new version everywhere (online again), the old one gone; an older one is
/// refused.
fn an_upgrade_replaces_it_everywhere(c: &Cluster, v1: &Path, port: &str) {
    let v2 = c.tmp.path().join("hello-v2");
    copy_app(v1, &v2, &[("version = \"1.0.0\"", "version = \"2.0.0\"")]);
    c.ok(&["app", "set", "hello-http", "online"]);
    let out = c.ok(&["app", "install", v2.to_str().unwrap()]);
    assert!(
        out.contains("hello-http 2.0.0 verified and installed"),
        "{out}"
    );
    wait_status(c, LONG, "hello-http 2.0.0 running on all 20", |s| {
        all_in(s, "hello-http", "2.0.0", "running", 20)
            && rows(s, "hello-http")
                .iter()
                .all(|r| r["desired"] == "online")
    });
    for name in &c.names {
        let (_, dir) = one_proc(c, name, "hello-http");
        assert_eq!(dir, "2.0.0", "{name}");
        let addr = format!("{}:{port}", machine_addr(c, name));
        let mut body = String::new();
        harness::wait_for(
            Duration::from_secs(30),
            &format!("HTTP 2.0.0 on {addr}"),
            || {
                body = http_get(&addr).unwrap_or_default();
                body.contains("hello-http 2.0.0")
            },
        );
        assert!(
            c.root(name).join("apps/hello-http/2.0.0.pkg").is_file(),
            "{name}"
        );
    }
    // Installing an older version is refused.
    let err = c.fails(&["app", "install", v1.to_str().unwrap()]);
    assert!(err.contains("older than the installed 2.0.0"), "{err}");

    // The human status.
    let text = c.ok(&["app", "status", "hello-http"]);
    assert!(
        text.contains("hello-http: on 20/20 machines; running ×20; versions 2.0.0 ×20"),
        "{text}"
    );

    c.ok(&["app", "set", "hello-http", "offline"]);
    wait_status(c, LONG, "hello-http stopped on all 20", |s| {
        all_in(s, "hello-http", "2.0.0", "stopped", 20)
    });
}

/// A peer's own answer to `get_app_status` (it answers once its supervisors reported).
fn local_app_status(c: &Cluster, machine: &str) -> Vec<smon_proto::AppStatus> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut last = Vec::new();
    let ok = harness::wait_until(LONG, || {
        last = runtime.block_on(async {
            let dir = smon_console::cluster_dir::ClusterDir::open(&c.dir).unwrap();
            let addr = dir.peer_address(&smon_proto::MachineId::local(machine));
            let Ok(client) =
                smon_proto::transport::peer_client(addr.as_str(), &dir.key, Duration::from_secs(2))
                    .await
            else {
                return Vec::new();
            };
            client
                .get_app_status(smon_proto::tarpc::context::current(), None)
                .await
                .unwrap_or_default()
        });
        !last.is_empty()
    });
    assert!(ok, "{machine} never reported its applications");
    last
}

#[test]
fn crash_loops_fail_bad_packages_are_refused_and_machines_can_differ() {
    let c = Cluster::deployed(5);
    a_malformed_app_toml_is_refused(&c);
    let sleeper = foreign_and_tampered_packages_are_refused(&c);
    a_good_one_spreads_and_one_machine_can_differ(&c, &sleeper);
    a_restarted_peer_adopts_the_group_and_kills_a_stray(&c);
    a_crash_loop_ends_failed(&c);
    a_failing_status_command_restarts_it(&c);
    a_stopped_app_is_continued_to_stop_by_its_handler(&c);
    a_removed_machine_stops_its_apps(&c);
    shutdown_stops_the_apps_too(&c, "sleeper", 4);
}

/// `shutdown` stops the applications with the peers (as supervisord stops its programs):
/// nothing of the cluster runs after it.
fn shutdown_stops_the_apps_too(c: &Cluster, app: &str, machines: usize) {
    c.ok(&["app", "set", app, "online"]);
    wait_status(c, LONG, &format!("{app} running on {machines}"), |s| {
        all_in(s, app, "1.0.0", "running", machines)
    });
    assert!(
        !app_processes(c).is_empty(),
        "no application process to stop"
    );
    let out = c.ok(&["shutdown"]);
    assert!(out.contains("and their applications"), "{out}");
    let left = c.processes();
    assert!(
        left.is_empty(),
        "left running: {}",
        harness::describe(&left)
    );
}

/// A malformed app.toml: an error naming the file, the line and the field; nothing installed.
fn a_malformed_app_toml_is_refused(c: &Cluster) {
    let bad = c.tmp.path().join("bad");
    write_app(
        &bad,
        "name = \"bad\"\nversion = \"1.0.0\"\nstart = \"sleep 1000\"\n\n[backoff]\nfail_after = \"many\"\n",
    );
    let err = c.fails(&["app", "install", bad.to_str().unwrap()]);
    assert!(
        err.contains(&format!(
            "{}:6: field `backoff.fail_after`: expected an integer, found a string",
            bad.join("app.toml").display()
        )),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    std::fs::write(
        bad.join("app.toml"),
        "name = \"bad\"\nversion = 1\nstart = \"x\"\n",
    )
    .unwrap();
    let err = c.fails(&["app", "install", bad.to_str().unwrap()]);
    assert!(err.contains("app.toml:2: field `version`"), "{err}");
    let text = c.ok(&["app", "status"]);
    assert!(text.contains("no application reported"), "{text}");
    for name in &c.names {
        assert!(!c.root(name).join("apps").exists(), "{name} got something");
    }
}

/// Packages signed by another key, or tampered with, are refused by the peer itself.
/// Two processes in its group; a stop command of its own.
fn foreign_and_tampered_packages_are_refused(c: &Cluster) -> PathBuf {
    let sleeper = c.tmp.path().join("sleeper");
    write_app(
        &sleeper,
        concat!(
            "name = \"sleeper\"\nversion = \"1.0.0\"\n",
            "start = \"sleep 100000 & exec sleep 100001\"\n",
            "stop = \"echo stop-ran >> ../stop.log; kill -TERM -$SMON_APP_PGID\"\n",
        ),
    );
    let other = Cluster::new(1, "1s");
    let foreign = build_package(&other, &sleeper);
    let refusal = push_app_directly(c, &foreign);
    assert!(refusal.contains("does not verify"), "{refusal}");
    let mut tampered = build_package(c, &sleeper);
    let at = tampered.len() - 2;
    tampered[at] ^= 0x20;
    let refusal = push_app_directly(c, &tampered);
    assert!(refusal.contains("package refused"), "{refusal}");
    drop(other);
    for name in &c.names {
        assert!(
            !c.root(name).join("apps/sleeper").exists(),
            "{name} installed a refused package"
        );
    }

    sleeper
}

/// A good one spreads; a per-machine setting changes that machine only.
fn a_good_one_spreads_and_one_machine_can_differ(c: &Cluster, sleeper: &Path) {
    c.ok(&["app", "install", sleeper.to_str().unwrap()]);
    wait_status(c, LONG, "sleeper running on 5", |s| {
        all_in(s, "sleeper", "1.0.0", "running", 5)
    });
    c.ok(&[
        "app",
        "set",
        "sleeper",
        "offline",
        "--machine",
        "local:m002",
    ]);
    wait_status(c, LONG, "sleeper stopped on m002 only", |s| {
        rows(s, "sleeper").iter().all(|r| {
            let m002 = r["machine"] == "local:m002";
            r["state"] == if m002 { "stopped" } else { "running" }
        })
    });
    // The whole group is gone, through the application's own stop command.
    assert!(app_procs(c, "m002", "sleeper").is_empty());
    let stop_log = std::fs::read_to_string(c.root("m002").join("apps/sleeper/stop.log")).unwrap();
    assert_eq!(stop_log, "stop-ran\n");
    assert_eq!(app_procs(c, "m001", "sleeper").len(), 2);
}

/// A peer restart adopts the recorded group and kills a stray one (an orphan left by a
/// crash between a start and its record): one group runs, the same as before.
fn a_restarted_peer_adopts_the_group_and_kills_a_stray(c: &Cluster) {
    let before = app_procs(c, "m003", "sleeper");
    assert_eq!(before.len(), 2, "{before:?}");
    let old_peer = c.kill9("m003");
    let version_dir = c.root("m003").join("apps/sleeper/1.0.0");
    let mut stray = {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("sleep")
            .arg("100002")
            .current_dir(&version_dir)
            .env("SMON_APP_DIR", &version_dir)
            .process_group(0)
            .spawn()
            .unwrap()
    };
    harness::wait_for(LONG, "m003's peer restarted", || {
        c.pid("m003").is_some_and(|p| p != old_peer)
    });
    let reported = local_app_status(c, "m003");
    assert!(
        reported
            .iter()
            .any(|s| s.name == "sleeper" && s.state == smon_proto::AppState::Running),
        "{reported:?}"
    );
    stray.wait().unwrap();
    let mut after = app_procs(c, "m003", "sleeper");
    let mut before = before;
    after.sort();
    before.sort();
    assert_eq!(after, before, "the group changed across the peer restart");
    let log = std::fs::read_to_string(c.machine("m003", |f| f.log())).unwrap();
    assert!(
        log.contains("killing processes left from another start"),
        "{log}"
    );
    let err = c.fails(&["app", "set", "nosuch", "online"]);
    assert!(err.contains("not installed"), "{err}");
    let err = c.fails(&["app", "set", "sleeper", "sideways"]);
    assert!(err.contains("online, offline or ignore"), "{err}");
}

/// An application that exits at once: backoff, then failed, visible in status and reports.
fn a_crash_loop_ends_failed(c: &Cluster) {
    let listener = Listener::start();
    let crash = c.tmp.path().join("crash");
    write_app(
        &crash,
        &format!(
            "name = \"crash\"\nversion = \"1.0.0\"\nstart = \"echo crashing; exit 3\"\nreport = \"127.0.0.1:{}\"\n\n[backoff]\ninitial = \"300ms\"\nmax = \"1s\"\nfail_after = 4\n",
            listener.port
        ),
    );
    c.ok(&["app", "install", crash.to_str().unwrap()]);
    let status = wait_status(c, LONG, "crash failed on all 5", |s| {
        all_in(s, "crash", "1.0.0", "failed", 5)
    });
    for r in rows(&status, "crash") {
        assert_eq!(r["restarts"], 3, "{r}");
    }
    let text = c.ok(&["app", "status", "crash"]);
    assert!(text.contains("crash: on 5/5 machines; failed ×5"), "{text}");
    listener.wait("backoff then failed, from every machine", |lines| {
        c.names.iter().all(|n| {
            let states: Vec<_> = lines
                .iter()
                .filter(|l| l["machine"] == format!("local:{n}"))
                .map(|l| l["state"].as_str().unwrap_or("").to_string())
                .collect();
            let backoff = states.iter().position(|s| s == "backoff");
            let failed = states.iter().position(|s| s == "failed");
            matches!((backoff, failed), (Some(b), Some(f)) if b < f)
        })
    });
    for name in &c.names {
        assert!(app_procs(c, name, "crash").is_empty());
        let log = std::fs::read_to_string(c.root(name).join("apps/crash/app.log")).unwrap();
        assert_eq!(log.matches("crashing").count(), 4, "{name}: {log}");
    }
}

/// A status command: running only once it passes; three failures in a row count as a
/// death (the group is stopped and started again).
fn a_failing_status_command_restarts_it(c: &Cluster) {
    let health = c.tmp.path().join("health");
    write_app(
        &health,
        concat!(
            "name = \"health\"\nversion = \"1.0.0\"\n",
            "start = \"touch healthy; exec sleep 100003\"\n",
            "status = \"test -e healthy\"\nstatus_interval = \"200ms\"\n",
        ),
    );
    c.ok(&["app", "install", health.to_str().unwrap()]);
    wait_status(c, LONG, "health running on 5", |s| {
        all_in(s, "health", "1.0.0", "running", 5)
    });
    let (sick, _) = one_proc(c, "m004", "health");
    std::fs::remove_file(c.root("m004").join("apps/health/1.0.0/healthy")).unwrap();
    wait_status(c, LONG, "health restarted on m004", |s| {
        row(s, "health", "m004").is_some_and(|r| r["state"] == "running" && r["restarts"] == 1)
    });
    let (cured, _) = one_proc(c, "m004", "health");
    assert_ne!(sick, cured);
    assert!(!harness::is_alive(sick));
    c.ok(&["app", "set", "health", "offline"]);
}

/// Issue 15, kind 1, in the supervisor: a stopped application (`kill -STOP`: its processes
/// exist but act on nothing) set offline gets a SIGCONT with its SIGTERM, so it exits through
/// its own handler within its grace instead of being killed after it.
fn a_stopped_app_is_continued_to_stop_by_its_handler(c: &Cluster) {
    let dir = c.tmp.path().join("frozen");
    write_app(
        &dir,
        concat!(
            "name = \"frozen\"\nversion = \"1.0.0\"\n",
            "start = \"trap 'echo bye > bye; exit 0' TERM; while :; do sleep 0.1; done\"\n",
        ),
    );
    c.ok(&["app", "install", dir.to_str().unwrap()]);
    wait_status(c, LONG, "frozen running on 5", |s| {
        all_in(s, "frozen", "1.0.0", "running", 5)
    });
    // The application's own processes (`app_procs` leaves out the peer's runner).
    harness::wait_for(LONG, "frozen's processes on m002", || {
        !app_procs(c, "m002", "frozen").is_empty()
    });
    for (pid, _) in app_procs(c, "m002", "frozen") {
        let _ = std::process::Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status();
    }
    c.ok(&["app", "set", "frozen", "offline"]);
    wait_status(c, LONG, "frozen stopped on 5", |s| {
        all_in(s, "frozen", "1.0.0", "stopped", 5)
    });
    let bye = c.root("m002").join("apps/frozen/1.0.0/bye");
    assert!(
        bye.exists(),
        "the stopped app was killed, not stopped by its handler"
    );
    assert!(app_procs(c, "m002", "frozen").is_empty());
}

/// A machine removed from the membership: its peer exits and stops its applications.
fn a_removed_machine_stops_its_apps(c: &Cluster) {
    c.ok(&["app", "set", "sleeper", "online"]);
    wait_status(c, LONG, "sleeper running on 5", |s| {
        all_in(s, "sleeper", "1.0.0", "running", 5)
    });
    let four = c.tmp.path().join("four");
    let list: String = c.names[..4]
        .iter()
        .map(|n| format!("local:{n}\n"))
        .collect();
    std::fs::write(&four, list).unwrap();
    c.ok(&["membership", "set", four.to_str().unwrap()]);
    harness::wait_for(
        LONG,
        "m005's peer to exit and its application to stop",
        || c.pid("m005").is_none() && app_procs(c, "m005", "sleeper").is_empty(),
    );
    let log = std::fs::read_to_string(c.machine("m005", |f| f.log())).unwrap();
    assert!(log.contains("sleeper: stopped process group"), "{log}");

    c.ok(&["app", "set", "sleeper", "offline"]);
    wait_status(c, LONG, "sleeper stopped on 4", |s| {
        all_in(s, "sleeper", "1.0.0", "stopped", 4)
    });
}

/// A signed package of an application directory, built with `c`'s release key.
fn build_package(c: &Cluster, dir: &Path) -> Vec<u8> {
    let key_text = std::fs::read_to_string(c.files().release_key()).unwrap();
    let key = smon_proto::ReleasePrivateKey::from_openssh(key_text).unwrap();
    let (spec, files) = smon_proto::app_package::read_app_dir(dir).unwrap();
    let mut manifest = smon_proto::app_package::app_manifest(&spec, &files);
    smon_proto::release::sign_manifest(&mut manifest, &key).unwrap();
    smon_proto::app_package::encode_app_package(&manifest, &files)
}

/// Push an application package to the first peer over RPC, bypassing the console's checks;
/// the refusal.
fn push_app_directly(c: &Cluster, package: &[u8]) -> String {
    c.refusal(
        &c.names[0],
        smon_proto::ControlAction::PushApp {
            offset: 0,
            total: package.len() as u64,
            data: package.to_vec(),
        },
    )
}

/// Field faults, issue 15, kinds 3 and 2: an application writing about 2 MB/s keeps its log
/// within the bound of its app.toml while a status command runs, after `rm app.log` and
/// across a peer restart; an application that double-forks into a session of its own runs
/// once, and `offline`, the death of its runner, a peer restart and `shutdown` each leave
/// exactly what they should.
#[test]
fn a_chatty_app_has_a_bounded_log_and_a_daemonizing_app_runs_once() {
    if !harness::have("python3", "python3") {
        return;
    }
    let c = Cluster::deployed(2);
    a_chatty_app_s_log_stays_within_its_bound(&c);
    a_daemonizing_app_runs_once_and_stops_whole(&c);
    // The daemon, in its own session, is stopped with the rest, also where the peer is
    // frozen (it never answers the stop request, and is killed).
    shutdown_stops_the_apps_of_a_frozen_peer_too(&c, "daemon", 2);
}

/// `shutdown` with one peer frozen (`kill -STOP`): it is killed, and its applications are
/// ended all the same (issue 15, kind 11: one policy, whether the peer answers or not).
fn shutdown_stops_the_apps_of_a_frozen_peer_too(c: &Cluster, app: &str, machines: usize) {
    c.ok(&["app", "set", app, "online"]);
    wait_status(c, LONG, &format!("{app} running on {machines}"), |s| {
        all_in(s, app, "1.0.0", "running", machines)
    });
    let frozen = &c.names[0];
    let frozen_apps = app_procs(c, frozen, app);
    assert!(!frozen_apps.is_empty(), "no {app} process on {frozen}");
    let pid = c.pid(frozen).unwrap();
    // SAFETY: sending a signal to a pid is memory-safe.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let out = c.ok(&["shutdown"]);
    assert!(
        out.contains(&format!(
            "local:{frozen}: its peer (pid {pid}) runs but did not answer; killed it; \
             its applications: ended"
        )),
        "{out}"
    );
    let left = c.processes();
    assert!(
        left.is_empty(),
        "left running: {}",
        harness::describe(&left)
    );
}

/// `app status --json` now.
fn app_status_now(c: &Cluster) -> Value {
    wait_status(c, LONG, "an answer to app status", |_| true)
}

/// The parent of `pid` (0 if it is gone).
fn parent(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The sizes of `app.log`, `.1`, `.2`, `.3` of `app` on `machine` (0: absent).
fn log_sizes(c: &Cluster, machine: &str, app: &str) -> Vec<u64> {
    let log = c.machine(machine, |f| f.app_log(app));
    let bound = smon_proto::LogBound {
        max_bytes: 0,
        backups: 3,
    };
    smon_proto::log_file::log_files(&log, bound)
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .collect()
}

/// Processes of the cluster with a descriptor on a deleted log (one nobody can see).
fn deleted_files_held(c: &Cluster) -> Vec<String> {
    let mut held = Vec::new();
    for pid in c.processes() {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(target) = std::fs::read_link(fd.path())
                && target.to_string_lossy().ends_with("(deleted)")
                && target.to_string_lossy().contains(".log")
            {
                held.push(format!("{pid}: {}", target.display()));
            }
        }
    }
    held
}

/// Sample the log of `chatty` on m001 all through `how_long`: every file within 256 KiB, no
/// fourth. The last sizes seen.
fn chatty_log_stays_bounded(c: &Cluster, how_long: Duration) -> Vec<u64> {
    let mut last = Vec::new();
    harness::holds_for(
        how_long,
        "chatty's log files within 256 KiB, no fourth",
        || {
            last = log_sizes(c, "m001", "chatty");
            last[..3].iter().all(|&n| n <= 256 << 10) && last[3] == 0
        },
    );
    last
}

fn a_chatty_app_s_log_stays_within_its_bound(c: &Cluster) {
    let chatty = c.tmp.path().join("chatty");
    write_app(
        &chatty,
        concat!(
            "name = \"chatty\"\nversion = \"1.0.0\"\n",
            // About 2 MB/s: 200 kB every 0.1 s (chatty.py).
            "start = \"exec python3 chatty.py\"\n",
            // The check that used to rename the live file.
            "status = \"echo checked\"\nstatus_interval = \"300ms\"\n",
            "[log]\nmax_size = \"256KiB\"\nbackups = 2\n",
        ),
    );
    std::fs::write(
        chatty.join("chatty.py"),
        "import sys, time\nline = 'x' * 199999 + '\\n'\nwhile True:\n    sys.stdout.write(line)\n    sys.stdout.flush()\n    time.sleep(0.1)\n",
    )
    .unwrap();
    c.ok(&["app", "install", chatty.to_str().unwrap()]);
    wait_status(c, LONG, "chatty running on 2", |s| {
        all_in(s, "chatty", "1.0.0", "running", 2)
    });
    let (app, _) = one_proc(c, "m001", "chatty");
    let sizes = chatty_log_stays_bounded(c, Duration::from_secs(5));
    assert!(
        sizes[2] > 0,
        "never rotated twice in 5 s at 2 MB/s: {sizes:?}"
    );
    assert!(
        harness::is_alive(app),
        "the status checks broke the application"
    );
    let log = std::fs::read_to_string(c.machine("m001", |f| f.app_log("chatty"))).unwrap();
    assert!(
        log.contains("xxxx"),
        "the application's output is not in app.log"
    );
    let status = app_status_now(c);
    assert!(
        rows(&status, "chatty").iter().all(|r| r["restarts"] == 0),
        "{}",
        summary(&status)
    );

    // `rm app.log`: a new one is written, nobody keeps writing the removed one.
    std::fs::remove_file(c.machine("m001", |f| f.app_log("chatty"))).unwrap();
    harness::wait_for(LONG, "a new app.log and no deleted file held", || {
        log_sizes(c, "m001", "chatty")[0] > 0 && deleted_files_held(c).is_empty()
    });
    chatty_log_stays_bounded(c, Duration::from_secs(1));

    // A peer restart: the runner owns the pipe, so the application and its log go on.
    let runner = parent(app);
    assert!(is_runner(runner), "{}", harness::describe(&[runner]));
    let old_peer = c.kill9("m001");
    harness::wait_for(LONG, "m001's peer restarted", || {
        c.pid("m001").is_some_and(|p| p != old_peer)
    });
    let log = c.machine("m001", |f| f.app_log("chatty"));
    std::fs::remove_file(&log).unwrap();
    harness::wait_for(LONG, "app.log written again after the peer restart", || {
        std::fs::metadata(&log).is_ok_and(|m| m.len() > 0)
    });
    chatty_log_stays_bounded(c, Duration::from_secs(2));
    assert!(
        harness::is_alive(runner) && harness::is_alive(app),
        "the application was restarted"
    );
    assert_eq!(one_proc(c, "m001", "chatty").0, app);
    c.ok(&["app", "set", "chatty", "offline"]);
    wait_status(c, LONG, "chatty stopped on 2", |s| {
        all_in(s, "chatty", "1.0.0", "stopped", 2)
    });
    assert!(!harness::is_alive(runner));
    for name in &c.names {
        assert!(app_procs(c, name, "chatty").is_empty(), "{name}");
    }
}

/// The processes of `app` on `machine` that are not in its runner's session: what moved away.
fn moved_away(c: &Cluster, machine: &str, app: &str) -> Vec<i32> {
    let session = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(4)?
                    .parse::<i32>()
                    .ok()
            })
    };
    app_procs(c, machine, app)
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|&pid| session(pid) != Some(parent(pid)))
        .collect()
}

fn a_daemonizing_app_runs_once_and_stops_whole(c: &Cluster) {
    let daemon = c.tmp.path().join("daemon");
    write_app(
        &daemon,
        concat!(
            "name = \"daemon\"\nversion = \"1.0.0\"\n",
            // A classic daemon: the start command forks, the child calls setsid and leaves
            // `sleep 3600` behind in a session of its own; the start command exits at once.
            "start = \"setsid sh -c 'sleep 3600 & exit 0' </dev/null >/dev/null 2>&1 & exit 0\"\n",
        ),
    );
    c.ok(&["app", "install", daemon.to_str().unwrap()]);
    wait_status(c, LONG, "daemon running on 2", |s| {
        all_in(s, "daemon", "1.0.0", "running", 2)
    });
    // Long enough for the crash-loop policy to have started copies (1 s backoff): one
    // copy per machine all the while.
    harness::holds_for(Duration::from_secs(5), "one daemon per machine", || {
        c.names.iter().all(|m| app_procs(c, m, "daemon").len() == 1)
    });
    for name in &c.names {
        let (pid, _) = one_proc(c, name, "daemon");
        assert_eq!(
            moved_away(c, name, "daemon"),
            [pid],
            "{name}: the daemon left its session"
        );
    }
    let status = app_status_now(c);
    assert!(
        all_in(&status, "daemon", "1.0.0", "running", 2)
            && rows(&status, "daemon").iter().all(|r| r["restarts"] == 0),
        "{}",
        summary(&status)
    );

    // offline stops it, in whatever session it is.
    c.ok(&["app", "set", "daemon", "offline"]);
    wait_status(c, LONG, "daemon stopped on 2", |s| {
        all_in(s, "daemon", "1.0.0", "stopped", 2)
    });
    for name in &c.names {
        assert!(
            app_procs(c, name, "daemon").is_empty(),
            "{name}: the daemon still runs"
        );
    }
    c.ok(&["app", "set", "daemon", "online"]);
    wait_status(c, LONG, "daemon running again on 2", |s| {
        all_in(s, "daemon", "1.0.0", "running", 2)
    });

    // Its runner killed: the daemon is orphaned (to init), found by its marker, and ended
    // before the application starts again: one copy.
    let (orphan, _) = one_proc(c, "m002", "daemon");
    let runner = parent(orphan);
    assert!(is_runner(runner), "{}", harness::describe(&[runner]));
    harness::kill(runner);
    harness::wait_for(LONG, "a new daemon on m002, the orphan gone", || {
        !harness::is_alive(orphan)
            && app_procs(c, "m002", "daemon").len() == 1
            && row(&app_status_now(c), "daemon", "m002").is_some_and(|r| r["state"] == "running")
    });

    // A peer restart adopts the running one.
    let (kept, _) = one_proc(c, "m001", "daemon");
    let old_peer = c.kill9("m001");
    harness::wait_for(LONG, "m001's peer restarted", || {
        c.pid("m001").is_some_and(|p| p != old_peer)
    });
    wait_status(c, LONG, "daemon running on 2 after the restart", |s| {
        all_in(s, "daemon", "1.0.0", "running", 2)
    });
    harness::holds_for(
        Duration::from_secs(2),
        "the adopted daemon alone on m001",
        || app_procs(c, "m001", "daemon") == [(kept, "1.0.0".to_owned())],
    );
}
