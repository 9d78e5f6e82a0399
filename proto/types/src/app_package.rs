//! Application packages: `app.toml` and the signed, lz4-compressed archive of an application
//! directory.
//!
//! ## `app.toml`
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
//! ```
//!
//! Every command runs with `sh -c` in the installed application directory, with
//! `SMON_APP_NAME`, `SMON_APP_VERSION`, `SMON_APP_DIR`, `SMON_MACHINE`, `SMON_HOST` and, for
//! `stop` and `status`, `SMON_APP_PGID` in its environment. A malformed file gives an error
//! `FILE:LINE: field `FIELD`: REASON`.
//!
//! ## Package file
//!
//! `"SMONAPP1" || u32 LE manifest length || manifest (wire encoding) || payload`, where the
//! payload is the lz4 block compression of the files' contents concatenated in manifest
//! order. The manifest (kind [`PackageKind::App`], name and version of the application) lists
//! every file's path, size, SHA-256 and mode, and carries the release signature; nothing is
//! used before the signature, every size and every hash verified.
//!
//! Reading an application directory from disk (`read_app_dir`) is `smon-proto`'s: this crate
//! does no IO.

use std::{ops::Range, time::Duration};

use ssh_key::PublicKey;
use toml::de::{DeTable, DeValue};

use crate::{
    AppSpec, BackoffPolicy, DesiredState, FileDigest, PackageKind, PackageManifest, ProtoError,
    Version, release, sha256,
};

const MAGIC: &[u8; 8] = b"SMONAPP1";
/// The spec's file name at the root of an application directory.
pub const APP_TOML: &str = "app.toml";
/// A package file larger than this is refused before it is read whole.
pub const MAX_APP_PACKAGE_BYTES: u64 = 64 << 20;
/// The files of a package, uncompressed, may not add up to more than this.
pub const MAX_APP_UNPACKED_BYTES: u64 = 256 << 20;
pub const MAX_APP_FILES: usize = 10_000;
const MAX_MANIFEST_BYTES: usize = 4 << 20;
const MAX_NAME_LEN: usize = 64;

// ---- app.toml ---------------------------------------------------------------------------------

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
    let (mut name, mut version, mut start) = (None, None, None);
    let mut spec = AppSpec {
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
    };
    for f in fields(file, text, doc.get_ref(), "") {
        match f.name.as_str() {
            "name" => {
                let n = f.string()?;
                if !valid_app_name(&n) {
                    return Err(f.err(format!(
                        "{n:?} is not a valid name: letters, digits, '.', '_' and '-', starting with a letter or digit, at most {MAX_NAME_LEN}"
                    )));
                }
                name = Some(n);
            }
            "version" => {
                let v = f.string()?;
                version = Some(v.parse::<Version>().map_err(|_| {
                    f.err(format!(
                        "{v:?} is not a version: expected MAJOR.MINOR.PATCH"
                    ))
                })?);
            }
            "start" => start = Some(f.command()?),
            "stop" => spec.stop = Some(f.command()?),
            "restart" => spec.restart = Some(f.command()?),
            "status" => spec.status = Some(f.command()?),
            "default_state" => {
                spec.default_state = f.string()?.parse().map_err(|e: String| f.err(e))?;
            }
            "report" => {
                let a = f.string()?;
                if !valid_address(&a) {
                    return Err(f.err(format!("{a:?} is not an address: expected host:port")));
                }
                spec.report = Some(a);
            }
            "stop_timeout" => spec.stop_timeout_ms = f.duration()?,
            "status_interval" => spec.status_interval_ms = f.duration()?,
            "env" => {
                for var in fields(file, text, f.table()?, "env.") {
                    let key = &var.name["env.".len()..];
                    if !valid_env_name(key) || key.starts_with("SMON_") {
                        return Err(var.err(format!(
                            "{key:?} is not a usable variable name (letters, digits, '_'; SMON_ is reserved)"
                        )));
                    }
                    spec.env.push((key.to_owned(), var.string()?));
                }
            }
            "backoff" => {
                let mut b = BackoffPolicy::default();
                for p in fields(file, text, f.table()?, "backoff.") {
                    match p.name.as_str() {
                        "backoff.initial" => b.initial_ms = p.duration()?,
                        "backoff.max" => b.max_ms = p.duration()?,
                        "backoff.reset_after" => b.reset_after_ms = p.duration()?,
                        "backoff.fail_after" => b.fail_after = p.integer(1..=1000)? as u32,
                        _ => {
                            return Err(p.err(
                                "unknown field (known: initial, max, reset_after, fail_after)",
                            ));
                        }
                    }
                }
                if b.max_ms < b.initial_ms {
                    return Err(f.err("backoff.max is shorter than backoff.initial"));
                }
                spec.backoff = b;
            }
            _ => {
                return Err(f.err(
                    "unknown field (known: name, version, start, stop, restart, status, default_state, report, stop_timeout, status_interval, env, backoff)",
                ));
            }
        }
    }
    let missing = |field: &str, what: &str| {
        toml_error(
            file,
            text,
            None,
            field,
            format!("missing; it is required ({what})"),
        )
    };
    spec.name = name.ok_or_else(|| missing("name", "the application's name"))?;
    spec.version = version.ok_or_else(|| missing("version", "MAJOR.MINOR.PATCH"))?;
    spec.start = start.ok_or_else(|| missing("start", "the command that runs the application"))?;
    Ok(spec)
}

