//! The keyring file (the cluster's `cluster_key` file, the agent's, a peer's seed): mode
//! 0600, refused otherwise, as `cluster_key.rs`.
//!
//! Two forms:
//! - exactly 32 bytes: a key file from before rotation, read as epoch 0 (and written so while
//!   a keyring is a single epoch-0 key, so that older programs still read it);
//! - `SMONKR` `\0` `1` (8 bytes), current epoch (u32 big-endian), current key (32 bytes),
//!   then either `0` (no previous key: 45 bytes in all) or `1`, previous epoch (u32), previous
//!   key (32 bytes), grace deadline (u64 big-endian unix milliseconds): 89 bytes in all.
//!   Any other length, magic or flag is refused.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use crate::{
    CLUSTER_KEY_LEN, ClusterKey, ProtoError,
    keyring::{KeyEpoch, Keyring, NoiseKeys, PreviousKey},
    write_atomic,
};

/// The magic and version of the keyring form.
pub const KEYRING_MAGIC: &[u8; 8] = b"SMONKR\x001";
const SINGLE_LEN: usize = 8 + 4 + CLUSTER_KEY_LEN + 1;
const WITH_PREVIOUS_LEN: usize = SINGLE_LEN + 4 + CLUSTER_KEY_LEN + 8;

impl Keyring {
    /// The file's bytes: the bare 32-byte key for a single key at epoch 0, else the keyring
    /// form.
    pub fn encode(&self) -> Vec<u8> {
        if self.epoch() == 0 && self.previous().is_none() {
            return self.current().bytes().to_vec();
        }
        let mut out = Vec::with_capacity(WITH_PREVIOUS_LEN);
        out.extend_from_slice(KEYRING_MAGIC);
        out.extend_from_slice(&self.epoch().to_be_bytes());
        out.extend_from_slice(self.current().bytes());
        match self.previous() {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                out.extend_from_slice(&p.epoch.to_be_bytes());
                out.extend_from_slice(p.key.bytes());
                out.extend_from_slice(&p.grace_until_ms.to_be_bytes());
            }
        }
        out
    }

    /// Decode [`Keyring::encode`]'s bytes; the error says what is wrong with them.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if let Ok(key) = <[u8; CLUSTER_KEY_LEN]>::try_from(bytes) {
            return Ok(Keyring::from(ClusterKey::from_bytes(key)));
        }
        let Some(rest) = bytes.strip_prefix(KEYRING_MAGIC) else {
            return Err(format!(
                "{} bytes and not a keyring: a key file is {CLUSTER_KEY_LEN} bytes",
                bytes.len()
            ));
        };
        if bytes.len() != SINGLE_LEN && bytes.len() != WITH_PREVIOUS_LEN {
            return Err(format!(
                "keyring of {} bytes, expected {SINGLE_LEN} or {WITH_PREVIOUS_LEN}",
                bytes.len()
            ));
        }
        let (epoch, key, rest) = epoch_and_key(rest);
        match (rest[0], rest.len()) {
            (0, 1) => Ok(Keyring::new(epoch, key)),
            (1, 45) => {
                let (prev_epoch, prev_key, rest) = epoch_and_key(&rest[1..]);
                let grace_until_ms = u64::from_be_bytes(rest.try_into().expect("8 bytes"));
                let previous = PreviousKey {
                    epoch: prev_epoch,
                    key: prev_key,
                    grace_until_ms,
                };
                Keyring::with_previous(epoch, key, previous).ok_or_else(|| {
                    format!("previous epoch {prev_epoch} is not older than epoch {epoch}")
                })
            }
            (flag, _) => Err(format!("bad previous-key flag {flag}")),
        }
    }

    /// Load a keyring file; a file readable by group or others, or malformed, is refused.
    pub fn load(path: &Path) -> Result<Self, ProtoError> {
        let bytes = crate::cluster_key::read_private(path)?;
        Self::decode(&bytes).map_err(|reason| key_error(path, reason))
    }

    /// Write the keyring file atomically (a reader sees the old file or the new, whole),
    /// mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), ProtoError> {
        write_atomic(path, &self.encode(), 0o600)
    }
}

/// A keyring file read again whenever its modification time changes (looked at once per
/// handshake): what a long-running process that takes no rotation itself (the agent) serves
/// with, so that the console's `rekey`, which rewrites the file, reaches it. A file that
/// can no longer be read keeps the last keyring (logged). Cloning shares it.
#[derive(Clone, Debug)]
pub struct KeyringFile {
    path: Arc<PathBuf>,
    cache: Arc<Mutex<(Option<SystemTime>, Keyring)>>,
}

