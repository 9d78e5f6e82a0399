//! The zone tree: Astrolabe's hierarchy of zones (paper 002, §2.1), derived by every peer from
//! the sorted membership list alone, with no coordination.
//!
//! A zone is a set of machines. The root zone holds them all; a *leaf zone* holds machines
//! directly (its table has one record per machine); every other zone holds child zones (its
//! table has one aggregate row per child). Where names have structure the zones follow it:
//! DNS names by their labels read from the right (`n1.rack3.site.org` is in `rack3.site.org`,
//! in `site.org`, in `org`), IPv4 addresses by octets, IPv6 addresses by 16-bit groups,
//! `local:` machines in a zone of their own. Then the tree is shaped:
//! - a subtree of at most [`LEAF_MAX`] machines becomes one leaf zone;
//! - runs of small sibling leaf zones are packed together (up to [`LEAF_MAX`] machines);
//! - a zone with fewer than [`FAN_MIN`] children is spliced into its parent, a zone with one
//!   child is replaced by it;
//! - a zone with more than [`FAN_MAX`] children gets balanced intermediate zones of
//!   consecutive children, so names without structure simply split the sorted order.
//!
//! The shape is part of the protocol: rows on the wire name zones by their index in the tree
//! of a membership version, so every peer must derive the same tree.

mod raw;
mod shape;

use raw::{labels, raw_node};
use shape::{Shaped, shape};
use std::{
    net::{Ipv4Addr, Ipv6Addr},
    ops::Range,
};

use crate::MachineId;

/// Most machines in a leaf zone.
pub const LEAF_MAX: usize = 64;
/// Most children of a zone.
pub const FAN_MAX: usize = 64;
/// Fewer children than this: the zone is spliced into its parent.
pub const FAN_MIN: usize = 8;

/// A zone's index in its [`ZoneTree`]; the root is 0. Zones are numbered breadth-first, so
/// the children of a zone have consecutive indices.
pub type ZoneIdx = u32;

/// One zone of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// For people: `rack3.site.org`, `10.1.2.0/24`, `local:`; zones made by packing or
    /// splitting are `PARENT#k` (the k-th child of PARENT).
    pub name: String,
    pub parent: Option<ZoneIdx>,
    /// The root is at depth 0.
    pub depth: u32,
    /// Position among the parent's children (the row's place in the parent's table).
    pub slot: u32,
    /// Child zones; empty for a leaf zone.
    pub children: Range<ZoneIdx>,
    /// The machines under this zone, as a range of [`ZoneTree::order`].
    pub span: Range<u32>,
    /// A fingerprint of the zone's machine names (FNV-1a): the same set of machines gives the
    /// same key in any membership version, which lets rows survive a membership change.
    pub key: u64,
}

impl Zone {
    pub fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }

    pub fn len(&self) -> usize {
        self.span.len()
    }

    pub fn is_empty(&self) -> bool {
        self.span.is_empty()
    }
}

/// The zones of one membership list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneTree {
    zones: Vec<Zone>,
    /// Machine indices in tree order: every zone's machines are a contiguous range.
    order: Vec<u32>,
    /// Machine index → its position in `order`.
    position: Vec<u32>,
    /// Machine index → its leaf zone.
    leaf: Vec<ZoneIdx>,
}

impl ZoneTree {
    /// The tree of `machines` (a membership list: sorted, without duplicates). Deterministic.
    pub fn build(machines: &[MachineId]) -> Self {
        let mut items: Vec<(Vec<String>, u32)> = machines
            .iter()
            .enumerate()
            .map(|(i, m)| (labels(m), i as u32))
            .collect();
        items.sort();
        let raw = raw_node(&items, 0, String::new());
        let mut shaped = shape(raw);
        if let Shaped::Inner { name, .. } | Shaped::Leaf { name, .. } = &mut shaped
            && name.is_none()
        {
            *name = Some(".".into());
        }
        Self::flatten(shaped, machines)
    }

