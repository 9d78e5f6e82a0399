//! The console on a real terminal (tmux) against a real local cluster: the TUI watches the
//! deployment complete, then disables self-management through the keyboard; `agent start`
//! asks for an encrypted key's passphrase.

mod harness;

use std::{process::Command, time::Duration};

use harness::{Cluster, wait_until};

struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    fn start(command: &str) -> Self {
        // Tests run in parallel threads of one process: a socket of their own each.
        let socket = format!("smon-test-{}-{}", std::process::id(), rand::random::<u32>());
        let session = "tui".to_string();
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                "120",
                "-y",
                "40",
                command,
            ])
            .status()
            .expect("tmux runs");
        assert!(status.success());
        Self { socket, session }
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", &self.session])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn screen(&self) -> String {
        self.capture(&[])
    }

    /// The screen with its attributes as escape sequences (`capture-pane -e`).
    fn screen_with_attributes(&self) -> String {
        self.capture(&["-e"])
    }

    /// `tmux capture-pane -p` of the session, with `extra` options.
    fn capture(&self, extra: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p"])
            .args(extra)
            .args(["-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str, timeout: Duration, cond: impl Fn(&str) -> bool) {
        let ok = wait_until(timeout, || cond(&self.screen()));
        assert!(
            ok,
            "timed out waiting for {what}; screen:\n{}",
            self.screen()
        );
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// A cluster of `n` local machines, deployed, and its TUI in tmux (started with `prefix`,
/// e.g. an `env` of its own, and `tui`'s options `suffix`) once it shows all `n` deployed.
fn tui_on_deployed(n: usize, prefix: &str, suffix: &str) -> (Cluster, Tmux) {
    let c = Cluster::new(n, "1s");
    c.ok(&["deploy"]);
    let command = format!(
        "{prefix}{} -C {} tui{suffix}",
        harness::console_bin().display(),
        c.dir.display()
    );
    let tmux = Tmux::start(&command);
    tmux.wait_for(&format!("all {n} deployed"), Duration::from_secs(90), |s| {
        s.contains(&format!("{n}/{n} deployed"))
    });
    (c, tmux)
}

#[test]
fn watch_the_deployment_then_disable_from_the_keyboard() {
    if !harness::have("tmux", "tmux") {
        return;
    }
    let (c, tmux) = tui_on_deployed(12, "", "");
    assert!(tmux.screen().contains("deployment progress"));

    // Kill the peer the TUI watches through: it fails over to another, never exits.
    let screen = tmux.screen();
    let watched = screen
        .split("live via local:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the header names the peer")
        .to_string();
    let old_pid = c.kill9(&watched);
    tmux.wait_for(
        "a fail-over to another peer",
        Duration::from_secs(60),
        |s| {
            s.contains("live via local:") && !s.contains(&format!("live via local:{watched} "))
                || s.contains("STALE")
        },
    );
    tmux.wait_for("a live view again", Duration::from_secs(60), |s| {
        s.contains("live via local:") && s.contains("12/12 deployed")
    });
    harness::wait_for(
        Duration::from_secs(60),
        "the killed peer to be restarted",
        || c.pid(&watched).is_some_and(|p| p != old_pid),
    );

    tmux.keys(&["d"]);
    tmux.wait_for("the confirmation", Duration::from_secs(10), |s| {
        s.contains("runs: smon-console disable")
    });
    tmux.keys(&["y"]);
    tmux.wait_for("every peer disabled", Duration::from_secs(60), |s| {
        s.contains("running 0  disabled 12")
    });
    c.ok(&["wait", "--disabled", "--timeout", "30s"]);

    tmux.keys(&["q"]);
    let tui_gone = wait_until(Duration::from_secs(10), || {
        harness::processes_mentioning(&c.dir).iter().all(|pid| {
            !std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains("tui"))
        })
    });
    assert!(tui_gone, "the TUI did not quit");
    drop(tmux);
    c.ok(&["shutdown"]);
}

#[test]
fn agent_start_asks_for_an_encrypted_keys_passphrase_on_the_terminal() {
    const PASSPHRASE: &str = "correct horse battery";
    if !harness::have("tmux", "tmux") || !harness::have("ssh-keygen", "openssh-client") {
        return;
    }
    let c = Cluster::new_with(3, "1s", |tmp| {
        let key = tmp.join("id_ed25519");
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", PASSPHRASE, "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(status.success());
        // The agent's (encrypted) key is the release key: init reads its public half only.
        vec!["--key".into(), key.to_str().unwrap().into()]
    });
    assert!(!c.files().release_key().exists());
    // An agent with another key could not sign this cluster's releases: refused up front.
    let other = c.tmp.path().join("other");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(status.success());
    let err = c.fails(&["agent", "start", "--key", other.to_str().unwrap()]);
    assert!(err.contains("not this cluster's release key"), "{err}");
    assert!(!c.files().agent_pid().exists());
    // The package is not signed until the agent signs it: deploy says so.
    let err = c.fails(&["deploy"]);
    assert!(err.contains("agent start"), "{err}");

    let start = format!(
        "sh -c '{} -C {} agent start; echo exit=$?; read x'",
        harness::console_bin().display(),
        c.dir.display()
    );
    // A wrong passphrase: refused on the spot, no agent left running.
    let tmux = Tmux::start(&start);
    tmux.wait_for("the prompt", Duration::from_secs(20), |s| {
        s.contains("Passphrase for")
    });
    tmux.keys(&["not it", "Enter"]);
    tmux.wait_for("the refusal", Duration::from_secs(20), |s| {
        s.contains("wrong passphrase") && s.contains("exit=1")
    });
    assert!(
        !tmux.screen().contains("not it"),
        "the passphrase was echoed"
    );
    assert!(!c.files().agent_pid().exists());
    drop(tmux);

    let tmux = Tmux::start(&start);
    tmux.wait_for("the prompt", Duration::from_secs(20), |s| {
        s.contains("Passphrase for")
    });
    tmux.keys(&[PASSPHRASE, "Enter"]);
    tmux.wait_for("the agent", Duration::from_secs(20), |s| {
        s.contains("agent listening on") && s.contains("exit=0")
    });
    assert!(
        !tmux.screen().contains(PASSPHRASE),
        "the passphrase was echoed"
    );
    drop(tmux);
    let pid: i32 = std::fs::read_to_string(c.files().agent_pid())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Handed over through a pipe: neither its arguments nor its environment hold it.
    for part in ["cmdline", "environ"] {
        let text = std::fs::read(format!("/proc/{pid}/{part}")).unwrap();
        assert!(
            !String::from_utf8_lossy(&text).contains(PASSPHRASE),
            "the passphrase is in the agent's {part}"
        );
    }
    assert!(c.ok(&["agent", "status"]).contains("running"));

    // The agent signs the package (its key is the release key): the cluster deploys.
    c.ok(&["deploy"]);
    // A release for an upgrade is signed by the agent too.
    let release = c.tmp.path().join("peer-9.9.9");
    let out = c.ok(&[
        "package",
        "--version",
        "9.9.9",
        "--out",
        release.to_str().unwrap(),
    ]);
    assert!(out.contains("signed"), "{out}");
    c.ok(&["wait", "--deployed", "all", "--timeout", "90s"]);
    let audit = Command::new(harness::console_bin().with_file_name("smon-agent"))
        .args(["audit", "-C"])
        .arg(&c.dir)
        .output()
        .unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit.contains("sign_package") && audit.contains("signed"),
        "{audit}"
    );
    c.ok(&["shutdown"]);
    c.ok(&["agent", "stop"]);
}

/// Issue 15, kind 9, in a real terminal: under NO_COLOR the TUI writes no colour, and the
/// selected tab and the selected row stay in reverse video (crossterm's empty colour sequence,
/// `ESC[;m`, used to reset them).
#[test]
fn no_color_keeps_the_selection_visible_in_a_real_terminal() {
    if !harness::have("tmux", "tmux") {
        return;
    }
    let (_c, tmux) = tui_on_deployed(3, "env NO_COLOR=1 ", "");
    tmux.keys(&["2"]);
    tmux.wait_for("the machines tab", Duration::from_secs(30), |s| {
        s.contains("MACHINE")
    });
    let screen = tmux.screen_with_attributes();
    let colour =
        regex::Regex::new(r"\x1b\[(?:[0-9]+;)*(?:3[0-8]|4[0-8]|9[0-7]|10[0-7])[;m]").unwrap();
    assert!(
        !colour.is_match(&screen),
        "a colour was written:\n{screen:?}"
    );
    let reverse = regex::Regex::new(r"\x1b\[(?:[0-9]+;)*7(?:;[0-9]+)*m").unwrap();
    let reset = regex::Regex::new(r"\x1b\[(?:0|27)?m").unwrap();
    let tabs = screen.lines().find(|l| l.contains("2 Machines")).unwrap();
    let before_tab = &tabs[..tabs.find("2 Machines").unwrap()];
    let last_reverse = reverse.find_iter(before_tab).last().map(|m| m.end());
    assert!(
        last_reverse.is_some_and(|at| !reset.is_match(&before_tab[at..])),
        "the selected tab is not reversed: {tabs:?}"
    );
    let row = screen
        .lines()
        .find(|l| l.contains("local:m001") && l.contains("running"))
        .expect("the selected row");
    let start = reverse.find(row).expect("the selected row is not reversed");
    let through = &row[start.end()..row.find("running").unwrap()];
    assert!(!reset.is_match(through), "the reverse stops early: {row:?}");
    tmux.keys(&["q"]);
}

/// Issue 16: `l` on a machine opens its peer's log (read through the overlay, read-only
/// credentials suffice), which follows what is appended, is searched with `/` and left with
/// Esc, in a real terminal.
#[test]
fn the_log_pane_follows_a_machines_log_and_closes() {
    if !harness::have("tmux", "tmux") {
        return;
    }
    let (c, tmux) = tui_on_deployed(3, "", " --readonly");
    tmux.keys(&["2"]);
    tmux.wait_for("the machines tab", Duration::from_secs(30), |s| {
        s.contains("MACHINE")
    });
    tmux.keys(&["j", "l"]);
    tmux.wait_for("m002's peer log", Duration::from_secs(30), |s| {
        s.contains("the peer log of local:m002 via local:") && s.contains(" INFO ")
    });
    let marker = format!("appended while the pane is open {}", std::process::id());
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(c.machine("m002", |f| f.log()))
        .unwrap();
    std::io::Write::write_all(&mut log, format!("{marker}\n").as_bytes()).unwrap();
    tmux.wait_for("the appended line", Duration::from_secs(30), |s| {
        s.contains(&marker)
    });
    tmux.keys(&["/", "while the pane", "Enter"]);
    tmux.wait_for("the search", Duration::from_secs(10), |s| {
        s.contains("/while the pane/ 1 matches")
    });
    tmux.keys(&["Escape"]);
    tmux.wait_for("the table again", Duration::from_secs(10), |s| {
        s.contains("MACHINE") && !s.contains("the peer log of")
    });
    tmux.keys(&["q"]);
}
