//! `app.toml`, as the console reads an application directory and as a peer reads it inside a
//! package and from its disk: UTF-8 text. An error is one line, naming the file and, when it
//! has one, a line of the text; a spec that parses keeps the rules the file format states.

use smon_proto::app_package::{parse_app_toml, valid_app_name};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_app_toml("app.toml", text) {
        Ok(spec) => {
            assert!(valid_app_name(&spec.name), "{:?}", spec.name);
            assert!(!spec.start.trim().is_empty());
            assert!(spec.stop_timeout_ms > 0 && spec.status_interval_ms > 0);
            assert!(spec.backoff.initial_ms <= spec.backoff.max_ms);
            assert!((1..=1000).contains(&spec.backoff.fail_after));
            for (name, _) in &spec.env {
                assert!(!name.starts_with("SMON_"), "{name}");
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "a multi-line error: {message:?}");
            let lines = text.split('\n').count();
            if let Some(line) = message
                .strip_prefix("app.toml:")
                .and_then(|rest| rest.split(':').next())
                .and_then(|n| n.parse::<usize>().ok())
            {
                assert!(
                    (1..=lines).contains(&line),
                    "line {line} of {lines}: {message}"
                );
            }
        }
    }
}

/// The example application's file, the format's documented example, and a few mistakes.
pub fn seeds() -> Vec<Vec<u8>> {
    [
        include_str!("../../../assets/apps/hello-http/app.toml"),
        r#"name = "hello"
version = "1.2.0"
start = "exec python3 server.py"
stop = "kill -TERM -$SMON_APP_PGID"
restart = "exec python3 server.py"
status = "test -e ready"
default_state = "ignore"
report = "[::1]:9000"
stop_timeout = "10s"
status_interval = "500ms"

[env]
PORT = "8080"
_X1 = "y"

[backoff]
initial = "200ms"
max = "1m"
reset_after = "30s"
fail_after = 0x10
"#,
        "name = \"a\"\nversion = \"1.0\"\nstart = \"x\"\n",
        "name = 'a'\nversion = '1.0.0'\nstart = ''\n",
        "name = \"a\"\nversion = \"1.0.0\"\nstart = \"x\"\n[env]\nSMON_X = \"1\"\n",
        "name = \"a\"\nversion = \"1.0.0\"\nstart = \"x\"\n[backoff]\ninitial = \"2s\"\nmax = \"1s\"\n",
        "name = \"a\"\nversion = \"1.0.0\"\nstart = \"x\"\nstop_timeout = 5\n",
        "name = [1, 2]\n",
        "[[x]]\ny = 1979-05-27T07:32:00Z\n",
        "name = \"a\nversion",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}
