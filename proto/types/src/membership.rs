//! The membership list: the machines where peers *should* run, versioned.
//!
//! Stored and exchanged as a compact blob: the sorted names front-coded (each name stores
//! only what differs from the previous one), then lz4. Sorting also gives every peer the same
//! index for a machine, so gossip can name machines by a 4-byte index.
//!
//! An SSH machine may carry its pinned host key: the list is what every peer trusts about
//! which machines are the cluster's, so it is also where a peer learns the key it must see
//! when it logs in to a machine added after it was deployed (format 2 appends them, after
//! the names: count, then index delta, length and SSH wire blob per key; then the release
//! key's signature over the list without it, since any holder of K_E can send a membership
//! and only the operator may say what a machine's key is).

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use ssh_key::PublicKey;

use std::sync::{Arc, OnceLock};

use crate::{MachineId, ProtoError, ZoneTree};

/// Hard cap on the uncompressed size of a membership blob: checked before allocating.
pub const MAX_MEMBERSHIP_BYTES: u64 = 16 << 20;
/// Hard cap on the number of machines in one list.
pub const MAX_MACHINES: u64 = 1 << 20;

const MAGIC: &[u8; 4] = b"SMEM";
/// Names only.
const FORMAT_NAMES: u8 = 1;
/// Names, then pinned host keys.
const FORMAT_HOST_KEYS: u8 = 2;
/// An SSH public key blob longer than this is refused (RSA-16384 is about 2 KB).
const MAX_HOST_KEY_BYTES: usize = 4096;
/// The same for a signature (sshsig PEM).
const MAX_SIGNATURE_BYTES: usize = 8192;
/// The sshsig namespace of membership signatures.
pub const MEMBERSHIP_NAMESPACE: &str = "smon-membership";
const HEADER_LEN: usize = 4 + 1 + 8 + 4 + 4;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Membership {
    pub version: u64,
    machines: Vec<MachineId>,
    /// Pinned SSH host keys (wire blobs), by machine index, ascending.
    #[serde(default)]
    host_keys: Vec<(u32, Vec<u8>)>,
    /// The release key's sshsig (PEM) over [`Membership::signing_bytes`]; empty if unsigned.
    #[serde(default)]
    signature: Vec<u8>,
    /// The zone tree of `machines`, built on first use and shared by every holder of this
    /// list (a cache, never on the wire).
    #[serde(skip)]
    zones: OnceLock<Arc<ZoneTree>>,
    /// [`Membership::digest`], computed on first use (a cache, never on the wire).
    #[serde(skip)]
    digest: OnceLock<u64>,
}

impl PartialEq for Membership {
    fn eq(&self, other: &Self) -> bool {
        (
            self.version,
            &self.machines,
            &self.host_keys,
            &self.signature,
        ) == (
            other.version,
            &other.machines,
            &other.host_keys,
            &other.signature,
        )
    }
}

impl Eq for Membership {}

impl Membership {
    /// A list in canonical order (sorted, without duplicates).
    pub fn new(version: u64, mut machines: Vec<MachineId>) -> Self {
        machines.sort_by_cached_key(|m| m.to_string());
        machines.dedup();
        Self {
            version,
            machines,
            host_keys: Vec::new(),
            signature: Vec::new(),
            zones: OnceLock::new(),
            digest: OnceLock::new(),
        }
    }

    /// A hash of what the list says (its machines and pinned host keys; not its version or
    /// signature): the first 8 bytes of SHA-256 of its blob without those, big-endian. Two
    /// different lists of one version (two operators, each on one side of a split) are
    /// ordered by it ([`Membership::order`]), so that every peer keeps the same one.
    pub fn digest(&self) -> u64 {
        *self.digest.get_or_init(|| {
            let content = Membership {
                version: 0,
                signature: Vec::new(),
                ..self.clone()
            };
            let hash = crate::sha256(&content.encode());
            u64::from_be_bytes(hash[..8].try_into().expect("8 bytes"))
        })
    }

