//! Pinning SSH host keys into the membership: the operator's pins live in DIR/known_hosts
//! (given to `init --known-hosts`, or fetched with `--scan-host-keys`), and every membership
//! the console makes carries them, so that each peer knows the key of every machine it may log
//! in to, including machines added after it was deployed.

use std::path::Path;

use anyhow::{Context, bail};
use smon_peer::daemon::ssh;
use smon_proto::{MachineId, Membership};

/// How to treat SSH machines that DIR/known_hosts does not pin.
#[derive(Clone, Copy, Debug, Default)]
pub struct PinPolicy {
    /// Fetch their keys now (printing each fingerprint) and record them in known_hosts.
    pub scan: bool,
    /// Leave them unpinned: peers trust them on first use.
    pub trust_on_first_use: bool,
}

/// `membership` with every SSH machine's pinned host key from `known_hosts`. `how_to_pin`
/// says, in the error about unpinned machines, where the operator's pins go.
pub async fn pin(
    known_hosts: &Path,
    membership: Membership,
    policy: PinPolicy,
    how_to_pin: &str,
) -> anyhow::Result<Membership> {
    let ssh_machines: Vec<(MachineId, String, u16)> = membership
        .machines()
        .iter()
        .filter_map(|m| match m {
            MachineId::Ssh { host, port, .. } => {
                Some((m.clone(), host.clone(), port.unwrap_or(22)))
            }
            MachineId::Local { .. } => None,
        })
        .collect();
    if policy.scan {
        let mut seen = std::collections::HashSet::new();
        for (_, host, port) in &ssh_machines {
            if !seen.insert((host.clone(), *port))
                || ssh::known_host_key(known_hosts, host, *port).is_some()
            {
                continue;
            }
            let key = ssh::scan_host_key(host, *port).await.with_context(|| {
                format!("--scan-host-keys: fetching the host key of {host}:{port}")
            })?;
            ssh::record_host_key(known_hosts, host, *port, &key)?;
            println!("pinned {host}:{port} {}", ssh::host_key_fingerprint(&key));
        }
    }
    let pinned = membership.with_host_keys(|m| {
        let (_, host, port) = ssh_machines.iter().find(|(id, _, _)| id == m)?;
        ssh::known_host_key(known_hosts, host, *port)
    });
    let unpinned: Vec<String> = pinned.unpinned().map(|m| m.to_string()).collect();
    if !unpinned.is_empty() && !policy.trust_on_first_use {
        bail!(
            "{} SSH machine(s) have no pinned host key ({}{}): {how_to_pin}, pass \
             --scan-host-keys to fetch and pin them now, or init the cluster with \
             --ssh-trust-on-first-use",
            unpinned.len(),
            unpinned[..unpinned.len().min(3)].join(", "),
            if unpinned.len() > 3 { ", …" } else { "" },
        );
    }
    Ok(pinned)
}
