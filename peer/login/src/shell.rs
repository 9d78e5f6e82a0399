//! `sh` scripts run on a machine: the words they are built from, and what their run gives.

use crate::Error;

/// `text` as one single-quoted `sh` word (a `'` inside becomes `'\''`).
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Its standard output if a command succeeded; else [`Error::Failed`] with `status` and the
/// last non-empty line of its standard error.
pub(crate) fn checked(
    success: bool,
    status: String,
    stdout: &[u8],
    stderr: &[u8],
) -> Result<String, Error> {
    if !success {
        let stderr = String::from_utf8_lossy(stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(Error::Failed {
            status,
            stderr: last.unwrap_or("").to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(stdout).into_owned())
}

/// The command line of `SshSession::exec`: the same in sh, bash, dash, zsh, ksh, csh,
/// tcsh and fish (`exec`, a path, an option; no quote, `$`, `!` or newline).
pub const SH_FROM_STDIN: &str = "exec /bin/sh -s";

/// `script` as `/bin/sh -s` reads it from standard input: in braces, so that sh has read the
/// whole of it before any command runs, and with the commands' own standard input
/// `/dev/null` (a command that read it would otherwise eat the rest of the script).
pub fn script_on_stdin(script: &str) -> String {
    format!("{{\n{script}\n}} </dev/null\n")
}

/// `exec /bin/sh -c 'SCRIPT'` for a login shell of any family. Refused: a script with a
/// newline (csh and tcsh end a quoted word there, and say it is unmatched). A `'` is written
/// `'\''`, which every family reads as a quote; `$` and `!` are inert in single quotes of
/// a non-interactive shell.
pub fn one_line_for_any_shell(script: &str) -> Result<String, Error> {
    if script.contains('\n') {
        return Err(Error::Failed {
            status: "not run".into(),
            stderr: "a script with a newline cannot be one command line for every login shell"
                .into(),
        });
    }
    Ok(format!("exec /bin/sh -c {}", shell_quote(script)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_survive_sh() {
        let text = "it's a $HOME `x` \"y\"";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", super::shell_quote(text)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), text);
    }

    #[test]
    fn a_script_on_stdin_is_read_whole_before_it_runs() {
        use std::io::Write;
        // `cat` would read the rest of the script if its input were the script's.
        let script = "x=1\ncat\necho \"after $x\"\nexit 3";
        let mut child = std::process::Command::new("sh")
            .args(["-c", super::SH_FROM_STDIN])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let input = super::script_on_stdin(script);
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "after 1\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn one_line_commands_refuse_newlines() {
        assert!(super::one_line_for_any_shell("a\nb").is_err());
        let line = super::one_line_for_any_shell("echo 'x' \"$HOME\"").unwrap();
        assert_eq!(line, r#"exec /bin/sh -c 'echo '\''x'\'' "$HOME"'"#);
    }
}
