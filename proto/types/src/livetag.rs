//! `livetag`: the cluster-wide on/off switch of self-management, spread epidemically.

use serde::{Deserialize, Serialize};

/// `<enabled, version>`; the higher version wins everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LiveTag {
    pub enabled: bool,
    pub version: u64,
}

impl Default for LiveTag {
    fn default() -> Self {
        Self {
            enabled: true,
            version: 0,
        }
    }
}

impl LiveTag {
    /// True when `other` should replace `self`. At equal versions "disabled" wins, so two
    /// operators flipping the flag at once can never leave the cluster split.
    pub fn is_superseded_by(&self, other: &LiveTag) -> bool {
        other.version > self.version
            || (other.version == self.version && self.enabled && !other.enabled)
    }

    /// Keep the newer of the two; returns whether `self` changed.
    pub fn merge(&mut self, other: &LiveTag) -> bool {
        if self.is_superseded_by(other) {
            *self = *other;
            true
        } else {
            false
        }
    }

    /// The tag an operator sets: one version above what it knows.
    pub fn flipped_to(&self, enabled: bool) -> LiveTag {
        LiveTag {
            enabled,
            version: self.version + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_wins_and_disabled_breaks_ties() {
        let mut t = LiveTag::default();
        assert!(t.merge(&LiveTag {
            enabled: false,
            version: 0
        }));
        assert!(!t.merge(&LiveTag {
            enabled: true,
            version: 0
        }));
        assert!(t.merge(&LiveTag {
            enabled: true,
            version: 1
        }));
        assert!(!t.merge(&LiveTag {
            enabled: false,
            version: 0
        }));
        assert_eq!(
            t,
            LiveTag {
                enabled: true,
                version: 1
            }
        );
    }
}