    /// The total order of lists, newest greatest: the version, then [`Membership::digest`].
    /// A peer takes a list only if it is greater than its own, and exchanges records only
    /// with peers whose list is equal (records name machines by index in it).
    pub fn order(&self) -> (u64, u64) {
        (self.version, self.digest())
    }

    /// Do the two lists say the same (machines and pins), whatever their versions?
    pub fn same_content(&self, other: &Membership) -> bool {
        (&self.machines, &self.host_keys) == (&other.machines, &other.host_keys)
    }

    /// Whether any machine has a pinned host key.
    pub fn has_pins(&self) -> bool {
        !self.host_keys.is_empty()
    }

    /// The bytes the release key signs: the blob without the signature.
    pub fn signing_bytes(&self) -> Vec<u8> {
        Membership {
            signature: Vec::new(),
            ..self.clone()
        }
        .encode()
    }

    /// Attach the release key's signature of [`Membership::signing_bytes`].
    pub fn set_signature(&mut self, signature: Vec<u8>) {
        self.signature = signature;
    }

    /// The release key's signature of [`Membership::signing_bytes`] (empty: unsigned).
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// Whether this list is signed by `trusted`: only then are its pins to be believed.
    pub fn verify_signature(&self, trusted: &PublicKey) -> Result<(), String> {
        if self.signature.is_empty() {
            return Err("not signed".into());
        }
        crate::release::verify_bytes(
            MEMBERSHIP_NAMESPACE,
            &self.signing_bytes(),
            &self.signature,
            trusted,
        )
    }

    /// Pin the host key `key_of` gives for each SSH machine (local machines have none).
    pub fn with_host_keys(
        mut self,
        mut key_of: impl FnMut(&MachineId) -> Option<PublicKey>,
    ) -> Self {
        self.host_keys = self
            .machines
            .iter()
            .enumerate()
            .filter(|(_, m)| matches!(m, MachineId::Ssh { .. }))
            .filter_map(|(i, m)| {
                let blob = key_of(m)?.to_bytes().ok()?;
                Some((i as u32, blob))
            })
            .collect();
        self.digest = OnceLock::new(); // the pins are part of it
        self
    }

    /// The host key pinned for `machine`, if any.
    pub fn host_key(&self, machine: &MachineId) -> Option<PublicKey> {
        let index = self.index_of(machine)?;
        let at = self
            .host_keys
            .binary_search_by_key(&index, |(i, _)| *i)
            .ok()?;
        PublicKey::from_bytes(&self.host_keys[at].1).ok()
    }