// ---- the archive ------------------------------------------------------------------------------

/// One file of an application directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppFile {
    /// Relative, `/`-separated.
    pub path: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

fn bad(reason: impl Into<String>) -> ProtoError {
    ProtoError::AppPackage(reason.into())
}

/// A relative path that stays inside the directory it is joined to.
pub fn safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 4096
        && !path.contains('\0')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// The unsigned manifest of an application's files.
pub fn app_manifest(spec: &AppSpec, files: &[AppFile]) -> PackageManifest {
    PackageManifest {
        kind: PackageKind::App,
        name: spec.name.clone(),
        version: spec.version,
        files: files
            .iter()
            .map(|f| FileDigest {
                path: f.path.clone(),
                size: f.data.len() as u64,
                sha256: sha256(&f.data),
                mode: f.mode,
            })
            .collect(),
        signer: String::new(),
        signature: Vec::new(),
    }
}

/// The package file of `files` (in the manifest's order) under a (signed) manifest.
pub fn encode_app_package(manifest: &PackageManifest, files: &[AppFile]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(files.iter().map(|f| f.data.len()).sum());
    for digest in &manifest.files {
        if let Some(f) = files.iter().find(|f| f.path == digest.path) {
            raw.extend_from_slice(&f.data);
        }
    }
    let payload = lz4_flex::block::compress(&raw);
    let encoded = bincode::serialize(manifest).expect("manifest serializes");
    let mut out = Vec::with_capacity(12 + encoded.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
    out.extend_from_slice(&encoded);
    out.extend_from_slice(&payload);
    out
}

/// Read a package's manifest (nothing is verified yet) and locate its payload.
pub fn split_app_package(file: &[u8]) -> Result<(PackageManifest, &[u8]), ProtoError> {
    if file.len() < 12 || &file[..8] != MAGIC {
        return Err(bad("not an application package (no SMONAPP1 header)"));
    }
    let len = u32::from_le_bytes(file[8..12].try_into().expect("4 bytes")) as usize;
    if len > MAX_MANIFEST_BYTES || len > file.len() - 12 {
        return Err(bad(format!("manifest length {len} is out of bounds")));
    }
    let manifest: PackageManifest = bincode::deserialize(&file[12..12 + len])
        .map_err(|e| bad(format!("the manifest does not decode: {e}")))?;
    Ok((manifest, &file[12 + len..]))
}

/// A package whose signature, sizes and hashes all verified.
#[derive(Clone, Debug)]
pub struct VerifiedApp {
    pub manifest: PackageManifest,
    pub spec: AppSpec,
    pub files: Vec<AppFile>,
}

/// Verify a package file against `trusted` (the cluster's release key, never the one the
/// package names): signature, file list, sizes, hashes, and its `app.toml`, which must name
/// the same application and version as the manifest.
pub fn verify_app_package(file: &[u8], trusted: &PublicKey) -> Result<VerifiedApp, ProtoError> {
    if file.len() as u64 > MAX_APP_PACKAGE_BYTES {
        return Err(bad(format!("{} bytes, over the cap", file.len())));
    }
    let (manifest, payload) = split_app_package(file)?;
    if manifest.kind != PackageKind::App {
        return Err(bad("not an application package"));
    }
    release::verify_signature(&manifest, trusted)?;
    if !valid_app_name(&manifest.name) {
        return Err(bad(format!("{:?} is not a valid name", manifest.name)));
    }
    if manifest.files.len() > MAX_APP_FILES {
        return Err(bad(format!("{} files, over the cap", manifest.files.len())));
    }
    let mut total = 0u64;
    let mut seen = std::collections::HashSet::new();
    for f in &manifest.files {
        if !safe_relative_path(&f.path) {
            return Err(bad(format!("{:?}: unusable path", f.path)));
        }
        if !seen.insert(f.path.as_str()) {
            return Err(bad(format!("{:?}: listed twice", f.path)));
        }
        total = total.saturating_add(f.size);
    }
    if total > MAX_APP_UNPACKED_BYTES {
        return Err(bad(format!("{total} bytes unpacked, over the cap")));
    }
    let mut raw = vec![0u8; total as usize];
    let n = lz4_flex::block::decompress_into(payload, &mut raw)
        .map_err(|e| bad(format!("the payload does not decompress: {e}")))?;
    if n as u64 != total {
        return Err(bad(format!(
            "the payload holds {n} bytes, the manifest {total}"
        )));
    }
    let mut files = Vec::with_capacity(manifest.files.len());
    let mut at = 0usize;
    for f in &manifest.files {
        let data = &raw[at..at + f.size as usize];
        at += f.size as usize;
        manifest.verify_file(&f.path, data)?;
        files.push(AppFile {
            path: f.path.clone(),
            mode: if f.mode & 0o111 != 0 { 0o755 } else { 0o644 },
            data: data.to_vec(),
        });
    }
    let toml = files
        .iter()
        .find(|f| f.path == APP_TOML)
        .ok_or_else(|| bad("the package has no app.toml"))?;
    let text = std::str::from_utf8(&toml.data).map_err(|_| bad("app.toml is not UTF-8"))?;
    let spec = parse_app_toml(&format!("{}/{APP_TOML}", manifest.name), text)?;
    if spec.name != manifest.name || spec.version != manifest.version {
        return Err(bad(format!(
            "app.toml says {} {}, the manifest {} {}",
            spec.name, spec.version, manifest.name, manifest.version
        )));
    }
    Ok(VerifiedApp {
        manifest,
        spec,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
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
        // Syntax errors: the line, no field.
        let e = err("name = \"a\"\nversion = \"1\nstart = \"x\"\n");
        assert!(e.starts_with("dir/app.toml:2: not valid TOML"), "{e}");
    }

    fn sample() -> (AppSpec, Vec<AppFile>) {
        let spec = parse_app_toml("app.toml", GOOD).unwrap();
        let files = vec![
            AppFile {
                path: "app.toml".into(),
                mode: 0o644,
                data: GOOD.as_bytes().to_vec(),
            },
            AppFile {
                path: "bin/run.sh".into(),
                mode: 0o755,
                data: b"#!/bin/sh\necho hi\n".repeat(100),
            },
        ];
        (spec, files)
    }

    #[test]
    fn packages_verify_and_tampering_is_refused() {
        let key = release::generate_release_key();
        let other = release::generate_release_key();
        let (spec, files) = sample();
        let mut manifest = app_manifest(&spec, &files);
        release::sign_manifest(&mut manifest, &key).unwrap();
        let file = encode_app_package(&manifest, &files);
        assert!(file.len() < 1000, "compressed: {} bytes", file.len());

        let app = verify_app_package(&file, key.public_key()).unwrap();
        assert_eq!(app.files, files);
        assert_eq!(app.spec, spec);

        let e = verify_app_package(&file, other.public_key()).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");

        // A flipped payload byte: the hash (or the decompression) catches it.
        let mut corrupted = file.clone();
        let last = corrupted.len() - 3;
        corrupted[last] ^= 0x55;
        assert!(verify_app_package(&corrupted, key.public_key()).is_err());

        // Unsigned.
        let unsigned = encode_app_package(&app_manifest(&spec, &files), &files);
        let e = verify_app_package(&unsigned, key.public_key()).unwrap_err();
        assert!(e.to_string().contains("not signed"), "{e}");

        // A manifest that lies about the version is signed, but app.toml disagrees.
        let mut lying = app_manifest(&spec, &files);
        lying.version = Version::new(9, 0, 0);
        release::sign_manifest(&mut lying, &key).unwrap();
        let e =
            verify_app_package(&encode_app_package(&lying, &files), key.public_key()).unwrap_err();
        assert!(e.to_string().contains("app.toml says"), "{e}");

        // Paths that escape are refused even when signed.
        let mut escaping = files.clone();
        escaping[1].path = "../evil".into();
        let mut m = app_manifest(&spec, &escaping);
        release::sign_manifest(&mut m, &key).unwrap();
        let e =
            verify_app_package(&encode_app_package(&m, &escaping), key.public_key()).unwrap_err();
        assert!(e.to_string().contains("unusable path"), "{e}");

        for junk in [&b""[..], b"SMONAPP1", b"SMONAPP1\xff\xff\xff\xff"] {
            assert!(split_app_package(junk).is_err());
        }
    }
}
