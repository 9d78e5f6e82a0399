//! `ROOT/apps/<name>/run.json`: what the supervisor of one application must not forget when
//! its peer restarts (the process group it runs, the crash-loop count, the per-machine
//! desired state). Written atomically (temporary file, fsync, rename).

use std::{fs, io::Write, path::Path};

use serde::{Deserialize, Serialize};
use smon_proto::{DesiredState, Version};

/// A running application process group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    pub pgid: i32,
    pub version: Version,
    pub started_ms: u64,
}

/// A desired state set on this machine only (`set_app_status`); it holds until a
/// cluster-wide setting with a higher revision arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub desired: DesiredState,
    pub rev: u64,
}

/// A desired setting: the package version and the revision of the desired state in force.
pub type SettingKey = (Version, u64);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFile {
    pub proc: Option<Proc>,
    pub restarts: u32,
    pub quick_deaths: u32,
    /// The setting under which the application failed (a new setting clears it).
    pub failed: Option<SettingKey>,
    /// The setting under which an `ignore` application was started once.
    pub ignore_started: Option<SettingKey>,
    #[serde(rename = "override")]
    pub over: Option<Override>,
}

impl RunFile {
    /// The run file of an application; a missing or unreadable one is empty.
    pub fn load(path: &Path) -> Self {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("{}: {e}; starting from an empty record", path.display());
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        // The application may be declared before its package is here.
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(self).expect("a run file serializes"))?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    }
}