    /// The SSH machines without a pinned host key.
    pub fn unpinned(&self) -> impl Iterator<Item = &MachineId> {
        self.machines
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                matches!(m, MachineId::Ssh { .. })
                    && self
                        .host_keys
                        .binary_search_by_key(&(*i as u32), |(k, _)| *k)
                        .is_err()
            })
            .map(|(_, m)| m)
    }

    /// Parse a machine-list file: one entry per line, `#` starts a comment, blank lines are
    /// skipped. Errors name the source and the line; a repeated machine is an error too.
    pub fn parse(source_name: &str, text: &str, version: u64) -> Result<Self, ProtoError> {
        let mut machines = Vec::new();
        let mut seen = std::collections::HashMap::new();
        // A byte-order mark is no part of line 1 (files read with `text::decode_text` have
        // none left; text from elsewhere may).
        for (index, raw) in crate::text::strip_bom(text).lines().enumerate() {
            let line = index + 1;
            let entry = raw.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            let err = |reason: String| ProtoError::MachineLine {
                source_name: source_name.to_owned(),
                line,
                reason,
            };
            let machine = MachineId::parse_entry(entry).map_err(err)?;
            if let Some((first, first_entry)) = seen.insert(machine.clone(), (line, entry)) {
                return Err(err(format!(
                    "{entry:?} is the machine of {source_name}:{first} ({first_entry:?}): both \
                     are {machine}; list each machine once"
                )));
            }
            machines.push(machine);
        }
        Ok(Self::new(version, machines))
    }

    /// The zone tree of this list (built once, then shared).
    pub fn zones(&self) -> &Arc<ZoneTree> {
        self.zones
            .get_or_init(|| Arc::new(ZoneTree::build(&self.machines)))
    }

    pub fn machines(&self) -> &[MachineId] {
        &self.machines
    }

    pub fn len(&self) -> usize {
        self.machines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.machines.is_empty()
    }

    pub fn index_of(&self, machine: &MachineId) -> Option<u32> {
        let wanted = machine.to_string();
        self.machines
            .binary_search_by(|m| m.cmp_name(&wanted))
            .ok()
            .map(|i| i as u32)
    }

    pub fn get(&self, index: u32) -> Option<&MachineId> {
        self.machines.get(index as usize)
    }

    /// How many machines of this list share `machine`'s SSH host and come before it in list
    /// order (counted as if it were listed, when it is not). Every peer listens on the
    /// cluster's port plus this offset, so that several accounts of one host (two users, or
    /// two SSH ports of one address) are several machines, each with a peer of its own.
    /// `local:` machines have addresses of their own: always 0. Every peer computes the
    /// same offsets from the same list.
    pub fn port_offset(&self, machine: &MachineId) -> u16 {
        let Some(host) = machine.ssh_host() else {
            return 0;
        };
        let name = machine.to_string();
        let before = self
            .machines
            .iter()
            .filter(|m| m.ssh_host() == Some(host))
            .filter(|m| m.cmp_name(&name) == std::cmp::Ordering::Less)
            .count();
        u16::try_from(before).unwrap_or(u16::MAX)
    }

    /// [`Membership::port_offset`] of every machine, in list order, in one pass.
    pub fn port_offsets(&self) -> Vec<u16> {
        let mut seen: std::collections::HashMap<String, u16> = std::collections::HashMap::new();
        self.machines
            .iter()
            .map(|m| match m.ssh_host() {
                None => 0,
                Some(host) => {
                    let n = seen.entry(host.to_owned()).or_insert(0);
                    let offset = *n;
                    *n = n.saturating_add(1);
                    offset
                }
            })
            .collect()
    }

    /// The blob that is stored on disk and sent on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut raw = Vec::new();
        let mut previous = String::new();
        for machine in &self.machines {
            let name = machine.to_string();
            let shared = previous
                .bytes()
                .zip(name.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            write_varint(&mut raw, shared as u64);
            write_varint(&mut raw, (name.len() - shared) as u64);
            raw.extend_from_slice(&name.as_bytes()[shared..]);
            previous = name;
        }
        let format = if self.host_keys.is_empty() && self.signature.is_empty() {
            FORMAT_NAMES
        } else {
            write_varint(&mut raw, self.host_keys.len() as u64);
            let mut previous = 0;
            for (index, blob) in &self.host_keys {
                write_varint(&mut raw, u64::from(index - previous));
                write_varint(&mut raw, blob.len() as u64);
                raw.extend_from_slice(blob);
                previous = *index;
            }
            write_varint(&mut raw, self.signature.len() as u64);
            raw.extend_from_slice(&self.signature);
            FORMAT_HOST_KEYS
        };
        let compressed = lz4_flex::block::compress(&raw);
        let mut blob = Vec::with_capacity(HEADER_LEN + compressed.len());
        blob.extend_from_slice(MAGIC);
        blob.push(format);
        blob.extend_from_slice(&self.version.to_le_bytes());
        blob.extend_from_slice(&(self.machines.len() as u32).to_le_bytes());
        blob.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        blob.extend_from_slice(&compressed);
        blob
    }

    /// Decode a blob; sizes claimed by the header are checked against the caps before any
    /// allocation, so a crafted header cannot make a peer allocate gigabytes.
    pub fn decode(blob: &[u8]) -> Result<Self, ProtoError> {
        let bad = |m: &str| ProtoError::MembershipBlob(m.to_owned());
        if blob.len() < HEADER_LEN || &blob[..4] != MAGIC {
            return Err(bad("not a membership blob (bad magic or too short)"));
        }
        let format = blob[4];
        if format != FORMAT_NAMES && format != FORMAT_HOST_KEYS {
            return Err(ProtoError::MembershipBlob(format!(
                "unknown format {format} (this peer reads {FORMAT_NAMES} and {FORMAT_HOST_KEYS})"
            )));
        }
        let version = u64::from_le_bytes(blob[5..13].try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(blob[13..17].try_into().expect("4 bytes")) as u64;
        let raw_len = u32::from_le_bytes(blob[17..21].try_into().expect("4 bytes")) as u64;
        if raw_len > MAX_MEMBERSHIP_BYTES {
            return Err(ProtoError::MembershipTooLarge {
                claimed: raw_len,
                cap: MAX_MEMBERSHIP_BYTES,
            });
        }
        if count > MAX_MACHINES || count > raw_len.max(1) {
            return Err(ProtoError::MembershipBlob(format!(
                "claims {count} machines in {raw_len} bytes"
            )));
        }
        let mut raw = vec![0u8; raw_len as usize];
        let n = lz4_flex::block::decompress_into(&blob[HEADER_LEN..], &mut raw)
            .map_err(|e| ProtoError::MembershipBlob(format!("lz4: {e}")))?;
        if n != raw.len() {
            return Err(bad("decompressed size differs from the header"));
        }
        let mut cursor = &raw[..];
        let machines = read_names(&mut cursor, count)?;
        let (host_keys, signature) = if format == FORMAT_HOST_KEYS {
            let keys = read_host_keys(&mut cursor, &machines)?;
            let len = read_varint(&mut cursor).ok_or_else(|| bad("truncated signature"))?;
            if len > MAX_SIGNATURE_BYTES as u64 || len > cursor.len() as u64 {
                return Err(bad("signature length out of bounds"));
            }
            let (signature, rest) = cursor.split_at(len as usize);
            cursor = rest;
            (keys, signature.to_vec())
        } else {
            (Vec::new(), Vec::new())
        };
        if !cursor.is_empty() {
            return Err(bad("trailing bytes after the last entry"));
        }
        Ok(Self {
            version,
            machines,
            host_keys,
            signature,
            zones: OnceLock::new(),
            digest: OnceLock::new(),
        })
    }
}

