//! K_E, the cluster key: 32 random bytes shared by peers, agent and console, used for nothing
//! but the Noise pre-shared key.

use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use rand::RngExt;

use crate::ProtoError;

pub const CLUSTER_KEY_LEN: usize = 32;

#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; CLUSTER_KEY_LEN]);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    pub fn generate() -> Self {
        Self(rand::rng().random())
    }

    pub fn from_bytes(bytes: [u8; CLUSTER_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw key, for the seed a deployer hands a new machine (over an encrypted login).
    pub fn bytes(&self) -> &[u8; CLUSTER_KEY_LEN] {
        &self.0
    }

    /// Create a new key file (mode 0600); refuses to overwrite an existing file.
    pub fn create(path: &Path) -> Result<Self, ProtoError> {
        let key = Self::generate();
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| key_error(path, format!("cannot create: {e}")))?;
        file.write_all(&key.0)
            .and_then(|()| file.sync_all())
            .map_err(|e| key_error(path, format!("cannot write: {e}")))?;
        Ok(key)
    }

    /// Load a key file; a file readable by group or others, or not exactly 32 bytes, is refused.
    pub fn load(path: &Path) -> Result<Self, ProtoError> {
        let bytes = read_private(path)?;
        let bytes: [u8; CLUSTER_KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            key_error(
                path,
                format!(
                    "{} bytes, a key file is exactly {CLUSTER_KEY_LEN}",
                    bytes.len()
                ),
            )
        })?;
        Ok(Self(bytes))
    }
}

/// The bytes of a key file; refused when group or others may read it. Errors:
/// [`ProtoError::ClusterKey`] naming the file and why.
pub(crate) fn read_private(path: &Path) -> Result<Vec<u8>, ProtoError> {
    let meta = fs::metadata(path).map_err(|e| key_error(path, format!("cannot read: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_error(
            path,
            format!("mode {mode:04o} lets others read it; run chmod 600"),
        ));
    }
    fs::read(path).map_err(|e| key_error(path, format!("cannot read: {e}")))
}

pub(crate) fn key_error(path: &Path, reason: String) -> ProtoError {
    ProtoError::ClusterKey {
        path: path.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_0600_and_refuses_wide_modes_and_wrong_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let key = ClusterKey::create(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(ClusterKey::load(&path).unwrap(), key);
        assert!(ClusterKey::create(&path).is_err(), "never overwrites");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = ClusterKey::load(&path).unwrap_err().to_string();
        assert!(err.contains("0644") && err.contains("chmod 600"), "{err}");

        let short = dir.path().join("short");
        fs::write(&short, [0u8; 31]).unwrap();
        fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).unwrap();
        let err = ClusterKey::load(&short).unwrap_err().to_string();
        assert!(err.contains("31 bytes"), "{err}");
    }
}
