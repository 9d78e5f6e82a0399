//! `smon-peer app-run`: the small process between the peer and one command of an
//! application (its start, restart, stop or status command). It
//!
//! - owns the command's output: stdout and stderr are a pipe it reads and writes to the
//!   application's log through a [`smon_proto::RotatingLog`], so the log has a bound and nobody renames
//!   a file another process still writes;
//! - is a child subreaper (`PR_SET_CHILD_SUBREAPER`, Linux 3.4): whatever the command leaves
//!   behind (a double fork, `setsid`, a daemon in a session of its own) becomes its child, not
//!   init's, so the application's processes are exactly this process's descendants, and it
//!   reaps them;
//! - lives as long as the application does: it exits when no descendant is left and the
//!   pipe is closed, with the command's own exit status. SIGTERM does not end it (the
//!   application's processes get theirs and it reports their end); SIGKILL does.
//!
//! It is not the peer: a peer that restarts or upgrades leaves it running, with the pipe
//! whole, and the next peer adopts it through `run.json` (its pid is the application's
//! process group). The peer starts it as a session leader with the application's
//! environment (`SMON_APP_DIR` included), so it is a member of the application like any other.

use std::{
    os::unix::process::ExitStatusExt,
    path::Path,
    process::{Command, ExitStatus, Stdio},
};

use smon_proto::{LogBound, log_file::copy_to_log};

/// The subcommand's name (`smon-peer app-run`).
pub const SUBCOMMAND: &str = "app-run";

/// Run `command` (`sh -c`), its output to `log` within `bound`; returns the exit code to end
/// with (the command's, or 128 + the signal that ended it).
pub fn app_run(log: &Path, bound: LogBound, command: &str) -> std::io::Result<i32> {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let (reader, writer) = std::io::pipe()?;
    let child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .spawn()?;
    // The Command (and with it our copy of the pipe's write end) is gone: the pipe closes
    // when the last process of the application closes it.
    ignore_sigterm();
    let log = log.to_owned();
    let copier = std::thread::spawn(move || copy_to_log(reader, &log, bound));
    let status = reap_all(child.id() as i32);
    let _ = copier.join();
    Ok(status.map_or(0, exit_code))
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// A handler that does nothing (not SIG_IGN, which the command would inherit through exec).
fn ignore_sigterm() {
    extern "C" fn nothing(_: libc::c_int) {}
    // SAFETY: installs an async-signal-safe handler that does nothing; SA_RESTART keeps the
    // blocking read and waitpid going.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = nothing as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
    }
}

/// Wait for every child (our own, and the orphans the subreaper adopts) until none is left;
/// the exit status of `first`.
fn reap_all(first: i32) -> Option<ExitStatus> {
    let mut first_status = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own children.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == first {
            first_status = Some(ExitStatus::from_raw(status));
        } else if pid < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return first_status; // ECHILD: nobody is left
            }
        }
    }
}
