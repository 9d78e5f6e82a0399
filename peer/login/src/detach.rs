//! Starting a process that outlives whoever started it: the peer started by an installer over
//! a login session, the console's authentication agent, an application's process group.

use std::{os::unix::process::CommandExt, process::Command};

/// Make `command` start as the leader of a new session (`setsid`), and so of a new process
/// group with no controlling terminal: it survives the end of its starter, of the starter's
/// login session and terminal; signals to the starter's group do not reach it, and signalling
/// its own group (its pid, negated) reaches every process it starts.
///
/// It also inherits no descriptor but 0-2: whatever its starter left open without
/// close-on-exec (a lock, a pipe a test or an SSH session waits on) would otherwise stay held
/// for the process's whole life.
pub fn new_session(command: &mut Command) -> &mut Command {
    // SAFETY: the closure runs in the child between fork and exec and only calls setsid(2),
    // close_range(2), getrlimit(2) and fcntl(2), which are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            cloexec_from_3();
            Ok(())
        })
    }
}

/// Mark every descriptor from 3 up close-on-exec (not closed now: std reports a failed exec
/// through one of them).
fn cloexec_from_3() {
    // SAFETY: plain syscalls on the child's own descriptor table.
    unsafe {
        let flags = libc::CLOSE_RANGE_CLOEXEC as libc::c_long;
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, flags) == 0 {
            return;
        }
        // Kernels before 5.11: one fcntl per possible descriptor.
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let last = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur.min(1 << 20) as i32
        } else {
            1024
        };
        for fd in 3..last {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
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

    #[test]
    fn the_child_inherits_no_descriptor_its_starter_left_open() {
        use std::os::fd::AsRawFd;
        // A descriptor without close-on-exec, as `flock FILE cmd` or a shell redirection
        // leaves one.
        let file = tempfile::tempfile().unwrap();
        let fd = file.as_raw_fd();
        // SAFETY: clearing FD_CLOEXEC on a descriptor this test owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        let probe = format!("test -e /proc/self/fd/{fd} && echo open || echo closed");
        let plain = std::process::Command::new("sh")
            .args(["-c", &probe])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&plain.stdout).trim(), "open");
        let mut command = std::process::Command::new("sh");
        command.args(["-c", &probe]);
        let out = super::new_session(&mut command).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "closed");
    }

    #[test]
    fn a_missing_program_still_fails_to_spawn() {
        let mut command = std::process::Command::new("/nonexistent/smon-test-binary");
        assert!(super::new_session(&mut command).spawn().is_err());
    }
}
