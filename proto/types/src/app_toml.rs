//! `app.toml`, the spec at the root of an application directory, parsed with spans so that an
//! error names the file, the line and the field.
//!
//! ```toml
//! name = "hello-http"          # [A-Za-z0-9][A-Za-z0-9._-]*, at most 64 characters
//! version = "1.0.0"            # MAJOR.MINOR.PATCH
//! start = "exec python3 server.py"   # runs the application in the foreground (sh -c)
//! stop = "kill -TERM -$SMON_APP_PGID" # optional; default: SIGTERM to the group
//! restart = "exec python3 server.py" # optional; run after it stopped; default: start
//! status = "test -e ready"     # optional; exit 0 while healthy
//! default_state = "online"     # online | offline | ignore (default online)
//! report = "127.0.0.1:9000"    # optional; one JSON line per state change, over TCP
//! stop_timeout = "10s"         # optional; then SIGTERM, then SIGKILL (default 10s)
//! status_interval = "5s"       # optional (default 5s)
//!
//! [env]                        # optional; extra environment of the commands
//! PORT = "8080"
//!
//! [backoff]                    # optional crash-loop protection (these are the defaults)
//! initial = "1s"               # first restart delay, doubled after each quick death
//! max = "60s"                  # cap of the delay
//! reset_after = "30s"          # a run this long is healthy: the count starts over
//! fail_after = 5               # quick deaths in a row before the state is `failed`
//!
//! [log]                        # optional bound of app.log (these are the defaults)
//! max_size = "8MiB"            # bytes per file (64KiB..1GiB; a number, or with
//!                              # B, KiB, MiB, GiB; KB/MB/GB are 1000-based)
//! backups = 3                  # rotated files kept: app.log.1 .. app.log.3 (0..100)
//! ```
//!
//! The application's stdout and stderr go to a pipe that a small log writer of the peer
//! (`smon-peer app-run`) reads; it writes `app.log` in the application's directory and
//! rotates it by the `[log]` bound, so the log stays within `max_size × (backups + 1)`
//! whatever the application writes. Nobody else writes it: `app.log` removed or renamed by
//! hand is noticed and opened anew.
//!
//! Every command runs with `sh -c` in the installed application directory, with
//! `SMON_APP_NAME`, `SMON_APP_VERSION`, `SMON_APP_DIR`, `SMON_MACHINE`, `SMON_HOST` and, for
//! `stop` and `status`, `SMON_APP_PGID` in its environment. A malformed file gives an error
//! `FILE:LINE: field `FIELD`: REASON`.

use std::{ops::Range, time::Duration};

use toml::de::{DeTable, DeValue};

use crate::{AppSpec, BackoffPolicy, DesiredState, LogBound, ProtoError, Version};

/// The spec's file name at the root of an application directory.
pub const APP_TOML: &str = "app.toml";
const MAX_NAME_LEN: usize = 64;

