//! The real TUI binary in tmux against a real local cluster: watch the deployment complete,
//! then disable self-management through the keyboard and see every peer disabled.

mod harness;

use std::{process::Command, time::Duration};

use harness::{Cluster, wait_until};

struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    fn start(command: &str) -> Self {
        let socket = format!("smon-test-{}", std::process::id());
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
            .expect("tmux runs (apt-get install tmux)");
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
        let out = Command::new("tmux")
            .args([
                "-L",
                &self.socket,
                "capture-pane",
                "-p",
                "-t",
                &self.session,
            ])
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

#[test]
fn watch_the_deployment_then_disable_from_the_keyboard() {
    let c = Cluster::new(12, "1s");
    c.ok(&["deploy"]);
    let command = format!(
        "{} -C {} tui",
        harness::console_bin().display(),
        c.dir.display()
    );
    let tmux = Tmux::start(&command);
    tmux.wait_for("all 12 deployed", Duration::from_secs(90), |s| {
        s.contains("12/12 deployed")
    });
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
