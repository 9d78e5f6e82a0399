//! The login as a value: everything a process needs to log in to the cluster's machines.

use std::{path::PathBuf, sync::Arc};

use russh::keys::ssh_key::PublicKey;
use smon_proto::{ClusterConfig, KeyringHandle, MachineId, Membership};

use crate::host_keys::Pins;

/// Who logs in to SSH machines, towards the authentication agent.
#[derive(Clone, Debug)]
pub struct SshContext {
    /// The cluster key, for the Noise connection to the agent.
    pub key: KeyringHandle,
    /// Who asks the agent (audited; per-peer rate limits).
    pub requester: MachineId,
    /// Server keys of machines the membership does not pin (OpenSSH known_hosts format):
    /// those learned on first use, when the cluster allows it.
    pub known_hosts: PathBuf,
}

/// Everything a process needs to log in to the cluster's machines: the cluster's settings
/// (local machines' directories, the agent's address, trust on first use), who asks the agent,
/// and the host keys pinned by the newest signed membership. Cheap to clone: a task that logs
/// in takes a copy, and later pin updates do not reach logins already under way.
#[derive(Clone, Debug)]
pub struct Login {
    config: Arc<ClusterConfig>,
    ssh: Arc<SshContext>,
    pins: Pins,
}

impl Login {
    /// A login with no pins yet: SSH machines are checked against `ssh.known_hosts` alone
    /// until [`Login::pin_host_keys`].
    pub fn new(config: ClusterConfig, ssh: SshContext) -> Self {
        Self {
            config: Arc::new(config),
            ssh: Arc::new(ssh),
            pins: Pins::default(),
        }
    }

    /// Check server keys against the host keys `membership` pins from now on, if the release
    /// key `trusted` signed it (see [`Pins::update`]).
    pub fn pin_host_keys(&mut self, membership: Arc<Membership>, trusted: &PublicKey) {
        self.pins.update(membership, trusted);
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub fn ssh(&self) -> &SshContext {
        &self.ssh
    }

    pub fn pins(&self) -> &Pins {
        &self.pins
    }
}