    /// Number the shaped tree breadth-first, and lay its machines out depth-first.
    fn flatten(root: Shaped, machines: &[MachineId]) -> Self {
        let n = machines.len();
        let mut zones = Vec::new();
        let mut nodes = vec![root];
        let mut parents: Vec<Option<ZoneIdx>> = vec![None];
        let mut slots = vec![0u32];
        let mut leaf_machines: Vec<Vec<u32>> = Vec::new();
        let mut next = 0usize;
        while next < nodes.len() {
            let node = std::mem::replace(&mut nodes[next], Shaped::Placeholder);
            let parent = parents[next];
            let depth = parent.map_or(0, |p| zones_depth(&zones, p) + 1);
            let parent_name = parent.map(|p: ZoneIdx| zones_name(&zones, p));
            let name = |own: Option<String>, slot: u32| {
                own.unwrap_or_else(|| format!("{}#{}", parent_name.unwrap_or("."), slot + 1))
            };
            let index = zones.len() as ZoneIdx;
            let (zone_name, children, machines_here) = match node {
                Shaped::Leaf {
                    name: own,
                    machines,
                } => (name(own, slots[next]), 0..0, machines),
                Shaped::Inner { name: own, kids } => {
                    let first = nodes.len() as ZoneIdx;
                    for (k, kid) in kids.into_iter().enumerate() {
                        nodes.push(kid);
                        parents.push(Some(index));
                        slots.push(k as u32);
                    }
                    (
                        name(own, slots[next]),
                        first..nodes.len() as ZoneIdx,
                        Vec::new(),
                    )
                }
                Shaped::Placeholder => unreachable!("each node is taken once"),
            };
            zones.push(Zone {
                name: zone_name,
                parent,
                depth,
                slot: slots[next],
                children,
                span: 0..0,
                key: 0,
            });
            leaf_machines.push(machines_here);
            next += 1;
        }
        let mut tree = ZoneTree {
            zones,
            order: Vec::with_capacity(n),
            position: vec![0; n],
            leaf: vec![0; n],
        };
        tree.lay_out(0, &mut leaf_machines, machines);
        tree
    }

    /// Depth-first: give every zone its span of `order`, and its key.
    fn lay_out(&mut self, z: ZoneIdx, leaf_machines: &mut [Vec<u32>], names: &[MachineId]) {
        let start = self.order.len() as u32;
        let zone = &self.zones[z as usize];
        let (children, is_leaf) = (zone.children.clone(), zone.is_leaf());
        if is_leaf {
            for m in std::mem::take(&mut leaf_machines[z as usize]) {
                self.position[m as usize] = self.order.len() as u32;
                self.leaf[m as usize] = z;
                self.order.push(m);
            }
        }
        for child in children {
            self.lay_out(child, leaf_machines, names);
        }
        let span = start..self.order.len() as u32;
        let mut key = Fnv::new();
        for &m in &self.order[span.start as usize..span.end as usize] {
            key.write(names[m as usize].to_string().as_bytes());
            key.write(&[0]);
        }
        let zone = &mut self.zones[z as usize];
        zone.span = span;
        zone.key = key.finish();
    }

    pub const ROOT: ZoneIdx = 0;

