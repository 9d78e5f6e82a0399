//! `smon-console rekey [--grace DURATION]`: rotate the cluster key K_E (issue 14, item 2).
//! A new key is sealed under the current one, signed with the cluster's release key like
//! the livetag, and handed to one peer; it spreads with every ping and pong, each peer
//! accepting both keys until the grace period ends and only the new one after.

use std::time::Duration;

use anyhow::{Context, bail};
use smon_proto::{ClusterKey, ControlAction, keyring::unix_now_ms, rekey_seal};

use crate::{cluster_dir::ClusterDir, connect, signing};

/// Rotate the key of `dir`'s cluster, both keys accepted for `grace` from now. The
/// directory's keyring is written first (during the grace period the console still
/// initiates with the old key) and put back if no peer takes the rotation.
pub async fn rekey(dir: &ClusterDir, grace: Duration) -> anyhow::Result<()> {
    let keyring = dir.key.get();
    let now = unix_now_ms();
    if let Some(previous) = keyring.previous().filter(|_| keyring.in_grace(now)) {
        bail!(
            "the rotation to epoch {} is still in its grace period (another {}): a peer that \
             has not taken it yet could not read the next one",
            keyring.epoch(),
            humantime::format_duration(Duration::from_secs(
                (previous.grace_until_ms - now).div_ceil(1000)
            ))
        );
    }
    let grace_until_ms = now + u64::try_from(grace.as_millis()).context("--grace")?;
    let mut rekey = rekey_seal::seal(&keyring, &ClusterKey::generate(), grace_until_ms);
    rekey.signature = signing::sign_control(dir, &rekey.signing_bytes()).await?;
    let rotated = rekey_seal::unseal(&keyring, &rekey).map_err(anyhow::Error::msg)?;
    let path = dir.files().cluster_key();
    rotated.save(&path)?;
    let epoch = rekey.epoch;
    match connect::control(dir, ControlAction::Rekey { rekey }).await {
        Ok(answer) => {
            dir.key.set(rotated);
            println!(
                "{answer}: epoch {epoch}; epoch {} accepted for another {}",
                keyring.epoch(),
                humantime::format_duration(grace)
            );
            Ok(())
        }
        Err(e) => {
            keyring
                .save(&path)
                .context("putting the previous keyring back")?;
            Err(e.context("no peer took the rotation; the cluster key is unchanged"))
        }
    }
}
