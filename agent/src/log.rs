//! The agent's own log, bounded: `smon-agent serve --log FILE` sends its standard output and
//! standard error (tracing, the `listening on` lines, a fatal error) into a pipe that it owns,
//! and a thread copies the pipe into FILE through [`smon_proto::RotatingLog`], rotated at
//! [`smon_proto::files::AGENT_LOG_BOUND`] (issue 15 kind 3: every log on a machine has a
//! bound, and nobody writes to a file after it was renamed).

use std::{io, os::fd::AsRawFd, path::Path, thread::JoinHandle};

use smon_proto::LogBound;

/// Output redirected into the log; [`Redirected::finish`] flushes it at exit.
pub struct Redirected {
    copier: JoinHandle<()>,
}

/// Send this process's stdout and stderr to `log`, bounded by `bound`. Errors: the pipe
/// cannot be made or put in place (nothing was redirected then).
pub fn redirect(log: &Path, bound: LogBound) -> io::Result<Redirected> {
    // The file is opened once here so that a path that cannot be written to is an error now.
    drop(smon_proto::RotatingLog::open(log, bound)?);
    let (reader, writer) = io::pipe()?;
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: dup2 of a pipe end we own onto the standard descriptors.
        if unsafe { libc::dup2(writer.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    drop(writer);
    let log = log.to_owned();
    let copier = std::thread::spawn(move || smon_proto::log_file::copy_to_log(reader, &log, bound));
    Ok(Redirected { copier })
}

impl Redirected {
    /// Close the pipe's last writers (stdout, stderr) and wait until everything written to
    /// them is in the log: what a process exiting with an error says is kept.
    pub fn finish(self) {
        use std::io::Write;
        let _ = io::stdout().flush();
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null");
        if let Ok(null) = null {
            for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
                // SAFETY: dup2 of /dev/null, which we hold open, onto the standard descriptors.
                unsafe { libc::dup2(null.as_raw_fd(), fd) };
            }
            let _ = self.copier.join();
        }
    }
}
