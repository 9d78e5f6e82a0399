//! Starting a process that outlives whoever started it: the peer started by an installer over
//! a login session, the console's authentication agent, an application's process group.

use std::{os::unix::process::CommandExt, process::Command};

/// Make `command` start as the leader of a new session (`setsid`), and so of a new process
/// group with no controlling terminal: it survives the end of its starter, of the starter's
/// login session and terminal; signals to the starter's group do not reach it, and signalling
/// its own group (its pid, negated) reaches every process it starts.
pub fn new_session(command: &mut Command) -> &mut Command {
    // SAFETY: the closure runs in the child between fork and exec and only calls setsid(2),
    // which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_child_leads_its_own_session() {
        // Field 6 of /proc/PID/stat is the session id (field 2, the command, is `(sh)`).
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg("echo $$ $(cut -d' ' -f6 /proc/$$/stat)");
        let out = super::new_session(&mut command).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let (pid, sid) = text.trim().split_once(' ').unwrap();
        assert_eq!(pid, sid, "the child's session is its own");
    }
}
