//! A key rotation the core took (`Output::Rekey`, issue 14 item 2): the new key is unsealed
//! with this peer's current key, the keyring stored (state.db, one transaction) and then
//! switched in the handle every server and client of this process reads per handshake.

use smon_login::installed_cluster::InstalledCluster;
use smon_proto::{SignedRekey, rekey_seal};

use super::{DaemonError, actor::Actor, store::keys};

impl Actor {
    /// Take `rekey`'s key. A rotation this peer's keyring is already at or past (a machine
    /// deployed with the new keyring) changes nothing; one that does not follow it (this
    /// peer missed a rotation) or does not unseal is logged: such a peer is refused once the
    /// grace period ends, and recovered by the deployment path with the current seed.
    pub(super) fn adopt_rekey(&mut self, rekey: &SignedRekey) -> Result<(), DaemonError> {
        let keyring = self.key.get();
        if keyring.epoch() >= rekey.epoch {
            return Ok(());
        }
        let next = match rekey_seal::unseal(&keyring, rekey) {
            Ok(next) => next,
            Err(why) => {
                tracing::warn!("key rotation to epoch {} not taken: {why}", rekey.epoch);
                return Ok(());
            }
        };
        self.store.put_all(&[(keys::CLUSTER_KEY, next.encode())])?;
        self.key.set(next);
        // What the probes of later logins read: an install left on an older key after the
        // grace is deployed over rather than restarted.
        InstalledCluster::write(&self.root, &self.config, &self.me, rekey.epoch)?;
        tracing::info!(
            "cluster key epoch {} taken; epoch {} accepted until {} (unix ms)",
            rekey.epoch,
            keyring.epoch(),
            rekey.grace_until_ms
        );
        Ok(())
    }
}
