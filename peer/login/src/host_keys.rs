//! SSH host keys: the pins a signed membership carries, the known_hosts files, and the russh
//! handler that accepts a server's key only if it is the pinned one or, for a machine without
//! a pin, the one known_hosts holds (which learns new keys only when the cluster allows trust
//! on first use).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use russh::{
    client,
    keys::{
        PublicKeyOrCertificate,
        ssh_key::{Algorithm, HashAlg, PublicKey},
    },
};
use smon_proto::{MachineId, Membership};

use crate::Error;

/// The known_hosts file in a peer's directory (and the operator's pins in the cluster
/// directory, from which `init` and `membership set` take the membership's).
pub use smon_proto::files::KNOWN_HOSTS;

/// The host keys logins check: those of the newest membership signed by the release key.
#[derive(Clone, Debug, Default)]
pub struct Pins(Option<Arc<Membership>>);

impl Pins {
    /// Take the host keys `membership` pins (call again when it changes), if the release key
    /// `trusted` signed it: any holder of K_E can send a membership, only the operator may say
    /// what a machine's key is. An unsigned or older list leaves the pins as they are.
    pub fn update(&mut self, membership: Arc<Membership>, trusted: &PublicKey) {
        if !membership.has_pins() {
            return;
        }
        if let Err(why) = membership.verify_signature(trusted) {
            tracing::warn!(
                "membership version {} pins host keys but its signature {why}: its pins are ignored",
                membership.version
            );
            return;
        }
        if self
            .0
            .as_ref()
            .is_none_or(|p| p.version < membership.version)
        {
            self.0 = Some(membership);
        }
    }

    /// The key pinned for `machine`, if any.
    pub fn host_key(&self, machine: &MachineId) -> Option<PublicKey> {
        self.0.as_ref()?.host_key(machine)
    }
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The SHA-256 fingerprint, as `ssh-keygen -l` shows it.
pub fn host_key_fingerprint(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm().as_str(), fingerprint(key))
}

/// The russh handler of a login: checks the server's key, and keeps why it refused one.
pub(crate) struct HostKeys {
    pub host: String,
    pub port: u16,
    /// The key the membership pins, if it pins one.
    pub pinned: Option<PublicKey>,
    pub known_hosts: PathBuf,
    pub tofu: bool,
    /// Why a key was refused, for the error message.
    pub refused: Arc<Mutex<Option<String>>>,
}

impl HostKeys {
    /// Ok if `key` may be logged in to; else why not.
    fn verdict(&self, key: &PublicKey) -> Result<(), String> {
        if let Some(pin) = &self.pinned {
            if pin.key_data() == key.key_data() {
                return Ok(());
            }
            return Err(format!(
                "ITS HOST KEY CHANGED: it offered {}, the membership pins {}",
                fingerprint(key),
                fingerprint(pin)
            ));
        }
        let known_hosts = &self.known_hosts;
        match russh::keys::check_known_hosts_path(&self.host, self.port, key, known_hosts) {
            Ok(true) => Ok(()),
            Ok(false) if self.tofu => russh::keys::known_hosts::learn_known_hosts_path(
                &self.host,
                self.port,
                key,
                known_hosts,
            )
            .map_err(|e| format!("recording its host key: {e}")),
            Ok(false) => Err(format!(
                "its host key ({}) is pinned neither by the membership nor in {} (pin it with \
                 `smon-console membership set --scan-host-keys`, or init the cluster with \
                 --ssh-trust-on-first-use)",
                fingerprint(key),
                known_hosts.display()
            )),
            Err(russh::keys::Error::KeyChanged { line }) => Err(format!(
                "ITS HOST KEY CHANGED (line {line} of {} has another one)",
                known_hosts.display()
            )),
            Err(e) => Err(format!("{}: {e}", known_hosts.display())),
        }
    }
}

impl client::Handler for HostKeys {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.verdict(key),
            _ => Err("host certificates are not supported".into()),
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(reason) => {
                *self.refused.lock().expect("refused") = Some(reason);
                Ok(false)
            }
        }
    }
}

/// The default algorithms, the pinned key's first: as OpenSSH does with known_hosts, so that a
/// server with several host keys shows the one that is pinned.
pub(crate) fn preferring(pinned: Option<&PublicKey>) -> russh::Preferred {
    let default = russh::Preferred::default();
    let Some(pin) = pinned else {
        return default;
    };
    let matches = |a: &Algorithm| match (a, pin.algorithm()) {
        (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
        (a, b) => *a == b,
    };
    let (mut first, rest): (Vec<Algorithm>, Vec<Algorithm>) =
        default.key.iter().cloned().partition(|a| matches(a));
    first.extend(rest);
    russh::Preferred {
        key: first.into(),
        ..default
    }
}

/// The key `known_hosts` holds for `host:port` (ed25519 first, when it holds several).
pub fn known_host_key(known_hosts: &Path, host: &str, port: u16) -> Option<PublicKey> {
    if !known_hosts.exists() {
        return None;
    }
    let keys = russh::keys::known_hosts::known_host_keys_path(host, port, known_hosts).ok()?;
    let ed25519 = keys
        .iter()
        .find(|(_, k)| k.algorithm() == Algorithm::Ed25519)
        .map(|(_, k)| k.clone());
    ed25519.or_else(|| keys.into_iter().next().map(|(_, k)| k))
}

/// Append `key` for `host:port` to `known_hosts`.
pub fn record_host_key(
    known_hosts: &Path,
    host: &str,
    port: u16,
    key: &PublicKey,
) -> Result<(), Error> {
    russh::keys::known_hosts::learn_known_hosts_path(host, port, key, known_hosts).map_err(
        |source| Error::KnownHosts {
            path: known_hosts.to_owned(),
            source: Box::new(source),
        },
    )
}