    pub fn len(&self) -> usize {
        self.zones.len()
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    pub fn zone(&self, z: ZoneIdx) -> &Zone {
        &self.zones[z as usize]
    }

    pub fn get(&self, z: ZoneIdx) -> Option<&Zone> {
        self.zones.get(z as usize)
    }

    pub fn zones(&self) -> impl Iterator<Item = (ZoneIdx, &Zone)> {
        self.zones
            .iter()
            .enumerate()
            .map(|(i, z)| (i as ZoneIdx, z))
    }

    /// Machines in tree order.
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// The machines of zone `z`, in tree order.
    pub fn machines(&self, z: ZoneIdx) -> &[u32] {
        let span = &self.zones[z as usize].span;
        &self.order[span.start as usize..span.end as usize]
    }

    /// Number of machines listed.
    pub fn machine_count(&self) -> usize {
        self.order.len()
    }

    /// The leaf zone of `machine` (None if it is not listed).
    pub fn leaf_of(&self, machine: u32) -> Option<ZoneIdx> {
        self.leaf.get(machine as usize).copied()
    }

    /// `machine`'s position in its leaf zone (the slot of its record in the leaf's table).
    pub fn slot_in_leaf(&self, machine: u32) -> Option<u32> {
        let leaf = self.leaf_of(machine)?;
        Some(self.position[machine as usize] - self.zones[leaf as usize].span.start)
    }

    /// Whether `machine` is under zone `z`.
    pub fn contains(&self, z: ZoneIdx, machine: u32) -> bool {
        self.position
            .get(machine as usize)
            .is_some_and(|p| self.zones[z as usize].span.contains(p))
    }

    /// The child of zone `z` that holds `machine`, if any.
    pub fn child_containing(&self, z: ZoneIdx, machine: u32) -> Option<ZoneIdx> {
        let at = *self.position.get(machine as usize)?;
        let children = self.zones[z as usize].children.clone();
        let kids = &self.zones[children.start as usize..children.end as usize];
        let i = kids.partition_point(|c| c.span.end <= at);
        kids.get(i)
            .filter(|c| c.span.contains(&at))
            .map(|_| children.start + i as ZoneIdx)
    }

    /// The zones from the root down to `machine`'s leaf zone.
    pub fn path(&self, machine: u32) -> Vec<ZoneIdx> {
        let mut path = Vec::new();
        let mut at = self.leaf_of(machine);
        while let Some(z) = at {
            path.push(z);
            at = self.zones[z as usize].parent;
        }
        path.reverse();
        path
    }

    /// The zone named `name`, if any.
    pub fn find(&self, name: &str) -> Option<ZoneIdx> {
        self.zones
            .iter()
            .position(|z| z.name == name)
            .map(|i| i as ZoneIdx)
    }
}

fn zones_depth(zones: &[Zone], z: ZoneIdx) -> u32 {
    zones[z as usize].depth
}

fn zones_name(zones: &[Zone], z: ZoneIdx) -> &str {
    &zones[z as usize].name
}

/// FNV-1a, 64 bits: a hash that is the same on every platform and in every version.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Fnv {
    pub fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(host: &str) -> MachineId {
        MachineId::parse_entry(host).unwrap()
    }

    fn tree(names: &[MachineId]) -> (Vec<MachineId>, ZoneTree) {
        let mut sorted = names.to_vec();
        sorted.sort_by_cached_key(|m| m.to_string());
        let t = ZoneTree::build(&sorted);
        (sorted, t)
    }

    /// Every invariant a tree must keep, for any list.
    fn check(t: &ZoneTree, n: usize) {
        assert_eq!(t.order.len(), n);
        let mut seen = vec![false; n];
        for &m in &t.order {
            assert!(!seen[m as usize], "machine {m} twice");
            seen[m as usize] = true;
        }
        for (z, zone) in t.zones() {
            if zone.is_leaf() {
                assert!(
                    zone.len() <= LEAF_MAX,
                    "{}: {} machines",
                    zone.name,
                    zone.len()
                );
                for &m in t.machines(z) {
                    assert_eq!(t.leaf_of(m), Some(z));
                }
            } else {
                assert!(zone.children.len() >= 2, "{} has one child", zone.name);
                assert!(zone.children.len() <= FAN_MAX, "{}", zone.name);
                let mut at = zone.span.start;
                for (k, c) in zone.children.clone().enumerate() {
                    let child = t.zone(c);
                    assert_eq!(child.parent, Some(z));
                    assert_eq!(child.slot, k as u32);
                    assert_eq!(child.depth, zone.depth + 1);
                    assert_eq!(child.span.start, at);
                    at = child.span.end;
                }
                assert_eq!(at, zone.span.end);
            }
        }
        if n > 0 {
            assert_eq!(t.zone(0).span, 0..n as u32);
        }
    }

    #[test]
    fn small_lists_are_one_leaf_zone() {
        let names: Vec<_> = (0..40)
            .map(|i| MachineId::local(format!("m{i:03}")))
            .collect();
        let (_, t) = tree(&names);
        check(&t, 40);
        assert_eq!(t.len(), 1);
        assert!(t.zone(0).is_leaf());
    }

