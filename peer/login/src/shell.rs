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
}