/// The `count` front-coded machine names at the start of `cursor` (advanced past them): each
/// in canonical order and canonical spelling, or the error naming the entry.
fn read_names(cursor: &mut &[u8], count: u64) -> Result<Vec<MachineId>, ProtoError> {
    let bad = |m: &str| ProtoError::MembershipBlob(m.to_owned());
    let mut machines = Vec::with_capacity(count as usize);
    let mut previous: Vec<u8> = Vec::new();
    let mut canonical = String::new();
    for entry in 1..=count {
        let shared = read_varint(cursor).ok_or_else(|| bad("truncated entry"))? as usize;
        let suffix = read_varint(cursor).ok_or_else(|| bad("truncated entry"))? as usize;
        if shared > previous.len() || suffix > cursor.len() {
            return Err(bad("entry points outside the blob"));
        }
        // Canonical order: each name sorts strictly after the previous one.
        let ordered = suffix > 0 && (shared == previous.len() || cursor[0] > previous[shared]);
        if entry > 1 && !ordered {
            return Err(bad("entries are not in canonical order"));
        }
        previous.truncate(shared);
        previous.extend_from_slice(&cursor[..suffix]);
        *cursor = &cursor[suffix..];
        let name = std::str::from_utf8(&previous).map_err(|_| bad("entry is not UTF-8"))?;
        let line_error = |reason: String| ProtoError::MachineLine {
            source_name: "membership blob".into(),
            line: entry as usize,
            reason,
        };
        let machine = MachineId::parse_entry(name).map_err(line_error)?;
        // Only the canonical spelling: "h " or "[h]" also parse as "h", and would let a
        // list hold one machine twice, with indices no re-encoding reproduces.
        canonical.clear();
        write!(canonical, "{machine}").expect("writing to a String");
        if canonical != name {
            return Err(line_error(format!(
                "{name:?} is not in canonical form (it reads as {canonical:?})"
            )));
        }
        machines.push(machine);
    }
    Ok(machines)
}

