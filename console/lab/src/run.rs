//! Running the host's tools (ip, tc, useradd, ssh-keygen, sshd) with errors that name the
//! command and carry its standard error.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use crate::error::{LabError, Result};

/// `cmd` as one line, for error messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run `cmd` (with `input` on its standard input, if any); its standard output, or an error
/// naming the command and carrying its standard error.
pub fn run_with(cmd: &mut Command, input: Option<&str>) -> Result<String> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let line = describe(cmd);
    let failed = |e: std::io::Error| LabError::Command {
        command: line.clone(),
        status: "not started".into(),
        stderr: e.to_string(),
    };
    let mut child = cmd.spawn().map_err(failed)?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(failed)?;
    }
    let out = child.wait_with_output().map_err(failed)?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', "; "),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run `cmd`; its standard output.
pub fn run(cmd: &mut Command) -> Result<String> {
    run_with(cmd, None)
}

/// Run `cmd`, ignoring a failure whose standard error contains one of `benign` (what is
/// already gone, when removing).
pub fn run_ignoring(cmd: &mut Command, benign: &[&str]) -> Result<()> {
    match run(cmd) {
        Err(LabError::Command { stderr, .. }) if benign.iter().any(|b| stderr.contains(b)) => {
            Ok(())
        }
        other => other.map(drop),
    }
}

/// Run the command `make()` builds, again while it fails because a shared file is locked
/// (useradd and userdel of parallel labs and tests take /etc/passwd's lock), for up to 30 s.
pub fn run_retrying_lock(mut make: impl FnMut() -> Command) -> Result<String> {
    let mut delay = Duration::from_millis(20);
    let mut waited = Duration::ZERO;
    loop {
        match run(&mut make()) {
            Err(LabError::Command { stderr, .. })
                if stderr.contains("lock") && waited < Duration::from_secs(30) =>
            {
                let jitter = Duration::from_millis(rand::random_range(0..20));
                std::thread::sleep(delay + jitter);
                waited += delay + jitter;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// `ip ARGS…`
pub fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

/// `ip -n NETNS -batch -` with `lines`, one command each (nothing runs when empty).
pub fn ip_batch(netns: Option<&str>, lines: &str) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-batch", "-"]);
    run_with(&mut cmd, Some(lines)).map(drop)
}

/// Is `tool` on the PATH (or an absolute path that exists)?
pub fn have(tool: &str) -> bool {
    if tool.starts_with('/') {
        return std::path::Path::new(tool).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// Fail unless every `(tool, Debian package)` is there.
pub fn require(tools: &[(&str, &str)]) -> Result<()> {
    for (tool, package) in tools {
        if !have(tool) {
            return Err(LabError::MissingTool {
                tool: (*tool).into(),
                package: (*package).into(),
            });
        }
    }
    Ok(())
}
