//! Which cluster a machine's install belongs to (issue 15, kind 11), as the `cluster` file of
//! its root says ([`smon_proto::MachineFiles::cluster`]): written by the installer and by the
//! peer as it starts, read by the probe of every login, so that nothing a login finds is
//! restarted, killed or deployed over before it is known to be this cluster's.

use std::path::Path;

use smon_proto::{ClusterConfig, MachineFiles, MachineId, ReleasePublicKey, write_atomic};

use crate::{Error, error::io_err};

/// What a machine's `cluster` file says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstalledCluster {
    /// The release key (OpenSSH public key) the install trusts.
    pub release_key: String,
    /// Its cluster id ([`ClusterConfig::cluster_id`]), if the file gives it.
    pub cluster_id: Option<String>,
    /// The machine's name in that cluster, if the file gives it.
    pub machine: Option<String>,
    /// The epoch of the cluster key the install holds (issue 14, item 2), if the file gives
    /// it (a file from before key rotation: epoch 0).
    pub key_epoch: Option<u32>,
}

impl InstalledCluster {
    /// Record, in `root`'s `cluster` file, that the install there is `config`'s cluster's,
    /// as machine `me`, holding the cluster key of `key_epoch`. Errors: the file cannot be
    /// written.
    pub fn write(
        root: &Path,
        config: &ClusterConfig,
        me: &MachineId,
        key_epoch: u32,
    ) -> Result<(), Error> {
        let path = MachineFiles::new(root).cluster();
        let text = format!(
            "release_key={}\ncluster_id={}\nmachine={me}\nkey_epoch={key_epoch}\n",
            config.release_key.trim(),
            config.cluster_id()
        );
        write_atomic(&path, text.as_bytes(), 0o644)
            .map_err(|e| io_err(&path)(std::io::Error::other(e)))
    }

    /// Take one `key=value` line of the file; false when the key is not one of its own.
    pub fn take_line(&mut self, key: &str, value: &str) -> bool {
        match key {
            "release_key" => self.release_key = value.trim().to_owned(),
            "cluster_id" => self.cluster_id = Some(value.trim().to_owned()),
            "machine" => self.machine = Some(value.trim().to_owned()),
            "key_epoch" => self.key_epoch = value.trim().parse().ok(),
            _ => return false,
        }
        true
    }

    /// Whether this install is `config`'s cluster's ([`ClusterConfig::is_same_cluster`]).
    pub fn is_ours(&self, config: &ClusterConfig) -> bool {
        config.is_same_cluster(&self.release_key, self.cluster_id.as_deref())
    }

    /// [`InstalledCluster::describe`] short enough for a row's reason (its cluster id, not
    /// its root or key).
    pub fn brief(&self, pid: Option<i64>) -> String {
        let id = self.cluster_id.as_deref().unwrap_or("unknown");
        format!(
            "holds another cluster's install ({}; cluster id {id}): left alone; `init \
             --take-over` replaces it",
            peer_state(pid)
        )
    }

    /// What the other cluster left in `root`, and what to do, in one line: the message of
    /// the installer's refusal and of every login that finds it. `pid`: its running peer.
    pub fn describe(&self, root: &str, pid: Option<i64>) -> String {
        let key = ReleasePublicKey::from_openssh(&self.release_key).map_or_else(
            |_| "an unreadable release key".to_owned(),
            |k| format!("release key {}", k.fingerprint(Default::default())),
        );
        let peer = peer_state(pid);
        let me = self
            .machine
            .as_ref()
            .map_or_else(String::new, |m| format!(" as {m}"));
        let id = self
            .cluster_id
            .as_ref()
            .map_or_else(String::new, |id| format!(", cluster id {id}"));
        format!(
            "{root} holds the smon install of another cluster{me} ({key}{id}; {peer}), made \
             by another `init`. To replace it, make this cluster with `smon-console init \
             --take-over` (its deployers then stop that peer and its applications and install \
             this cluster), or remove {root} on that machine"
        )
    }
}

/// Whether the other cluster's peer runs, in words.
fn peer_state(pid: Option<i64>) -> String {
    match pid {
        Some(pid) => format!("its peer runs (pid {pid})"),
        None => "its peer is not running".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_writes_and_tells_clusters_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let key = || {
            let k = smon_proto::release::generate_release_key();
            k.public_key().to_openssh().unwrap()
        };
        let (one, two) = (key(), key());
        let mut ours = crate::machine_ops::tests::config(tmp.path());
        ours.release_key = one.clone();
        InstalledCluster::write(tmp.path(), &ours, &MachineId::local("m1"), 3).unwrap();
        let text = std::fs::read_to_string(tmp.path().join("cluster")).unwrap();
        let mut found = InstalledCluster::default();
        for (k, v) in text.lines().filter_map(|l| l.split_once('=')) {
            assert!(found.take_line(k, v), "{k}");
        }
        assert!(found.is_ours(&ours));
        assert_eq!(found.key_epoch, Some(3));
        // The same key with another comment is the same cluster.
        assert!(ours.is_same_cluster(&format!("{one} someone@else"), Some(&ours.cluster_id())));
        // Another release key, or another init with the same key, is another cluster.
        let mut theirs = ours.clone();
        theirs.release_key = two;
        assert!(!found.is_ours(&theirs));
        let mut again = ours.clone();
        again.local_salt += 1;
        assert!(!found.is_ours(&again) && !again.is_same_cluster_as(&ours));
        let line = found.describe("/srv/smon", Some(42));
        assert!(line.contains("another cluster as local:m1"), "{line}");
        assert!(line.contains(&ours.cluster_id()), "{line}");
        assert!(line.contains("its peer runs (pid 42)"), "{line}");
        assert!(line.contains("--take-over"), "{line}");
        assert!(!line.contains('\n'));
        let brief = found.brief(Some(4_194_304));
        assert!(brief.len() <= smon_proto::MAX_REASON_BYTES, "{brief}");
        assert!(brief.contains("its peer runs (pid 4194304)") && brief.contains("--take-over"));
    }
}
