//! The keyring: K_E by epoch, for cluster-key rotation (`smon-console rekey`, issue 14).
//!
//! A keyring holds the current key and its epoch (a cluster made before rotation existed is
//! on epoch 0, its one key), and after a rotation the previous key with the end of its grace
//! period (unix milliseconds). During the grace period both keys are accepted, and
//! connections are initiated with the *previous* key, which every peer still accepts (the
//! peers not yet told of the rotation know only that one); after it, only the current key is
//! used or accepted. The file format is in `keyring_file.rs`.

use std::{
    sync::{Arc, RwLock},
    time::{SystemTime, UNIX_EPOCH},
};

use crate::ClusterKey;

/// The number of a cluster key: 0 for the key `init` made, one more per rotation.
pub type KeyEpoch = u32;

/// The key a rotation replaced, accepted until `grace_until_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviousKey {
    pub epoch: KeyEpoch,
    pub key: ClusterKey,
    /// End of the grace period, unix milliseconds: from then on the key is refused.
    pub grace_until_ms: u64,
}

/// The current key and its epoch, and the previous key while it may still be in its grace
/// period (an expired previous key is kept: it is what unseals nothing and costs nothing,
/// and it tells `status` when the grace ended).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyring {
    epoch: KeyEpoch,
    current: ClusterKey,
    previous: Option<PreviousKey>,
}

impl Keyring {
    /// A keyring of one key at `epoch` (0 for a cluster that never rotated).
    pub fn new(epoch: KeyEpoch, current: ClusterKey) -> Self {
        Self {
            epoch,
            current,
            previous: None,
        }
    }

    /// A keyring with `previous` accepted until its grace deadline. `None` if `previous` is
    /// not of an older epoch than `epoch`.
    pub fn with_previous(
        epoch: KeyEpoch,
        current: ClusterKey,
        previous: PreviousKey,
    ) -> Option<Self> {
        (previous.epoch < epoch).then_some(Self {
            epoch,
            current,
            previous: Some(previous),
        })
    }

    /// The epoch of the current key.
    pub fn epoch(&self) -> KeyEpoch {
        self.epoch
    }

    /// The current key.
    pub fn current(&self) -> &ClusterKey {
        &self.current
    }

    /// The previous key and its grace deadline, if this keyring was rotated into.
    pub fn previous(&self) -> Option<&PreviousKey> {
        self.previous.as_ref()
    }

    /// The key of `epoch`, if this keyring holds it (whether or not its grace is over).
    pub fn key(&self, epoch: KeyEpoch) -> Option<&ClusterKey> {
        if epoch == self.epoch {
            return Some(&self.current);
        }
        self.previous
            .as_ref()
            .filter(|p| p.epoch == epoch)
            .map(|p| &p.key)
    }

    /// Whether the previous key is still accepted at `now_ms` (unix milliseconds).
    pub fn in_grace(&self, now_ms: u64) -> bool {
        self.previous
            .as_ref()
            .is_some_and(|p| now_ms < p.grace_until_ms)
    }

    /// The key to initiate a handshake with at `now_ms`: the previous one during its grace
    /// period (every peer accepts it), else the current one.
    pub fn initiator_key(&self, now_ms: u64) -> &ClusterKey {
        match &self.previous {
            Some(p) if now_ms < p.grace_until_ms => &p.key,
            _ => &self.current,
        }
    }

    /// The keys a responder accepts at `now_ms`: the current one, and the previous one
    /// during its grace period.
    pub fn accepted_keys(&self, now_ms: u64) -> Vec<&ClusterKey> {
        let mut keys = vec![&self.current];
        if let Some(p) = self.previous.as_ref().filter(|p| now_ms < p.grace_until_ms) {
            keys.push(&p.key);
        }
        keys
    }

    /// The keyring after rotating to `next` at epoch `epoch`, the current key accepted until
    /// `grace_until_ms`. `None` unless `epoch` is newer than this keyring's.
    pub fn rotated(&self, epoch: KeyEpoch, next: ClusterKey, grace_until_ms: u64) -> Option<Self> {
        let previous = PreviousKey {
            epoch: self.epoch,
            key: self.current.clone(),
            grace_until_ms,
        };
        Self::with_previous(epoch, next, previous)
    }
}

