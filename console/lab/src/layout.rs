//! A lab's record (DIR/lab.json) and every name and path derived from it.
//!
//! Everything the lab makes on the host is named after its run id, so that `down` can find
//! and remove it from the record alone, even when the lab crashed half-way through `up`:
//!
//! ```text
//! bridge     sl<id>b                 (≤ 15 characters, Linux's limit)
//! veth       sl<id>h<host>           host side, on the bridge; eth0 in the namespace
//! netns      smon-lab-<id>-<host>
//! user       sl<id>m<host>u<account>
//! cgroup     <cgroup2>/smon-lab-<id>/m<host>
//! DIR/lab.json, DIR/id_ed25519{,.pub}, DIR/authorized_keys, DIR/machines, DIR/known_hosts
//! DIR/m<host>/{ssh_host_ed25519_key{,.pub}, sshd_config, sshd.pid, sshd.log, home/<user>/}
//! ```
//!
//! Addresses: the lab's /24 of 198.18.0.0/15; the host's end of the bridge is `.1`, host
//! `h` (1-based) is `.(h + 1)`.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};

/// At most this many hosts in one lab: they share one /24 with the host's end of the bridge.
pub const MAX_HOSTS: usize = 253;
/// At most this many accounts per host.
pub const MAX_ACCOUNTS: usize = 16;

/// What `up` recorded about a lab: enough to act on it and to remove it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LabState {
    /// The run id: 6 characters of [a-z0-9].
    pub id: String,
    pub dir: PathBuf,
    /// Lab machines (network namespaces with their own sshd).
    pub hosts: usize,
    /// SSH accounts per host; each is one line of the machines file.
    pub users_per_machine: usize,
    /// The network address of the lab's /24, once chosen.
    pub subnet: Option<Ipv4Addr>,
    /// The lab's cgroup v2 directory, when the host has a writable cgroup2 mount.
    pub cgroup: Option<PathBuf>,
    /// The partition in force: groups of host indices.
    #[serde(default)]
    pub partition: Vec<Vec<usize>>,
    /// Rate limits in force, by host index (tc's RATE words).
    #[serde(default)]
    pub slow: BTreeMap<usize, String>,
    /// `up` finished: every machine is made and its sshd listens.
    #[serde(default)]
    pub ready: bool,
}

impl LabState {
    pub fn new(id: String, dir: PathBuf, hosts: usize, users_per_machine: usize) -> Self {
        LabState {
            id,
            dir,
            hosts,
            users_per_machine,
            subnet: None,
            cgroup: None,
            partition: Vec::new(),
            slow: BTreeMap::new(),
            ready: false,
        }
    }