impl KeyringFile {
    /// Load `path` ([`Keyring::load`]'s errors).
    pub fn open(path: &Path) -> Result<Self, ProtoError> {
        let mtime = fs::metadata(path).and_then(|m| m.modified()).ok();
        let keyring = Keyring::load(path)?;
        Ok(Self {
            path: Arc::new(path.to_owned()),
            cache: Arc::new(Mutex::new((mtime, keyring))),
        })
    }

    /// The keyring, read again first if the file changed since it was last read.
    pub fn get(&self) -> Keyring {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let mtime = fs::metadata(&*self.path).and_then(|m| m.modified()).ok();
        if mtime != cache.0 {
            match Keyring::load(&self.path) {
                Ok(keyring) => *cache = (mtime, keyring),
                Err(e) => tracing::warn!("{e}; keeping the keyring read before"),
            }
        }
        cache.1.clone()
    }
}

impl NoiseKeys for KeyringFile {
    fn initiator_key(&self) -> ClusterKey {
        NoiseKeys::initiator_key(&self.get())
    }

    fn accepted_keys(&self) -> Vec<ClusterKey> {
        NoiseKeys::accepted_keys(&self.get())
    }
}

/// The epoch (u32 big-endian) and key at the front of `bytes`, and what follows; `bytes` is
/// at least 36 bytes long (the caller checked the length).
fn epoch_and_key(bytes: &[u8]) -> (KeyEpoch, ClusterKey, &[u8]) {
    let (epoch, rest) = bytes.split_at(4);
    let (key, rest) = rest.split_at(CLUSTER_KEY_LEN);
    let epoch = KeyEpoch::from_be_bytes(epoch.try_into().expect("4 bytes"));
    let key = ClusterKey::from_bytes(key.try_into().expect("32 bytes"));
    (epoch, key, rest)
}

use crate::cluster_key::key_error;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn rotated() -> Keyring {
        Keyring::from(ClusterKey::generate())
            .rotated(1, ClusterKey::generate(), 1_234_567)
            .unwrap()
    }

    #[test]
    fn every_form_round_trips_through_a_0600_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster_key");
        let single = Keyring::from(ClusterKey::generate());
        let later = Keyring::new(7, ClusterKey::generate());
        for ring in [single.clone(), later, rotated()] {
            ring.save(&path).unwrap();
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            assert_eq!(Keyring::load(&path).unwrap(), ring);
        }
        // Epoch 0 alone stays the 32-byte file older programs read.
        single.save(&path).unwrap();
        assert_eq!(ClusterKey::load(&path).unwrap(), *single.current());
        assert_eq!(fs::read(&path).unwrap().len(), CLUSTER_KEY_LEN);
    }

    #[test]
    fn a_keyring_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster_key");
        let first = Keyring::from(ClusterKey::generate());
        first.save(&path).unwrap();
        let file = KeyringFile::open(&path).unwrap();
        assert_eq!(file.get(), first);
        let next = first.rotated(1, ClusterKey::generate(), 1).unwrap();
        next.save(&path).unwrap();
        // A filesystem with coarse timestamps may show the same time: make it differ.
        let later = SystemTime::now() + std::time::Duration::from_secs(2);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(file.get(), next);
        fs::write(&path, b"garbage").unwrap();
        assert_eq!(file.get(), next, "a bad file keeps the last keyring");
    }

    #[test]
    fn an_old_key_file_is_epoch_0() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster_key");
        let key = ClusterKey::create(&path).unwrap();
        assert_eq!(Keyring::load(&path).unwrap(), Keyring::new(0, key));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster_key");
        let good = rotated().encode();
        let mut bad_flag = good.clone();
        bad_flag[SINGLE_LEN - 1] = 2;
        let mut not_older = good.clone();
        not_older[SINGLE_LEN..SINGLE_LEN + 4].copy_from_slice(&5u32.to_be_bytes());
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        let cases: [(&[u8], &str); 6] = [
            (&[0; 31], "31 bytes"),
            (&good[..good.len() - 1], "88 bytes"),
            (&bad_flag, "bad previous-key flag 2"),
            (&not_older, "not older"),
            (&bad_magic, "not a keyring"),
            (&good[..SINGLE_LEN], "bad previous-key flag 1"),
        ];
        for (bytes, expected) in cases {
            fs::write(&path, bytes).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let err = Keyring::load(&path).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
        rotated().save(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = Keyring::load(&path).unwrap_err().to_string();
        assert!(err.contains("0640") && err.contains("chmod 600"), "{err}");
    }
}
