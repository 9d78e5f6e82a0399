//! Pinning SSH host keys into the membership: the operator's pins live in DIR/known_hosts
//! (given to `init --known-hosts`, or fetched with `--scan-host-keys`), and every membership
//! the console makes carries them, so that each peer knows the key of every machine it may log
//! in to, including machines added after it was deployed.

use std::{collections::HashMap, path::Path};

use anyhow::{Context, bail};
use smon_login::host_keys as ssh_keys;
use smon_proto::release::Algorithm;
use smon_proto::{MachineId, Membership, ReleasePublicKey as PublicKey};

/// How to treat SSH machines that DIR/known_hosts does not pin.
#[derive(Clone, Copy, Debug, Default)]
pub struct PinPolicy {
    /// Fetch their keys now (printing each fingerprint) and record them in known_hosts.
    pub scan: bool,
    /// Leave them unpinned: peers trust them on first use.
    pub trust_on_first_use: bool,
}

/// Check the known_hosts file a user gives (`init --known-hosts`), so that its errors name
/// that file rather than the cluster directory's copy: its text, byte-order mark dropped.
pub fn check_known_hosts(path: &Path) -> anyhow::Result<String> {
    KnownHosts::read(path)?;
    Ok(smon_proto::read_text(path)?)
}

/// The operator's known_hosts, read once: plain `host` and `[host]:port` entries by address;
/// hashed entries (`ssh-keyscan -H`) are looked up one by one when there are any.
struct KnownHosts {
    path: std::path::PathBuf,
    plain: HashMap<(String, u16), Vec<(usize, PublicKey)>>,
    hashed: bool,
}

impl KnownHosts {
    fn read(path: &Path) -> anyhow::Result<Self> {
        let mut known = KnownHosts {
            path: path.to_owned(),
            plain: HashMap::new(),
            hashed: false,
        };
        let text = match smon_proto::read_text(path) {
            Ok(text) => text,
            Err(smon_proto::ProtoError::File { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(known);
            }
            Err(e) => return Err(e.into()),
        };
        for (index, line) in text.lines().enumerate() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Blank lines, comments, and @cert-authority/@revoked markers pin nothing here.
            if fields.is_empty() || fields[0].starts_with('#') || fields[0].starts_with('@') {
                continue;
            }
            let at = || format!("{}:{}", path.display(), index + 1);
            let key = match fields.get(1..3) {
                None => bail!(
                    "{}: not a known_hosts entry: expected HOSTS KEYTYPE KEY",
                    at()
                ),
                Some(f) => PublicKey::from_openssh(&f.join(" "))
                    .map_err(|e| anyhow::anyhow!("{}: bad {} key: {e}", at(), f[0]))?,
            };
            for pattern in fields[0].split(',') {
                if pattern.starts_with("|1|") {
                    known.hashed = true;
                    continue;
                }
                // Wildcards and negations name no one machine: not pins.
                if pattern.contains(['*', '?', '!']) {
                    continue;
                }
                let (host, port) = match pattern.strip_prefix('[').and_then(|p| p.split_once("]:"))
                {
                    Some((host, port)) => (
                        host,
                        port.parse().map_err(|_| {
                            anyhow::anyhow!("{}: bad port {port:?} in {pattern:?} (1-65535)", at())
                        })?,
                    ),
                    None => (pattern, smon_proto::DEFAULT_SSH_PORT),
                };
                // As OpenSSH matches them: host names case-insensitively; and as machines
                // are keyed, so that `Box.` pins `box` and `[0:0::1]` pins `[::1]`.
                let host = smon_proto::canonical_host(host).unwrap_or_else(|_| host.to_owned());
                known
                    .plain
                    .entry((host, port))
                    .or_default()
                    .push((index + 1, key.clone()));
            }
        }
        Ok(known)
    }

    /// The pin for `host:port`: its ed25519 key if it has one, else its only key. Two
    /// different keys of one kind for one machine are an error: which is the stale one?
    fn pin(&self, host: &str, port: u16) -> anyhow::Result<Option<PublicKey>> {
        let Some(keys) = self.plain.get(&(host.to_owned(), port)) else {
            return Ok(if self.hashed {
                ssh_keys::known_host_key(&self.path, host, port)
            } else {
                None
            });
        };
        let ed25519: Vec<_> = keys
            .iter()
            .filter(|(_, k)| k.algorithm() == Algorithm::Ed25519)
            .collect();
        let candidates = if ed25519.is_empty() {
            keys.iter().collect()
        } else {
            ed25519
        };
        let (first_line, first) = candidates[0];
        if let Some((line, _)) = candidates
            .iter()
            .find(|(_, k)| k.algorithm() == first.algorithm() && k.key_data() != first.key_data())
        {
            bail!(
                "{}: {host}:{port} has two different {} keys (lines {first_line} and {line}): \
                 remove the stale one",
                self.path.display(),
                first.algorithm().as_str()
            );
        }
        Ok(Some(first.clone()))
    }

