//! Application packages on a machine: verified packages are unpacked under
//! `ROOT/apps/<name>/<version>/` (staged, then renamed: never half there) and kept as
//! `ROOT/apps/<name>/<version>.pkg`, which is what this peer serves to the peers that fetch it.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use smon_login::layout::io_err;
use smon_proto::{
    AppSpec, Refusal, Version,
    app_package::{self, APP_TOML, VerifiedApp},
    chunked,
};

use crate::daemon::DaemonError;

pub fn apps_dir(root: &Path) -> PathBuf {
    root.join("apps")
}

/// `ROOT/apps/<name>`: the versions, the packages, `run.json` and `app.log` of one application.
pub fn app_base(root: &Path, name: &str) -> PathBuf {
    apps_dir(root).join(name)
}

pub fn version_dir(root: &Path, name: &str, version: Version) -> PathBuf {
    app_base(root, name).join(version.to_string())
}

pub fn package_path(root: &Path, name: &str, version: Version) -> PathBuf {
    app_base(root, name).join(format!("{version}.pkg"))
}

/// Is this version completely installed? (The package file is written last.)
pub fn is_installed(root: &Path, name: &str, version: Version) -> bool {
    package_path(root, name, version).is_file()
        && version_dir(root, name, version).join(APP_TOML).is_file()
}

/// The spec of an installed version.
pub fn load_spec(root: &Path, name: &str, version: Version) -> Result<AppSpec, DaemonError> {
    let path = version_dir(root, name, version).join(APP_TOML);
    let text = smon_proto::read_text(&path)
        .map_err(|e| DaemonError::decode("installed application", e))?;
    app_package::parse_app_toml(&path.display().to_string(), &text)
        .map_err(|e| DaemonError::decode("installed application", e))
}

/// Install a verified package (idempotent: the same package again changes nothing).
pub fn install(root: &Path, app: &VerifiedApp, package: &[u8]) -> Result<(), DaemonError> {
    Ok(install_files(root, app, package)?)
}

fn install_files(root: &Path, app: &VerifiedApp, package: &[u8]) -> Result<(), smon_login::Error> {
    let (name, version) = (&app.manifest.name, app.manifest.version);
    let pkg = package_path(root, name, version);
    let dir = version_dir(root, name, version);
    if is_installed(root, name, version) && fs::read(&pkg).is_ok_and(|p| p == package) {
        return Ok(());
    }
    let base = app_base(root, name);
    fs::create_dir_all(&base).map_err(io_err(&base))?;
    let staging = base.join(format!(".staging-{version}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    for file in &app.files {
        let path = staging.join(&file.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        fs::write(&path, &file.data).map_err(io_err(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(file.mode)).map_err(io_err(&path))?;
    }
    if dir.exists() {
        // A partial or different copy of this version (a package file is missing or differs).
        let old = base.join(format!(".old-{version}-{}", std::process::id()));
        fs::rename(&dir, &old).map_err(io_err(&dir))?;
        let _ = fs::remove_dir_all(&old);
    }
    fs::rename(&staging, &dir).map_err(io_err(&dir))?;
    let tmp = base.join(format!(".{version}.pkg.tmp-{}", std::process::id()));
    fs::write(&tmp, package).map_err(io_err(&tmp))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_err(&tmp))?;
    fs::rename(&tmp, &pkg).map_err(io_err(&pkg))
}

/// Remove the versions of an application other than `keep` (directories and packages).
pub fn prune(root: &Path, name: &str, keep: &[Version]) {
    let base = app_base(root, name);
    let Ok(entries) = fs::read_dir(&base) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let stem = file.strip_suffix(".pkg").unwrap_or(&file);
        let Ok(version) = stem.parse::<Version>() else {
            continue;
        };
        if stem.split('.').count() != 3 || keep.contains(&version) {
            continue;
        }
        let path = entry.path();
        let _ = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
    }
}

/// Read a slice of an installed package, for a peer that fetches it: (the package's size,
/// the bytes). Refused: a name that is no application name, a package not here, an offset
/// past the end.
pub fn read_chunk(
    root: &Path,
    name: &str,
    version: Version,
    offset: u64,
    max_len: u32,
) -> Result<(u64, Vec<u8>), Refusal> {
    use std::os::unix::fs::FileExt;
    if !app_package::valid_app_name(name) {
        return Err(Refusal::NotFound(format!(
            "{name:?} is not an application name"
        )));
    }
    let path = package_path(root, name, version);
    let missing = || Refusal::NotFound(format!("{name} {version} is not here"));
    let file = fs::File::open(&path).map_err(|_| missing())?;
    let total = file.metadata().map_err(|_| missing())?.len();
    let range = chunked::served_range(offset, max_len, total)?;
    let mut buf = vec![0u8; (range.end - range.start) as usize];
    file.read_exact_at(&mut buf, offset)
        .map_err(|e| Refusal::Busy(format!("reading {name} {version}: {e}")))?;
    Ok((total, buf))
}
