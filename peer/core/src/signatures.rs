//! Who may change the control state (issue 14, item 1): only what the cluster's release key
//! signed. The check is injected ([`SignatureCheck`]): the daemon verifies sshsig signatures
//! with the trusted ed25519 release key, the simulator models a signature as a flag
//! ([`FlagSignatures`]). Either way the core takes the same path: a newer value is verified
//! before it is adopted, and a refused one is neither adopted nor spread, and is reported
//! once as [`Output::Refused`] naming its sender.

use std::fmt;

use smon_proto_types::{MAX_CONTROL_SIGNATURE, MEMBERSHIP_NAMESPACE, SignedBytes, SignedLiveTag};

use super::*;

/// Checks a release-key signature of control state.
pub trait SignatureCheck: Send + Sync + fmt::Debug {
    /// `Ok` when `signed.signature` is the cluster's release key's signature of
    /// `signed.bytes` in `signed.namespace`; otherwise why not, in a few words.
    fn check(&self, signed: SignedBytes<'_>) -> Result<(), String>;
}

/// The simulator's signatures: data, not cryptography. A value is signed when its signature
/// is [`FlagSignatures::SIGNED`]; anything else (empty, forged) is refused.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlagSignatures;

impl FlagSignatures {
    /// The signature of every value the modelled operator signs.
    pub const SIGNED: &'static [u8] = b"signed";
}

impl SignatureCheck for FlagSignatures {
    fn check(&self, signed: SignedBytes<'_>) -> Result<(), String> {
        match signed.signature {
            [] => Err("not signed".into()),
            s if s == Self::SIGNED => Ok(()),
            _ => Err("forged signature".into()),
        }
    }
}

/// What kind of control state was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusedKind {
    Livetag,
    Membership,
    AppDesired,
    MachineAppDesired,
    Rekey,
}

impl fmt::Display for RefusedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefusedKind::Livetag => "livetag",
            RefusedKind::Membership => "membership",
            RefusedKind::AppDesired => "application desired state",
            RefusedKind::MachineAppDesired => "machine's application desired state",
            RefusedKind::Rekey => "key rotation",
        })
    }
}

/// Who sent refused control state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sender {
    /// An operator's action (the console's `control` or `set_app_status` call).
    Operator,
    /// A peer, as the message names it (a ping's or pong's `from`, the machine called).
    Peer(MachineId),
    /// A call that names no sender (`exchange_livetag`, `exchange_app`'s caller): the daemon
    /// adds the connection's address.
    Unnamed,
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sender::Operator => f.write_str("the console"),
            Sender::Peer(m) => write!(f, "{m}"),
            Sender::Unnamed => f.write_str("a caller"),
        }
    }
}

/// Control state refused for its signature: what, from whom, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub kind: RefusedKind,
    pub from: Sender,
    /// The version refused (livetag or membership version, desired-state revision, key
    /// epoch).
    pub version: u64,
    pub why: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refused {} version {} from {}: {}",
            self.kind, self.version, self.from, self.why
        )
    }
}

impl Core {
    pub(crate) fn check_signed(&self, signed: SignedBytes<'_>) -> Result<(), String> {
        if signed.signature.is_empty() {
            return Err("not signed".into());
        }
        if signed.signature.len() > MAX_CONTROL_SIGNATURE {
            return Err(format!("signature of {} bytes", signed.signature.len()));
        }
        self.signatures.check(signed)
    }

    /// Report a refusal (the daemon logs it, the simulator counts it); `Err` for the caller.
    pub(crate) fn refuse(
        &mut self,
        kind: RefusedKind,
        from: Sender,
        version: u64,
        why: String,
        out: &mut Vec<Output>,
    ) -> Refused {
        let refused = Refused {
            kind,
            from,
            version,
            why,
        };
        out.push(Output::Refused(refused.clone()));
        refused
    }

    /// Is `tag` signed by the release key? Version 0 is every cluster's start and needs none.
    pub(crate) fn livetag_signed(&self, tag: &SignedLiveTag) -> Result<(), String> {
        if tag.tag.version == 0 && tag.tag.enabled {
            return Ok(());
        }
        self.check_signed(SignedBytes {
            namespace: smon_proto_types::CONTROL_NAMESPACE,
            bytes: &SignedLiveTag::signing_bytes(&tag.tag),
            signature: &tag.signature,
        })
    }

    /// Is the list signed as a whole (machines, pins, version) by the release key?
    pub(crate) fn membership_signed(&self, list: &Membership) -> Result<(), String> {
        self.check_signed(SignedBytes {
            namespace: MEMBERSHIP_NAMESPACE,
            bytes: &list.signing_bytes(),
            signature: list.signature(),
        })
    }

    /// Is the desired state of `app` signed? Revision 0 is the package's `default_state`,
    /// signed with the package itself.
    pub(crate) fn app_desired_signed(&self, app: &AppDecl) -> Result<(), String> {
        if app.desired_rev == 0 {
            return Ok(());
        }
        self.check_signed(SignedBytes {
            namespace: smon_proto_types::CONTROL_NAMESPACE,
            bytes: &app.desired_signing_bytes(),
            signature: &app.desired_sig,
        })
    }

    /// `set_app_status`: an application's desired state on this machine only. `Ok` when it
    /// names this machine, is newer than the cluster-wide setting and is signed; the daemon
    /// then hands it to the application's supervisor.
    pub fn check_machine_app_desired(
        &mut self,
        desired: &smon_proto_types::MachineAppDesired,
        out: &mut Vec<Output>,
    ) -> Result<(), Refused> {
        let kind = RefusedKind::MachineAppDesired;
        let why = if desired.machine != self.me {
            Some(format!("it is for {}, not {}", desired.machine, self.me))
        } else {
            self.check_signed(SignedBytes {
                namespace: smon_proto_types::CONTROL_NAMESPACE,
                bytes: &desired.signing_bytes(),
                signature: &desired.signature,
            })
            .err()
        };
        match why {
            Some(why) => Err(self.refuse(kind, Sender::Operator, desired.rev, why, out)),
            None => Ok(()),
        }
    }
}