impl From<ClusterKey> for Keyring {
    /// The keyring of a cluster that never rotated: `key` at epoch 0.
    fn from(key: ClusterKey) -> Self {
        Self::new(0, key)
    }
}

/// The keys a Noise handshake may use, read once per handshake: a single [`ClusterKey`], a
/// [`Keyring`] (by the system clock), or a [`KeyringHandle`] whose keyring can change while
/// a server runs.
pub trait NoiseKeys {
    /// The key to initiate with now.
    fn initiator_key(&self) -> ClusterKey;
    /// The keys a responder accepts now, at least one.
    fn accepted_keys(&self) -> Vec<ClusterKey>;
}

impl NoiseKeys for ClusterKey {
    fn initiator_key(&self) -> ClusterKey {
        self.clone()
    }

    fn accepted_keys(&self) -> Vec<ClusterKey> {
        vec![self.clone()]
    }
}

impl NoiseKeys for Keyring {
    fn initiator_key(&self) -> ClusterKey {
        Keyring::initiator_key(self, unix_now_ms()).clone()
    }

    fn accepted_keys(&self) -> Vec<ClusterKey> {
        Keyring::accepted_keys(self, unix_now_ms())
            .into_iter()
            .cloned()
            .collect()
    }
}

/// A keyring shared by everything of one process that connects or serves (cloning the handle
/// shares it): a rotation replaces it with [`KeyringHandle::set`], and the next handshake of
/// every server and client uses the new one.
#[derive(Clone, Debug)]
pub struct KeyringHandle(Arc<RwLock<Keyring>>);

impl KeyringHandle {
    /// A handle on `keyring`.
    pub fn new(keyring: Keyring) -> Self {
        Self(Arc::new(RwLock::new(keyring)))
    }

    /// A copy of the keyring as it is now.
    pub fn get(&self) -> Keyring {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replace the keyring: handshakes from now on use `keyring`.
    pub fn set(&self, keyring: Keyring) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = keyring;
    }
}

impl NoiseKeys for KeyringHandle {
    fn initiator_key(&self) -> ClusterKey {
        NoiseKeys::initiator_key(&self.get())
    }

    fn accepted_keys(&self) -> Vec<ClusterKey> {
        NoiseKeys::accepted_keys(&self.get())
    }
}

/// The system clock in unix milliseconds (0 before 1970).
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_decides_which_keys_are_used_and_accepted() {
        let (old, new) = (ClusterKey::generate(), ClusterKey::generate());
        let ring = Keyring::from(old.clone());
        assert_eq!(ring.epoch(), 0);
        assert_eq!(ring.initiator_key(0), &old);
        assert_eq!(ring.accepted_keys(0), [&old]);

        let rotated = ring.rotated(1, new.clone(), 1_000).unwrap();
        assert!(ring.rotated(0, new.clone(), 1_000).is_none(), "not newer");
        assert_eq!(rotated.epoch(), 1);
        assert!(rotated.in_grace(999) && !rotated.in_grace(1_000));
        assert_eq!(
            rotated.initiator_key(999),
            &old,
            "during grace: the old key"
        );
        assert_eq!(rotated.accepted_keys(999), [&new, &old]);
        assert_eq!(rotated.initiator_key(1_000), &new);
        assert_eq!(rotated.accepted_keys(1_000), [&new]);
        assert_eq!(rotated.key(0), Some(&old));
        assert_eq!(rotated.key(1), Some(&new));
        assert_eq!(rotated.key(2), None);
    }

    #[test]
    fn a_handle_shares_changes() {
        let handle = KeyringHandle::new(Keyring::from(ClusterKey::generate()));
        let other = handle.clone();
        let next = Keyring::new(3, ClusterKey::generate());
        handle.set(next.clone());
        assert_eq!(other.get(), next);
        assert_eq!(NoiseKeys::initiator_key(&other), *next.current());
    }
}