    fn add(&mut self, host: &str, port: u16, key: PublicKey) -> anyhow::Result<()> {
        ssh_keys::record_host_key(&self.path, host, port, &key)?;
        self.plain
            .entry((host.to_owned(), port))
            .or_default()
            .push((0, key));
        Ok(())
    }
}

/// `membership` with every SSH machine's pinned host key from `known_hosts`. `how_to_pin`
/// says, in the error about unpinned machines, what the operator can do about them.
pub async fn pin(
    known_hosts: &Path,
    membership: Membership,
    policy: PinPolicy,
    how_to_pin: &str,
) -> anyhow::Result<Membership> {
    let mut known = KnownHosts::read(known_hosts)?;
    let mut pins: HashMap<MachineId, PublicKey> = HashMap::new();
    for machine in membership.machines() {
        let MachineId::Ssh { host, port, .. } = machine else {
            continue;
        };
        let port = port.unwrap_or(smon_proto::DEFAULT_SSH_PORT);
        let key = match known.pin(host, port)? {
            Some(key) => Some(key),
            None if policy.scan => {
                let key = smon_login::ssh::scan_host_key(host, port)
                    .await
                    .with_context(|| {
                        format!("--scan-host-keys: fetching the host key of {host}:{port}")
                    })?;
                known.add(host, port, key.clone())?;
                println!(
                    "pinned {host}:{port} {}",
                    ssh_keys::host_key_fingerprint(&key)
                );
                Some(key)
            }
            None => None,
        };
        if let Some(key) = key {
            pins.insert(machine.clone(), key);
        }
    }
    let pinned = membership.with_host_keys(|m| pins.get(m).cloned());
    let unpinned: Vec<String> = pinned.unpinned().map(|m| m.to_string()).collect();
    if !unpinned.is_empty() && !policy.trust_on_first_use {
        bail!(
            "{} SSH machine(s) have no pinned host key ({}{}): {how_to_pin}, or pass \
             --scan-host-keys to fetch and pin them now",
            unpinned.len(),
            unpinned[..unpinned.len().min(3)].join(", "),
            if unpinned.len() > 3 { ", …" } else { "" },
        );
    }
    Ok(pinned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PublicKey {
        smon_proto::release::generate_release_key()
            .public_key()
            .clone()
    }

    fn line(hosts: &str, key: &PublicKey) -> String {
        format!("{hosts} {}\n", key.to_openssh().unwrap())
    }

    #[test]
    fn known_hosts_entries_become_pins_and_doubtful_ones_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let (a, b, c) = (key(), key(), key());
        let text = format!(
            "# a comment\n\n{}{}{}",
            line("h1,[h2]:2222", &a),
            line("*.example.org", &b),
            line("[h3]:22", &c),
        );
        std::fs::write(&path, text).unwrap();
        let known = KnownHosts::read(&path).unwrap();
        assert_eq!(known.pin("h1", 22).unwrap(), Some(a.clone()));
        assert_eq!(known.pin("h2", 2222).unwrap(), Some(a.clone()));
        assert_eq!(known.pin("h2", 22).unwrap(), None);
        assert_eq!(
            known.pin("x.example.org", 22).unwrap(),
            None,
            "wildcards pin nothing"
        );
        assert_eq!(known.pin("h3", 22).unwrap(), Some(c));

        // Issue 15 kind 5: patterns match as OpenSSH matches them (host case-insensitive,
        // `[host]:port` for other ports), and spellings of one host pin one machine.
        let d = key();
        let text = line("BOX2,[Box4.]:2222,[0:0:0:0:0:0:0:1]:2200", &d);
        std::fs::write(&path, text).unwrap();
        let known = KnownHosts::read(&path).unwrap();
        let pinned = |entry: &str| {
            let Ok(MachineId::Ssh { host, port, .. }) = entry.parse::<MachineId>() else {
                panic!("{entry}");
            };
            known.pin(&host, port.unwrap()).unwrap()
        };
        for entry in ["alice@box2", "alice@Box2.:22", "u@box4:2222", "[::1]:2200"] {
            assert_eq!(pinned(entry), Some(d.clone()), "{entry}");
        }
        for entry in ["box2:2222", "box4", "[::1]"] {
            assert_eq!(pinned(entry), None, "{entry}");
        }

        // The same key twice is fine; two different ones for one machine are not.
        std::fs::write(&path, line("h1", &a) + &line("h1", &a) + &line("h1", &b)).unwrap();
        let err = KnownHosts::read(&path).unwrap().pin("h1", 22).unwrap_err();
        assert!(
            err.to_string()
                .contains("two different ssh-ed25519 keys (lines 1 and 3)"),
            "{err}"
        );

        std::fs::write(&path, line("h1", &a) + "h2 ssh-ed25519 garbage\n").unwrap();
        let err = KnownHosts::read(&path).err().unwrap().to_string();
        assert!(
            err.contains("known_hosts:2: bad ssh-ed25519 key: "),
            "{err}"
        );
    }
}
