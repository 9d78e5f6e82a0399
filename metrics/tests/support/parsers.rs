//! The real parsers the tests check metrics text with: Prometheus' own (`promtool check
//! metrics`, Debian's `prometheus`) and the Prometheus client library's strict OpenMetrics
//! parser (`scripts/metrics_samples.py`, Debian's `python3-prometheus-client`). Both are
//! installed by `scripts/test.sh`; run by hand without them, a check says so and is skipped.

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

/// Run `program args` with `input` on stdin; None if the program is not installed.
fn pipe(program: &str, args: &[&str], input: &str) -> Option<std::process::Output> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: {program} is not installed (scripts/test.sh installs it)");
            return None;
        }
        Err(e) => panic!("running {program}: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    Some(child.wait_with_output().unwrap())
}

/// `promtool check metrics` on `text`: Ok, or its complaint. None: promtool missing.
pub fn promtool_check(text: &str) -> Option<Result<(), String>> {
    let out = pipe("promtool", &["check", "metrics"], text)?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("promtool ({}): {said}", out.status))
    })
}

/// One sample as the OpenMetrics parser read it.
#[derive(Debug, serde::Deserialize)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of OpenMetrics `text`, read by the client library's parser (Err: it refused
/// the text). None: python3's prometheus_client missing.
pub fn openmetrics_samples(text: &str) -> Option<Result<Vec<Sample>, String>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/metrics_samples.py");
    // Debian's python3, which Debian's python3-prometheus-client is installed for (a
    // python3 earlier on PATH, such as pyenv's, would not see it).
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let probe = Command::new(python)
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "SKIPPED: python3-prometheus-client is not installed (scripts/test.sh installs it)"
        );
        return None;
    }
    let out = pipe(python, &[script.to_str().unwrap()], text)?;
    Some(if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("the script prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

/// The value of the sample `name` with exactly `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}
