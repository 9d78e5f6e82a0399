//! The lab's SSH accounts: one Unix user per account of each machine, with its own home under
//! DIR/m<host>/home/, so that what one machine installs under $HOME never meets another's.

use std::{os::unix::fs::PermissionsExt, process::Command};

use crate::{
    error::{LabError, Result},
    layout::LabState,
    procs, run,
};

/// Create account `account` of machine `host`: the user (unlocked for public-key logins:
/// password `*`, not `!`) and its home, mode 0700, owned by it.
pub fn create(lab: &LabState, host: usize, account: usize) -> Result<()> {
    let user = lab.user(host, account);
    let home = lab.home(host, account);
    std::fs::create_dir_all(&home).map_err(LabError::io(&home))?;
    run::run_retrying_lock(|| {
        let mut c = Command::new("useradd");
        c.args(["-M", "-N", "-s", "/bin/sh", "-p", "*", "-d"])
            .arg(&home)
            .arg(&user);
        c
    })?;
    let (uid, gid) = procs::ids_of(&user).ok_or_else(|| LabError::State {
        path: "/etc/passwd".into(),
        reason: format!("{user} missing right after useradd"),
    })?;
    std::os::unix::fs::chown(&home, Some(uid), Some(gid)).map_err(LabError::io(&home))?;
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))
        .map_err(LabError::io(&home))
}

/// Delete `user` (nothing when it does not exist). Its processes must be dead first.
pub fn delete(user: &str) -> Result<()> {
    if procs::uid_of(user).is_none() {
        return Ok(());
    }
    run::run_retrying_lock(|| {
        let mut c = Command::new("userdel");
        c.arg(user);
        c
    })
    .map(drop)
}

/// Empty `home` (keeping the directory, its owner and mode), as a reinstalled machine has it.
pub fn empty_home(home: &std::path::Path) -> Result<()> {
    for entry in std::fs::read_dir(home)
        .map_err(LabError::io(home))?
        .flatten()
    {
        let path = entry.path();
        let gone = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        gone.map_err(LabError::io(&path))?;
    }
    Ok(())
}

/// Users of lab `id` that still exist (for checks that `down` left nothing).
pub fn left_of(id: &str) -> Vec<String> {
    let prefix = format!("sl{id}m");
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').next())
        .filter(|u| u.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// Is every ancestor of `dir` searchable by others (so the lab's users reach their homes)?
pub fn check_traversable(dir: &std::path::Path) -> Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        if ancestor.as_os_str().is_empty() {
            continue;
        }
        let meta = std::fs::metadata(ancestor).map_err(LabError::io(ancestor))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o001 == 0 {
            return Err(LabError::NotTraversable {
                path: ancestor.to_owned(),
                mode,
            });
        }
    }
    Ok(())
}
