//! Operator-signed control state (issue 14, item 1): every change an operator makes to the
//! control state (the livetag, the membership list, an application's desired state, cluster-wide
//! or on one machine) carries a signature by the cluster's release key, because every machine
//! holds K_E and K_E alone must not be enough to steer the cluster.
//!
//! The signature is an sshsig (PEM), made the way releases are ([`crate::release::sign_bytes`],
//! by the cluster directory's key or by the agent for the holder of the operator key), in the
//! namespace [`CONTROL_NAMESPACE`] over [`control_signing_bytes`]: the kind, the version and
//! the content. The membership list keeps its own namespace ([`crate::MEMBERSHIP_NAMESPACE`]),
//! whose signed blob already holds its version and content. An sshsig names the signer's public
//! key, so a verifier that trusts more than one key (a key rotation) can tell which one signed.

use serde::{Deserialize, Serialize};

use crate::{DesiredState, LiveTag, MachineId};

/// The sshsig namespace of signed control state (other than the membership list).
pub const CONTROL_NAMESPACE: &str = "smon-control";

/// The longest signature a control value may carry (an sshsig PEM of an RSA-16384 key is
/// about 3 KB); a longer one is refused before it is checked.
pub const MAX_CONTROL_SIGNATURE: usize = 8192;

/// What a signature says a value is: signed bytes of one kind never verify as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ControlKind {
    /// The cluster-wide livetag.
    Livetag,
    /// An application's cluster-wide desired state.
    AppDesired,
    /// An application's desired state on one machine.
    MachineAppDesired,
    /// A cluster-key rotation (`SignedRekey`).
    Rekey,
}

impl ControlKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ControlKind::Livetag => "livetag",
            ControlKind::AppDesired => "app-desired",
            ControlKind::MachineAppDesired => "machine-app-desired",
            ControlKind::Rekey => "rekey",
        }
    }
}

/// How every control state's signed bytes start.
pub const CONTROL_PREFIX: &[u8] = b"smon-control/1\0";

/// The bytes the release key signs: `smon-control/1 NUL kind NUL version (u64 BE) content`.
pub fn control_signing_bytes(kind: ControlKind, version: u64, content: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(32 + content.len());
    bytes.extend_from_slice(CONTROL_PREFIX);
    bytes.extend_from_slice(kind.as_str().as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&version.to_be_bytes());
    bytes.extend_from_slice(content);
    bytes
}

/// A piece of signed state as a verifier checks it: the namespace, the signed bytes and the
/// signature (empty: unsigned).
#[derive(Clone, Copy, Debug)]
pub struct SignedBytes<'a> {
    pub namespace: &'static str,
    pub bytes: &'a [u8],
    pub signature: &'a [u8],
}

/// The livetag with the operator's signature. Version 0 (the default, enabled) needs none:
/// it is where every cluster starts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedLiveTag {
    pub tag: LiveTag,
    /// sshsig (PEM) over [`SignedLiveTag::signing_bytes`]; empty if unsigned.
    pub signature: Vec<u8>,
}

impl SignedLiveTag {
    /// The bytes signed for `tag`: kind livetag, its version, and `enabled` as one byte.
    pub fn signing_bytes(tag: &LiveTag) -> Vec<u8> {
        control_signing_bytes(ControlKind::Livetag, tag.version, &[tag.enabled as u8])
    }
}

/// The bytes signed for an application's cluster-wide desired state: kind app-desired,
/// the revision, then the name and the state.
pub fn app_desired_signing_bytes(name: &str, desired: DesiredState, rev: u64) -> Vec<u8> {
    let content = format!("{name}\0{desired}");
    control_signing_bytes(ControlKind::AppDesired, rev, content.as_bytes())
}

/// An application's desired state on one machine (`app set NAME STATE --machine M`), signed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MachineAppDesired {
    pub machine: MachineId,
    pub name: String,
    pub desired: DesiredState,
    /// Newer than the cluster-wide setting's revision it overrides (milliseconds since the
    /// epoch when the console made it).
    pub rev: u64,
    /// sshsig (PEM) over [`MachineAppDesired::signing_bytes`].
    pub signature: Vec<u8>,
}

impl MachineAppDesired {
    /// Kind machine-app-desired, the revision, then the machine, the name and the state.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let content = format!("{}\0{}\0{}", self.machine, self.name, self.desired);
        control_signing_bytes(ControlKind::MachineAppDesired, self.rev, content.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_version_and_content_are_all_signed() {
        let tag = |enabled, version| SignedLiveTag::signing_bytes(&LiveTag { enabled, version });
        assert_ne!(tag(false, 3), tag(true, 3));
        assert_ne!(tag(false, 3), tag(false, 4));
        let app = app_desired_signing_bytes("web", DesiredState::Offline, 3);
        assert_ne!(
            app,
            app_desired_signing_bytes("web", DesiredState::Online, 3)
        );
        assert_ne!(
            app,
            app_desired_signing_bytes("web", DesiredState::Offline, 4)
        );
        assert_ne!(
            app,
            app_desired_signing_bytes("db", DesiredState::Offline, 3)
        );
        // One kind's bytes are never another's.
        assert_ne!(
            control_signing_bytes(ControlKind::Livetag, 1, b"x"),
            control_signing_bytes(ControlKind::AppDesired, 1, b"x")
        );
    }
}
