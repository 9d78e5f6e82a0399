//! Application packages: the formats of `smon-proto-types` (re-exported whole), and reading
//! an application directory from disk, which is IO and so lives here.

use std::path::{Path, PathBuf};

pub use smon_proto_types::app_package::*;

use crate::{AppSpec, ProtoError};

fn bad(reason: impl Into<String>) -> ProtoError {
    ProtoError::AppPackage(reason.into())
}

/// Read an application directory: `app.toml` parsed, every regular file (sorted by path).
/// Symbolic links and special files are refused.
pub fn read_app_dir(dir: &Path) -> Result<(AppSpec, Vec<AppFile>), ProtoError> {
    let toml_path = dir.join(APP_TOML);
    let text = crate::read_text(&toml_path)?;
    let spec = parse_app_toml(&toml_path.display().to_string(), &text)?;
    let mut files = Vec::new();
    let mut total = 0u64;
    walk(dir, dir, &mut files, &mut total)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((spec, files))
}

fn walk(
    base: &Path,
    dir: &Path,
    files: &mut Vec<AppFile>,
    total: &mut u64,
) -> Result<(), ProtoError> {
    use std::os::unix::fs::PermissionsExt;
    let entries = std::fs::read_dir(dir).map_err(|e| bad(format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| bad(format!("{}: {e}", dir.display())))?;
        let path: PathBuf = entry.path();
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        if meta.is_dir() {
            walk(base, &path, files, total)?;
            continue;
        }
        if !meta.is_file() {
            return Err(bad(format!(
                "{}: not a regular file (symbolic links and special files cannot be packaged)",
                path.display()
            )));
        }
        let rel = path
            .strip_prefix(base)
            .ok()
            .and_then(|p| p.to_str())
            .map(str::to_owned)
            .ok_or_else(|| bad(format!("{}: the name is not UTF-8", path.display())))?;
        if !safe_relative_path(&rel) {
            return Err(bad(format!("{}: unusable file name", path.display())));
        }
        *total += meta.len();
        if files.len() >= MAX_APP_FILES || *total > MAX_APP_UNPACKED_BYTES {
            return Err(bad(format!(
                "{}: more than {MAX_APP_FILES} files or {MAX_APP_UNPACKED_BYTES} bytes",
                base.display()
            )));
        }
        let data = std::fs::read(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let mode = if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        files.push(AppFile {
            path: rel,
            mode,
            data,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "name = \"hello\"\nversion = \"1.2.0\"\nstart = \"exec python3 server.py\"\n";

    #[test]
    fn reads_a_directory_and_refuses_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.toml"), GOOD).unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/run.sh"), "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("bin/run.sh"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let (spec, files) = read_app_dir(dir.path()).unwrap();
        assert_eq!(spec.name, "hello");
        let paths: Vec<_> = files.iter().map(|f| (f.path.as_str(), f.mode)).collect();
        assert_eq!(paths, vec![("app.toml", 0o644), ("bin/run.sh", 0o755)]);
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let e = read_app_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