    /// A fresh run id.
    pub fn random_id() -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..6)
            .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
            .collect()
    }

    pub fn record_path(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }

    /// Read DIR/lab.json.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = Self::record_path(dir);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LabError::NoLab {
                    path: dir.to_owned(),
                });
            }
            Err(e) => return Err(LabError::io(&path)(e)),
        };
        let state: LabState = serde_json::from_slice(&data).map_err(|e| LabError::State {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let id_ok = state.id.len() == 6
            && state
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !id_ok || state.hosts > MAX_HOSTS || state.users_per_machine > MAX_ACCOUNTS {
            return Err(LabError::State {
                path,
                reason: "not a record this lab wrote (id, hosts or accounts out of range)".into(),
            });
        }
        Ok(state)
    }

    /// Write DIR/lab.json atomically (a crash leaves the old record or the new one).
    pub fn save(&self) -> Result<()> {
        let path = Self::record_path(&self.dir);
        let tmp = path.with_extension("json.tmp");
        let data = serde_json::to_vec_pretty(self).expect("lab state serializes");
        std::fs::write(&tmp, data).map_err(LabError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(LabError::io(&path))
    }

    pub fn bridge(&self) -> String {
        format!("sl{}b", self.id)
    }

    pub fn veth(&self, host: usize) -> String {
        format!("sl{}h{host}", self.id)
    }

    pub fn netns(&self, host: usize) -> String {
        format!("smon-lab-{}-{host}", self.id)
    }

    pub fn user(&self, host: usize, account: usize) -> String {
        format!("sl{}m{host}u{account}", self.id)
    }

    /// Every user of the lab, host by host.
    pub fn users(&self) -> Vec<String> {
        self.host_indices()
            .flat_map(|h| (1..=self.users_per_machine).map(move |a| (h, a)))
            .map(|(h, a)| self.user(h, a))
            .collect()
    }

    pub fn host_indices(&self) -> std::ops::RangeInclusive<usize> {
        1..=self.hosts
    }

    pub fn host_dir(&self, host: usize) -> PathBuf {
        self.dir.join(format!("m{host}"))
    }

    pub fn home(&self, host: usize, account: usize) -> PathBuf {
        self.host_dir(host)
            .join("home")
            .join(self.user(host, account))
    }

    pub fn host_cgroup(&self, host: usize) -> Option<PathBuf> {
        self.cgroup.as_ref().map(|c| c.join(format!("m{host}")))
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    pub fn machines_file(&self) -> PathBuf {
        self.dir.join("machines")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    fn subnet_or_err(&self) -> Ipv4Addr {
        self.subnet
            .expect("the lab's subnet is chosen before any address is used")
    }

    /// The host's end of the bridge (`.1`): where peers reach the agent.
    pub fn host_address(&self) -> Ipv4Addr {
        offset(self.subnet_or_err(), 1)
    }

    /// Lab machine `host`'s address.
    pub fn address(&self, host: usize) -> Ipv4Addr {
        offset(self.subnet_or_err(), host as u32 + 1)
    }

    /// Machines-file lines (`user@address`), in order: host 1's accounts, then host 2's…
    pub fn entries(&self) -> Vec<String> {
        self.host_indices()
            .flat_map(|h| (1..=self.users_per_machine).map(move |a| (h, a)))
            .map(|(h, a)| format!("{}@{}", self.user(h, a), self.address(h)))
            .collect()
    }

    /// The host and account of machines-file line `entry` (1-based).
    pub fn locate(&self, entry: usize) -> Result<(usize, usize)> {
        let count = self.hosts * self.users_per_machine;
        if entry == 0 || entry > count {
            return Err(LabError::BadIndex {
                index: entry,
                count,
            });
        }
        Ok((
            (entry - 1) / self.users_per_machine + 1,
            (entry - 1) % self.users_per_machine + 1,
        ))
    }
}

fn offset(base: Ipv4Addr, by: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base) + by)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab(hosts: usize, k: usize) -> LabState {
        let mut s = LabState::new("ab12cd".into(), "/x".into(), hosts, k);
        s.subnet = Some(Ipv4Addr::new(198, 19, 7, 0));
        s
    }

    #[test]
    fn names_fit_linux_limits() {
        let s = lab(MAX_HOSTS, MAX_ACCOUNTS);
        assert!(s.bridge().len() <= 15);
        assert!(s.veth(MAX_HOSTS).len() <= 15);
        assert!(s.user(MAX_HOSTS, MAX_ACCOUNTS).len() <= 32);
        assert_eq!(s.address(MAX_HOSTS), Ipv4Addr::new(198, 19, 7, 254));
        assert_eq!(s.host_address(), Ipv4Addr::new(198, 19, 7, 1));
    }

    #[test]
    fn entries_and_locate_agree() {
        let s = lab(3, 2);
        let entries = s.entries();
        assert_eq!(entries.len(), 6);
        assert_eq!(entries[3], "slab12cdm2u2@198.19.7.3");
        assert_eq!(s.locate(4).unwrap(), (2, 2));
        assert_eq!(s.locate(5).unwrap(), (3, 1));
        assert!(matches!(
            s.locate(7),
            Err(LabError::BadIndex { index: 7, count: 6 })
        ));
        assert!(s.locate(0).is_err());
    }

    #[test]
    fn record_round_trips_and_rejects_strangers() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = lab(2, 1);
        s.dir = dir.path().to_owned();
        s.save().unwrap();
        assert_eq!(LabState::load(dir.path()).unwrap(), s);
        s.id = "../etc".into();
        s.save().unwrap();
        assert!(LabState::load(dir.path()).is_err());
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            LabState::load(empty.path()),
            Err(LabError::NoLab { .. })
        ));
    }
}
