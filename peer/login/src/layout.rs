//! The files of a machine's smon directory, and the small operations on them.
//!
//! ```text
//! ROOT/state.db            SQLite: identity, cluster config and key, membership, state
//! ROOT/versions/<v>/smon-peer   the package file of version v (executable)
//! ROOT/current -> versions/<v>  the version that runs; ROOT/previous: the one before
//! ROOT/incoming/<deployer>-<nonce>/  a deployer's upload; claim-<nonce>: its claim
//! ROOT/arrivals, ROOT/logins    one byte per package arrived / per login (the overhead)
//! ROOT/peer.lock, ROOT/peer.pid, ROOT/install.lock, ROOT/peer.log
//! ROOT/apps/<name>/<version>/   an installed application (see `apps/mod.rs`);
//!   <version>.pkg its verified package, run.json its supervisor's record, app.log its output
//! ```

use std::{
    fs,
    os::unix::{fs::PermissionsExt, io::AsRawFd},
    path::{Path, PathBuf},
};

use smon_proto::{PackageManifest, Version, release};

use crate::Error;
pub use crate::error::io_err;

pub use smon_proto::files::PEER_BINARY;

/// The environment variable through which the restart script tells `smon-peer start
/// --rollback` how the current version's `start` ended: its exit code. A variable rather than
/// a flag, so that a previous release that does not know it still rolls back.
pub const ROLLBACK_EXIT_ENV: &str = "SMON_ROLLBACK_EXIT";

pub fn version_dir(root: &Path, version: Version) -> PathBuf {
    smon_proto::MachineFiles::new(root)
        .versions()
        .join(version.to_string())
}

pub fn version_binary(root: &Path, version: Version) -> PathBuf {
    version_dir(root, version).join(PEER_BINARY)
}

/// The version a link (`current`, `previous`) points at.
pub fn linked_version(root: &Path, link: &str) -> Option<Version> {
    let target = fs::read_link(root.join(link)).ok()?;
    target.file_name()?.to_str()?.parse().ok()
}

/// Point `link` at `versions/<version>` atomically (new link, then rename over the old one).
pub fn set_link(root: &Path, link: &str, version: Version) -> Result<(), Error> {
    let tmp = root.join(format!(".{link}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let target = PathBuf::from("versions").join(version.to_string());
    std::os::unix::fs::symlink(&target, &tmp).map_err(io_err(&tmp))?;
    fs::rename(&tmp, root.join(link)).map_err(io_err(&root.join(link)))
}

/// Make `version` current, remembering the one it replaces as `previous`.
pub fn switch_to(root: &Path, version: Version) -> Result<(), Error> {
    if let Some(old) = linked_version(root, "current")
        && old != version
    {
        set_link(root, "previous", old)?;
    }
    set_link(root, "current", version)
}

/// Store a verified package file as `versions/<v>/smon-peer` (write, fsync, rename).
pub fn store_version(root: &Path, version: Version, package: &[u8]) -> Result<(), Error> {
    let dir = version_dir(root, version);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = dir.join(PEER_BINARY);
    if fs::read(&path).is_ok_and(|existing| existing == package) {
        return Ok(());
    }
    let tmp = dir.join(format!(".{PEER_BINARY}.tmp-{}", std::process::id()));
    fs::write(&tmp, package).map_err(io_err(&tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).map_err(io_err(&tmp))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))
}

/// The manifest of an installed package file.
pub fn installed_manifest(path: &Path) -> Result<(Vec<u8>, PackageManifest), Error> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let (_, manifest) = release::split_package(&bytes).map_err(|source| Error::Package {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    Ok((bytes, manifest))
}

/// Count file: one byte per event (arrivals, logins); appends are atomic.
pub fn bump_counter(path: &Path) -> Result<(), Error> {
    use std::io::Write;
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(b"x"))
        .map_err(io_err(path))
}

pub fn counter(path: &Path) -> u32 {
    fs::metadata(path).map_or(0, |m| m.len() as u32)
}

/// An exclusive, non-blocking flock held as long as the returned file lives. `None` when
/// another process holds it.
pub fn try_lock(path: &Path) -> Result<Option<fs::File>, Error> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    // SAFETY: flock on a valid descriptor owned by `file`.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(Some(file))
    } else {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(io_err(path)(err))
        }
    }
}

/// The pid of the running peer of this root, if one runs: the holder of its `peer.lock`
/// ([`smon_proto::lock_holder`]). Not the pid file, whose pid the kernel may have given to
/// another process since (another machine's peer, an application) once the peer died.
pub fn running_pid(root: &Path) -> Option<i32> {
    smon_proto::lock_holder(&smon_proto::MachineFiles::new(root).lock())
}
