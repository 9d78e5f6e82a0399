//! Cluster-key rotation (issue 14, item 2): the newest signed [`SignedRekey`] rides every
//! ping and pong, like the livetag. A newer epoch is taken only under the release key's
//! signature (else [`Output::Refused`] names its sender); taking one is
//! [`Output::Rekey`]: the daemon unseals the new key with its current one, stores the
//! keyring and switches its handshakes to it. The core itself never sees a key.

use smon_proto_types::{MAX_SEALED_KEY, SignedRekey};

use super::*;
use crate::signatures::{Refused, RefusedKind, Sender};

impl Core {
    /// The newest rotation this peer took (epoch 0, unsigned: none yet).
    pub fn rekey(&self) -> &SignedRekey {
        &self.state.rekey
    }

    /// A rotation from `from`: taken if of a newer epoch than ours and signed by the release
    /// key; a newer one that is not is refused (reported, not taken, not spread). Returns
    /// whether it was taken (`Ok(false)`: not newer).
    pub(crate) fn absorb_rekey(
        &mut self,
        from: Sender,
        rekey: SignedRekey,
        out: &mut Vec<Output>,
    ) -> Result<bool, Refused> {
        if !rekey.is_newer_than(&self.state.rekey) {
            return Ok(false);
        }
        let epoch = u64::from(rekey.epoch);
        if let Err(why) = self.rekey_signed(&rekey) {
            return Err(self.refuse(RefusedKind::Rekey, from, epoch, why, out));
        }
        self.state.rekey = rekey.clone();
        out.push(Output::Rekey(rekey));
        self.persist(out);
        Ok(true)
    }

    /// The operator's rotation (`smon-console rekey`): refused if unsigned, forged, or not of
    /// a newer epoch than this peer's.
    pub(crate) fn set_rekey(&mut self, rekey: SignedRekey, out: &mut Vec<Output>) {
        let epoch = u64::from(rekey.epoch);
        if let Ok(false) = self.absorb_rekey(Sender::Operator, rekey, out) {
            let why = format!(
                "epoch {epoch} is not newer than this peer's {}",
                self.state.rekey.epoch
            );
            self.refuse(RefusedKind::Rekey, Sender::Operator, epoch, why, out);
        }
    }

    /// Whether an install holding the key of `key_epoch` (its `cluster` file; `None`: epoch
    /// 0) is left behind at `now`: older than the newest rotation taken, whose grace ended.
    pub(crate) fn install_key_is_stale(&self, key_epoch: Option<u32>, now: Millis) -> bool {
        let newest = &self.state.rekey;
        newest.epoch > key_epoch.unwrap_or(0) && now >= newest.grace_until_ms
    }

    /// Is `rekey` signed by the release key, and of a plausible size?
    fn rekey_signed(&self, rekey: &SignedRekey) -> Result<(), String> {
        if rekey.sealed.len() > MAX_SEALED_KEY {
            return Err(format!("sealed key of {} bytes", rekey.sealed.len()));
        }
        self.check_signed(rekey.signed(&rekey.signing_bytes()))
    }
}