fn toml_error(
    file: &str,
    text: &str,
    at: Option<usize>,
    field: &str,
    reason: String,
) -> ProtoError {
    ProtoError::AppToml {
        file: file.to_owned(),
        line: at.map(|offset| line_of(text, offset)),
        field: (!field.is_empty()).then(|| field.to_owned()),
        reason,
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn kind_of(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Is `name` acceptable as an application name (and hence as a directory name)?
pub fn valid_app_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= MAX_NAME_LEN
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `host:port`, `[v6]:port`.
fn valid_address(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A field's value with where it is, for error messages.
struct Field<'a, 'i> {
    file: &'a str,
    text: &'a str,
    name: String,
    value: &'a DeValue<'i>,
    span: Range<usize>,
}

impl Field<'_, '_> {
    fn err(&self, reason: impl Into<String>) -> ProtoError {
        toml_error(
            self.file,
            self.text,
            Some(self.span.start),
            &self.name,
            reason.into(),
        )
    }

    fn string(&self) -> Result<String, ProtoError> {
        match self.value {
            DeValue::String(s) => Ok(s.to_string()),
            other => Err(self.err(format!("expected a string, found {}", kind_of(other)))),
        }
    }

    fn app_name(&self) -> Result<String, ProtoError> {
        let n = self.string()?;
        if !valid_app_name(&n) {
            return Err(self.err(format!(
                "{n:?} is not a valid name: letters, digits, '.', '_' and '-', starting with a letter or digit, at most {MAX_NAME_LEN}"
            )));
        }
        Ok(n)
    }

    fn version(&self) -> Result<Version, ProtoError> {
        let v = self.string()?;
        v.parse::<Version>().map_err(|_| {
            self.err(format!(
                "{v:?} is not a version: expected MAJOR.MINOR.PATCH"
            ))
        })
    }

    /// `host:port` or `[v6]:port`.
    fn address(&self) -> Result<String, ProtoError> {
        let a = self.string()?;
        if !valid_address(&a) {
            return Err(self.err(format!("{a:?} is not an address: expected host:port")));
        }
        Ok(a)
    }

    fn command(&self) -> Result<String, ProtoError> {
        let s = self.string()?;
        if s.trim().is_empty() {
            return Err(self.err("the command is empty"));
        }
        Ok(s)
    }

    fn duration(&self) -> Result<u64, ProtoError> {
        let text = match self.value {
            DeValue::String(s) => s.to_string(),
            other => {
                return Err(self.err(format!(
                    "expected a duration such as \"5s\" or \"500ms\", found {}",
                    kind_of(other)
                )));
            }
        };
        let d: Duration = humantime::parse_duration(&text)
            .map_err(|e| self.err(format!("{text:?} is not a duration ({e})")))?;
        if d.is_zero() {
            return Err(self.err("the duration must be positive"));
        }
        Ok(d.as_millis().min(u128::from(u64::MAX)) as u64)
    }

    fn integer(&self, range: std::ops::RangeInclusive<u64>) -> Result<u64, ProtoError> {
        let n = match self.value {
            DeValue::Integer(i) if i.radix() == 10 => i.as_str().parse::<u64>().ok(),
            DeValue::Integer(i) => u64::from_str_radix(i.as_str(), i.radix()).ok(),
            other => {
                return Err(self.err(format!("expected an integer, found {}", kind_of(other))));
            }
        };
        match n {
            Some(n) if range.contains(&n) => Ok(n),
            _ => Err(self.err(format!(
                "must be between {} and {}",
                range.start(),
                range.end()
            ))),
        }
    }

    /// A size in bytes: an integer, or a string such as "8MiB", "512KiB", "10MB", "4096".
    fn size(&self, range: std::ops::RangeInclusive<u64>) -> Result<u64, ProtoError> {
        let n = match self.value {
            DeValue::Integer(_) => return self.integer(range),
            DeValue::String(s) => parse_size(s)
                .ok_or_else(|| self.err(format!("{s:?} is not a size such as \"8MiB\"")))?,
            other => {
                return Err(self.err(format!(
                    "expected a size such as \"8MiB\", found {}",
                    kind_of(other)
                )));
            }
        };
        if !range.contains(&n) {
            return Err(self.err(format!(
                "must be between {} and {} bytes",
                range.start(),
                range.end()
            )));
        }
        Ok(n)
    }

    fn table(&self) -> Result<&DeTable<'_>, ProtoError> {
        match self.value {
            DeValue::Table(t) => Ok(t),
            other => Err(self.err(format!("expected a table, found {}", kind_of(other)))),
        }
    }
}

fn fields<'a, 'i>(
    file: &'a str,
    text: &'a str,
    table: &'a DeTable<'i>,
    prefix: &str,
) -> Vec<Field<'a, 'i>> {
    let mut fields: Vec<Field<'a, 'i>> = table
        .iter()
        .map(|(key, value)| Field {
            file,
            text,
            name: format!("{prefix}{}", key.get_ref()),
            value: value.get_ref(),
            span: key.span(),
        })
        .collect();
    fields.sort_by_key(|f| f.span.start);
    fields
}

/// Parse `app.toml`; `file` names it in errors.
pub fn parse_app_toml(file: &str, text: &str) -> Result<AppSpec, ProtoError> {
    let doc = DeTable::parse(text).map_err(|e| {
        toml_error(
            file,
            text,
            e.span().map(|s| s.start),
            "",
            format!("not valid TOML: {}", e.message().trim()),
        )
    })?;
    let mut draft = Draft::new();
    for f in fields(file, text, doc.get_ref(), "") {
        draft.set(&f)?;
    }
    draft.finish(file, text)
}

/// An `AppSpec` while its fields are read: the required ones are known once all are.
struct Draft {
    name: Option<String>,
    version: Option<Version>,
    start: Option<String>,
    spec: AppSpec,
}

impl Draft {
    fn new() -> Self {
        Self {
            name: None,
            version: None,
            start: None,
            spec: AppSpec {
                name: String::new(),
                version: Version::default(),
                start: String::new(),
                stop: None,
                restart: None,
                status: None,
                default_state: DesiredState::Online,
                report: None,
                env: Vec::new(),
                stop_timeout_ms: 10_000,
                status_interval_ms: 5_000,
                backoff: BackoffPolicy::default(),
                log: LogBound::default(),
            },
        }
    }

    /// Read one top-level field.
    fn set(&mut self, f: &Field<'_, '_>) -> Result<(), ProtoError> {
        let spec = &mut self.spec;
        match f.name.as_str() {
            "name" => self.name = Some(f.app_name()?),
            "version" => self.version = Some(f.version()?),
            "start" => self.start = Some(f.command()?),
            "stop" => spec.stop = Some(f.command()?),
            "restart" => spec.restart = Some(f.command()?),
            "status" => spec.status = Some(f.command()?),
            "default_state" => {
                spec.default_state = f.string()?.parse().map_err(|e: String| f.err(e))?;
            }
            "report" => spec.report = Some(f.address()?),
            "stop_timeout" => spec.stop_timeout_ms = f.duration()?,
            "status_interval" => spec.status_interval_ms = f.duration()?,
            "env" => spec.env.extend(env(f)?),
            "backoff" => spec.backoff = backoff(f)?,
            "log" => spec.log = log(f)?,
            _ => {
                return Err(f.err(
                    "unknown field (known: name, version, start, stop, restart, status, default_state, report, stop_timeout, status_interval, env, backoff, log)",
                ));
            }
        }
        Ok(())
    }

    /// The spec, or which required field is missing.
    fn finish(self, file: &str, text: &str) -> Result<AppSpec, ProtoError> {
        let missing = |field: &str, what: &str| {
            toml_error(
                file,
                text,
                None,
                field,
                format!("missing; it is required ({what})"),
            )
        };
        let mut spec = self.spec;
        spec.name = self
            .name
            .ok_or_else(|| missing("name", "the application's name"))?;
        spec.version = self
            .version
            .ok_or_else(|| missing("version", "MAJOR.MINOR.PATCH"))?;
        spec.start = self
            .start
            .ok_or_else(|| missing("start", "the command that runs the application"))?;
        Ok(spec)
    }
}

/// The `[env]` table: extra variables of the commands, in file order.
fn env(f: &Field<'_, '_>) -> Result<Vec<(String, String)>, ProtoError> {
    let mut vars = Vec::new();
    for var in fields(f.file, f.text, f.table()?, "env.") {
        let key = &var.name["env.".len()..];
        if !valid_env_name(key) || key.starts_with("SMON_") {
            return Err(var.err(format!(
                "{key:?} is not a usable variable name (letters, digits, '_'; SMON_ is reserved)"
            )));
        }
        vars.push((key.to_owned(), var.string()?));
    }
    Ok(vars)
}

/// The `[backoff]` table: the crash-loop policy, defaults for what it leaves out.
fn backoff(f: &Field<'_, '_>) -> Result<BackoffPolicy, ProtoError> {
    let mut b = BackoffPolicy::default();
    for p in fields(f.file, f.text, f.table()?, "backoff.") {
        match p.name.as_str() {
            "backoff.initial" => b.initial_ms = p.duration()?,
            "backoff.max" => b.max_ms = p.duration()?,
            "backoff.reset_after" => b.reset_after_ms = p.duration()?,
            "backoff.fail_after" => b.fail_after = p.integer(1..=1000)? as u32,
            _ => {
                return Err(p.err("unknown field (known: initial, max, reset_after, fail_after)"));
            }
        }
    }
    if b.max_ms < b.initial_ms {
        return Err(f.err("backoff.max is shorter than backoff.initial"));
    }
    Ok(b)
}

/// `NUMBER[UNIT]`: B, KiB/MiB/GiB (1024-based, also K/M/G), KB/MB/GB (1000-based).
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let n: u64 = text[..digits].parse().ok()?;
    let unit: u64 = match text[digits..].trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// The `[log]` table: the bound of the application's log, defaults for what it leaves out.
fn log(f: &Field<'_, '_>) -> Result<LogBound, ProtoError> {
    let mut bound = LogBound::default();
    for p in fields(f.file, f.text, f.table()?, "log.") {
        match p.name.as_str() {
            "log.max_size" => {
                bound.max_bytes = p.size(LogBound::MIN_BYTES..=LogBound::MAX_BYTES)?;
            }
            "log.backups" => {
                bound.backups = p.integer(0..=u64::from(LogBound::MAX_BACKUPS))? as u32;
            }
            _ => return Err(p.err("unknown field (known: max_size, backups)")),
        }
    }
    Ok(bound)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid `app.toml` with optional fields and tables (the package tests use it too).
    pub(crate) const GOOD: &str = r#"
name = "hello"
version = "1.2.0"
start = "exec python3 server.py"
report = "127.0.0.1:9000"

[env]
PORT = "8080"

[backoff]
initial = "200ms"
fail_after = 3
"#;

    fn err(text: &str) -> String {
        parse_app_toml("dir/app.toml", text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn parses_a_good_app_toml_with_defaults() {
        let spec = parse_app_toml("app.toml", GOOD).unwrap();
        assert_eq!(spec.name, "hello");
        assert_eq!(spec.version, Version::new(1, 2, 0));
        assert_eq!(spec.restart_command(), "exec python3 server.py");
        assert_eq!(spec.default_state, DesiredState::Online);
        assert_eq!(spec.env, vec![("PORT".to_string(), "8080".to_string())]);
        assert_eq!(spec.backoff.initial_ms, 200);
        assert_eq!(spec.backoff.fail_after, 3);
        assert_eq!(spec.backoff.max_ms, BackoffPolicy::default().max_ms);
        assert_eq!(spec.report.as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(spec.log, LogBound::default());
    }

    #[test]
    fn the_log_table_takes_sizes_with_units() {
        let text = "name = \"a\"\nversion = \"1.0.0\"\nstart = \"x\"\n[log]\nmax_size = \"512KiB\"\nbackups = 0\n";
        let spec = parse_app_toml("app.toml", text).unwrap();
        assert_eq!(
            spec.log,
            LogBound {
                max_bytes: 512 << 10,
                backups: 0
            }
        );
        for (text, bytes) in [
            ("70000", 70_000),
            ("1MB", 1_000_000),
            ("2 MiB", 2 << 20),
            ("1G", 1 << 30),
        ] {
            assert_eq!(parse_size(text), Some(bytes), "{text}");
        }
        assert_eq!(parse_size("MiB"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
        let spec = parse_app_toml(
            "app.toml",
            "name = \"a\"\nversion = \"1.0.0\"\nstart = \"x\"\n[log]\nmax_size = 100000\n",
        )
        .unwrap();
        assert_eq!(spec.log.max_bytes, 100_000);
        assert_eq!(spec.log.backups, 3);
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_field() {
        let e = err("name = \"a\"\nversion = 3\nstart = \"x\"\n");
        assert_eq!(
            e,
            "dir/app.toml:2: field `version`: expected a string, found an integer"
        );
        let e = err("name = \"a\"\nversion = \"1.x\"\nstart = \"x\"\n");
        assert!(
            e.starts_with("dir/app.toml:2: field `version`: \"1.x\" is not a version"),
            "{e}"
        );
        let e = err("name = \"a b\"\nversion = \"1\"\nstart = \"x\"\n");
        assert!(e.starts_with("dir/app.toml:1: field `name`:"), "{e}");
        let e = err("name = \"a\"\nversion = \"1\"\nstart = \"x\"\ncolour = \"red\"\n");
        assert!(
            e.starts_with("dir/app.toml:4: field `colour`: unknown field"),
            "{e}"
        );
        let e = err("name = \"a\"\nversion = \"1\"\n");
        assert!(e.starts_with("dir/app.toml: field `start`: missing"), "{e}");
        let e = err("name = \"a\"\nversion = \"1\"\nstart = \"  \"\n");
        assert!(e.starts_with("dir/app.toml:3: field `start`:"), "{e}");
        let e = err("name = \"a\"\nversion = \"1\"\nstart = \"x\"\ndefault_state = \"up\"\n");
        assert!(
            e.starts_with("dir/app.toml:4: field `default_state`:"),
            "{e}"
        );
        let e = err("name = \"a\"\nversion = \"1\"\nstart = \"x\"\nreport = \"nowhere\"\n");
        assert!(e.starts_with("dir/app.toml:4: field `report`:"), "{e}");
        let e =
            err("name = \"a\"\nversion = \"1\"\nstart = \"x\"\n[backoff]\ninitial = \"soon\"\n");
        assert!(
            e.starts_with("dir/app.toml:5: field `backoff.initial`:"),
            "{e}"
        );
        let e = err("name = \"a\"\nversion = \"1\"\nstart = \"x\"\n[backoff]\nfail_after = 0\n");
        assert!(
            e.starts_with("dir/app.toml:5: field `backoff.fail_after`:"),
            "{e}"
        );
        let e = err("name = \"a\"\nversion = \"1\"\nstart = \"x\"\n[env]\nSMON_X = \"1\"\n");
        assert!(e.starts_with("dir/app.toml:5: field `env.SMON_X`:"), "{e}");
        let e = err("name = \"a\"\nversion = \"1\"\nstart = \"x\"\n[log]\nmax_size = \"1KiB\"\n");
        assert!(
            e.starts_with("dir/app.toml:5: field `log.max_size`: must be between 65536"),
            "{e}"
        );
        let e =
            err("name = \"a\"\nversion = \"1\"\nstart = \"x\"\n[log]\nmax_size = \"8 parsecs\"\n");
        assert!(
            e.starts_with("dir/app.toml:5: field `log.max_size`:"),
            "{e}"
        );
        let e = err("name = \"a\"\nversion = \"1\"\nstart = \"x\"\n[log]\nbackups = 101\n");
        assert!(e.starts_with("dir/app.toml:5: field `log.backups`:"), "{e}");
        let e = err("name = \"a\"\nversion = \"1\"\nstart = \"x\"\n[log]\nfiles = 2\n");
        assert!(
            e.starts_with("dir/app.toml:5: field `log.files`: unknown"),
            "{e}"
        );
        // Syntax errors: the line, no field.
        let e = err("name = \"a\"\nversion = \"1\nstart = \"x\"\n");
        assert!(e.starts_with("dir/app.toml:2: not valid TOML"), "{e}");
    }
}
