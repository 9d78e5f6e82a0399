//! The console under a low descriptor limit (issue 15, kind 4): every peer is asked, a bounded
//! number at a time, or the peers it could not ask are named; nothing claims success over a
//! denominator that shrank; and a limit too low to start at all gives one clear line.

mod harness;

use std::{os::unix::process::CommandExt, process::Command};

use harness::{Cluster, console_bin};

/// Run `smon-console -C DIR ARGS` with soft and hard `RLIMIT_NOFILE` at `limit`, as
/// `ulimit -n LIMIT` in the shell does: (exit code, stdout, stderr).
fn limited(c: &Cluster, limit: u64, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(console_bin());
    command.arg("-C").arg(&c.dir).args(args);
    // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = command.output().expect("smon-console runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok_limited(c: &Cluster, limit: u64, args: &[&str]) -> String {
    let (code, out, err) = limited(c, limit, args);
    assert_eq!(
        code, 0,
        "ulimit -n {limit}: smon-console {args:?}:\n{out}{err}"
    );
    out
}

#[test]
fn a_low_descriptor_limit_asks_every_peer_or_says_which_it_could_not() {
    let c = Cluster::deployed(12);

    // The input: `ulimit -n 12`, disable, then wait --disabled. Every one of the 12
    // peers is asked, not the 2 the limit left room for at once.
    ok_limited(&c, 12, &["disable"]);
    let out = ok_limited(&c, 12, &["wait", "--disabled", "--timeout", "90s"]);
    assert!(out.contains("12 of 12 running peers disabled"), "{out}");
    ok_limited(&c, 12, &["enable"]);
    let out = ok_limited(&c, 12, &["wait", "--enabled", "--timeout", "90s"]);
    assert!(out.contains("12 of 12 running peers enabled"), "{out}");

    // Too low to even start: one line naming the cause and the limit, no panic. (Below 6 the
    // dynamic loader itself cannot open the C libraries.)
    for limit in [6, 8] {
        let (code, out, err) = limited(&c, limit, &["status"]);
        assert_eq!(
            code, 1,
            "ulimit -n {limit}: status exited {code}:\n{out}{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line:\n{err}");
        let said = format!("ulimit -n is {limit}");
        assert!(
            err.starts_with("smon-console: ") && err.contains(&said),
            "{err}"
        );
    }

    // The shutdown input, `ulimit -n 10` (it gave up after 60 s and claimed `0 peers
    // still answered`): every peer is stopped (none left for the Drop to kill).
    let out = ok_limited(&c, 10, &["shutdown"]);
    assert!(out.contains("all peers of"), "{out}");
    assert!(
        c.names.iter().all(|m| c.pid(m).is_none()),
        "a peer still runs after shutdown"
    );
    harness::wait_for(
        std::time::Duration::from_secs(30),
        "every process of the cluster to exit",
        || c.processes().is_empty(),
    );
}