    #[test]
    fn dns_names_follow_their_domains() {
        // Two sites, each with racks of 40 machines: the racks become leaf zones.
        let mut names = Vec::new();
        for site in ["alpha.org", "beta.org"] {
            for rack in 0..4 {
                for n in 0..40 {
                    names.push(ssh(&format!("smon@n{n}.rack{rack}.{site}")));
                }
            }
        }
        let (sorted, t) = tree(&names);
        check(&t, names.len());
        let rack = t.find("rack2.beta.org").expect("a zone per rack");
        assert!(t.zone(rack).is_leaf());
        for &m in t.machines(rack) {
            assert!(
                sorted[m as usize]
                    .to_string()
                    .ends_with(".rack2.beta.org:22")
            );
        }
        // Four racks per site are too few for a level of their own: they join the domain above.
        let root = t.zone(0);
        assert_eq!(
            root.children.len(),
            8,
            "{:?}",
            t.zones().map(|(_, z)| &z.name).collect::<Vec<_>>()
        );
    }

    #[test]
    fn addresses_group_by_prefix_and_hosts_with_many_ports_stay_together() {
        let mut names = Vec::new();
        for net in 0..3 {
            for host in 0..50 {
                names.push(ssh(&format!("10.0.{net}.{host}")));
            }
        }
        for port in 0..30 {
            names.push(ssh(&format!("u@[2001:db8::1]:{}", 2000 + port)));
        }
        let (_, t) = tree(&names);
        check(&t, names.len());
        for net in 0..3 {
            let z = t.find(&format!("10.0.{net}.0/24")).expect("a /24 zone");
            assert_eq!(t.zone(z).len(), 50);
        }
        let v6 = t
            .zones()
            .find(|(_, z)| z.len() == 30)
            .expect("the IPv6 host's machines together");
        assert!(v6.1.name.contains("2001:db8"), "{}", v6.1.name);
    }

    #[test]
    fn flat_names_split_the_sorted_order_within_the_bounds() {
        for n in [65, 117, 1000, 4097, 10_000, 100_000] {
            let names: Vec<_> = (0..n)
                .map(|i| ssh(&format!("smon@node{i:05}.sim")))
                .collect();
            let (_, t) = tree(&names);
            check(&t, n);
            let leaves: Vec<_> = t.zones().filter(|(_, z)| z.is_leaf()).collect();
            let smallest = leaves.iter().map(|(_, z)| z.len()).min().unwrap();
            assert!(
                smallest * 2 >= LEAF_MAX - 1 || n < LEAF_MAX * 2,
                "{n}: leaf of {smallest}"
            );
            // Rows a peer holds: its leaf's records and a row per child of each ancestor.
            let rows = |m: u32| {
                let path = t.path(m);
                let leaf = t.zone(*path.last().unwrap()).len();
                leaf + path[..path.len() - 1]
                    .iter()
                    .map(|&z| t.zone(z).children.len())
                    .sum::<usize>()
            };
            let most = (0..n as u32).map(rows).max().unwrap();
            assert!(most <= 200, "{n}: {most} rows");
        }
    }

    #[test]
    fn tiny_domains_are_packed_and_keys_survive_unrelated_changes() {
        // PlanetLab-like: two nodes per university.
        let mut names = Vec::new();
        for u in 0..300 {
            for n in 1..=2 {
                names.push(ssh(&format!("slice@planetlab{n}.cs.uni{u:03}.edu")));
            }
        }
        for n in 0..70 {
            names.push(MachineId::local(format!("m{n:03}")));
        }
        let (_, t) = tree(&names);
        check(&t, names.len());
        let leaves = t.zones().filter(|(_, z)| z.is_leaf()).count();
        assert!(leaves <= 12, "{leaves} leaf zones");
        // One more local machine: the university zones keep their keys.
        names.push(MachineId::local("m999"));
        let (_, t2) = tree(&names);
        check(&t2, names.len());
        let keys = |t: &ZoneTree| -> Vec<u64> {
            t.zones()
                .filter(|(_, z)| z.name.contains("edu"))
                .map(|(_, z)| z.key)
                .collect()
        };
        let (k1, k2) = (keys(&t), keys(&t2));
        assert!(!k1.is_empty());
        assert!(k1.iter().all(|k| k2.contains(k)));
    }

    #[test]
    fn the_same_list_gives_the_same_tree() {
        let names: Vec<_> = (0..3000)
            .map(|i| ssh(&format!("h{}.d{}.example", i, i % 7)))
            .collect();
        let (sorted, t) = tree(&names);
        assert_eq!(t, ZoneTree::build(&sorted));
    }
}