/// The host-key section: every index names an SSH machine, ascending, each key parses.
fn read_host_keys(
    cursor: &mut &[u8],
    machines: &[MachineId],
) -> Result<Vec<(u32, Vec<u8>)>, ProtoError> {
    let bad = |m: String| ProtoError::MembershipBlob(m);
    let truncated = || bad("truncated host key section".into());
    let count = read_varint(cursor).ok_or_else(truncated)?;
    if count > machines.len() as u64 {
        return Err(bad(format!(
            "{count} host keys for {} machines",
            machines.len()
        )));
    }
    let mut keys = Vec::with_capacity(count as usize);
    let mut index = 0u64;
    for n in 0..count {
        let delta = read_varint(cursor).ok_or_else(truncated)?;
        let len = read_varint(cursor).ok_or_else(truncated)? as usize;
        if n > 0 && delta == 0 {
            return Err(bad("host keys are not in ascending order".into()));
        }
        index = index.saturating_add(delta);
        let Some(machine) = machines.get(index as usize) else {
            return Err(bad(format!(
                "host key for machine {index}, which is not listed"
            )));
        };
        if !matches!(machine, MachineId::Ssh { .. }) {
            return Err(bad(format!(
                "host key for {machine}, which is not an SSH machine"
            )));
        }
        if len > MAX_HOST_KEY_BYTES || len > cursor.len() {
            return Err(bad(format!("host key of {machine}: {len} bytes")));
        }
        let blob = cursor[..len].to_vec();
        *cursor = &cursor[len..];
        PublicKey::from_bytes(&blob).map_err(|e| bad(format!("host key of {machine}: {e}")))?;
        keys.push((index as u32, blob));
    }
    Ok(keys)
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod port_offset_tests {
    use super::*;

    fn list(names: &[&str]) -> Membership {
        Membership::new(1, names.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn accounts_of_one_host_get_a_port_each_in_list_order() {
        let m = list(&["b@h1", "a@h1", "c@h2", "local:x", "d@H1:2222", "a@h3"]);
        let offsets: Vec<(String, u16)> = m
            .machines()
            .iter()
            .map(|x| (x.to_string(), m.port_offset(x)))
            .collect();
        assert_eq!(
            offsets,
            vec![
                ("a@h1:22".into(), 0),
                ("a@h3:22".into(), 0),
                ("b@h1:22".into(), 1),
                ("c@h2:22".into(), 0),
                ("d@h1:2222".into(), 2),
                ("local:x".into(), 0),
            ]
        );
        assert_eq!(
            m.port_offsets(),
            offsets.iter().map(|(_, o)| *o).collect::<Vec<_>>()
        );
        // Not listed: where it would be.
        assert_eq!(m.port_offset(&"aa@h1".parse().unwrap()), 1);
        assert_eq!(m.port_offset(&"z@h9".parse().unwrap()), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_ordered_by_version_then_content() {
        let m = |names: &[&str]| names.iter().map(|n| MachineId::local(*n)).collect();
        let a = Membership::new(2, m(&["a", "b"]));
        let b = Membership::new(2, m(&["a", "c"]));
        assert_ne!(a.digest(), b.digest());
        assert_ne!(a.order(), b.order());
        // The digest is of the content: not the version, not the signature; survives the blob.
        let mut a3 = Membership::new(3, m(&["b", "a"]));
        assert_eq!(a3.digest(), a.digest());
        assert!(a3.same_content(&a) && !a.same_content(&b));
        a3.set_signature(b"sig".to_vec());
        assert_eq!(a3.digest(), a.digest());
        assert_eq!(Membership::decode(&b.encode()).unwrap().order(), b.order());
        assert!(
            a3.order() > a.order().max(b.order()),
            "a newer version always wins"
        );
    }

    #[test]
    fn varint_round_trips() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(read_varint(&mut &out[..]), Some(v));
        }
    }
}
