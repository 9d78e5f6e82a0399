//! Every machine's record, fetched zone by zone (issue 11): a peer holds the records of its own
//! leaf zone only, and rows for the other zones. Starting from one peer's view, each zone not
//! yet covered is asked of one of its representatives (the machines its row says run a peer):
//! a leaf zone for its records (`zone_records`, in pages), an inner zone for its own view,
//! whose rows name the zones below.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use anyhow::bail;
use smon_proto::{
    ClusterView, MachineId, MachineRecord, Membership, PeerServiceClient, ZONE_RECORDS_PAGE,
    ZoneIdx, ZoneInfo, ZoneRecordsRequest, ZoneTree,
};

use crate::{
    cluster_dir::ClusterDir,
    connect::{client_at, ctx},
};

/// The records of every zone, starting from `view` (one peer's), in membership order. Zones
/// none of whose representatives answer are left out and named in the error list.
pub async fn all_records(
    dir: &ClusterDir,
    view: &ClusterView,
) -> (Vec<(MachineId, MachineRecord)>, Vec<String>) {
    let mut walk = Walk {
        dir,
        version: view.membership_version,
        covered: BTreeSet::new(),
        seeds: BTreeMap::new(),
        records: Vec::new(),
        missed: Vec::new(),
    };
    walk.take_view(view);
    let mut pending: Vec<ZoneInfo> = walk.uncovered(view);
    while let Some(zone) = pending.pop() {
        if !walk.covered.insert(zone.zone) {
            continue;
        }
        match walk.visit(&zone).await {
            Ok(Some(view)) => {
                walk.take_view(&view);
                pending.extend(walk.uncovered(&view));
            }
            Ok(None) => {}
            Err(e) => walk.missed.push(format!("{}: {e}", zone.name)),
        }
    }
    let mut records = walk.records;
    for seed in walk.seeds.into_values() {
        records.extend(seed.records.into_values());
    }
    // The newest version of each machine's record.
    records.sort_by_key(|(_, r)| (r.machine, std::cmp::Reverse(r.order())));
    records.dedup_by_key(|(_, r)| r.machine);
    (records, walk.missed)
}

/// The machines whose rows a status from `view` lists: its membership's (of the view's version:
/// the directory's, or else the answering peer's), or with `via_only` only those of the
/// answering peer's leaf zone. None when that list cannot be had.
pub async fn listed_machines(
    dir: &ClusterDir,
    view: &ClusterView,
    via_only: bool,
) -> Option<Vec<MachineId>> {
    let membership = if dir.membership.version == view.membership_version {
        dir.membership.clone()
    } else {
        let addr = dir.peer_address(&view.answered_by);
        let client = client_at(&addr, &dir.key).await.ok()?;
        let blob = client
            .retrieve_member(ctx(Duration::from_secs(10)))
            .await
            .ok()?;
        Membership::decode(&blob)
            .ok()
            .filter(|m| m.version == view.membership_version)?
    };
    if !via_only {
        return Some(membership.machines().to_vec());
    }
    let tree = ZoneTree::build(membership.machines());
    let leaf = tree.leaf_of(membership.index_of(&view.answered_by)?)?;
    Some(
        tree.machines(leaf)
            .iter()
            .filter_map(|&m| membership.get(m).cloned())
            .collect(),
    )
}

struct Walk<'a> {
    dir: &'a ClusterDir,
    version: u64,
    covered: BTreeSet<ZoneIdx>,
    /// Records of a leaf zone already in hand (from a view of one of its peers), by zone.
    seeds: BTreeMap<ZoneIdx, LeafRecords>,
    records: Vec<(MachineId, MachineRecord)>,
    missed: Vec<String>,
}

impl Walk<'_> {
    /// Take a peer's records (its leaf zone's) and mark the zones on its path covered.
    fn take_view(&mut self, view: &ClusterView) {
        if view.membership_version != self.version {
            return;
        }
        // Its leaf zone stays to visit, starting from these records: the peer may not hold
        // every record of it yet.
        let leaf = view.zones.iter().find(|z| z.own && z.leaf).map(|z| z.zone);
        let seed = self.seeds.entry(leaf.unwrap_or(ZoneIdx::MAX)).or_default();
        for (id, record) in &view.records {
            seed.merge(id.clone(), record.clone());
        }
        for z in view.zones.iter().filter(|z| z.own && !z.leaf) {
            self.covered.insert(z.zone);
        }
    }

    fn uncovered(&self, view: &ClusterView) -> Vec<ZoneInfo> {
        if view.membership_version != self.version {
            return Vec::new();
        }
        view.zones
            .iter()
            .filter(|z| (!z.own || z.leaf) && !self.covered.contains(&z.zone))
            .cloned()
            .collect()
    }

    /// Ask a representative of `zone`: the records of a leaf zone (None), the view of a peer
    /// inside an inner zone. A leaf zone's representatives are asked in turn until their
    /// records, together, cover the zone: a peer that joined lately may not hold them all yet.
    async fn visit(&mut self, zone: &ZoneInfo) -> anyhow::Result<Option<ClusterView>> {
        let mut last = None;
        let mut leaf = self.seeds.remove(&zone.zone).unwrap_or_default();
        for peer in &zone.peers {
            let addr = self.dir.peer_address(peer);
            let client = match client_at(&addr, &self.dir.key).await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(anyhow::anyhow!("{peer}: {e}"));
                    continue;
                }
            };
            if zone.leaf {
                match self.leaf(zone.zone, &client, &mut leaf).await {
                    Ok(()) if leaf.complete() => break,
                    Ok(()) => {}
                    Err(e) => last = Some(anyhow::anyhow!("{peer}: {e}")),
                }
                continue;
            }
            match client.cluster_view(ctx(Duration::from_secs(10)), 0).await {
                Ok(view) => return Ok(Some(view)),
                Err(e) => last = Some(anyhow::anyhow!("{peer}: {e}")),
            }
        }
        let found = leaf.records.len();
        self.records.extend(leaf.records.into_values());
        match (zone.leaf, leaf.total, last) {
            (true, Some(total), _) if found == total => Ok(None),
            (true, Some(total), _) => {
                bail!("{found} of its {total} machines' records known to the peers that answered")
            }
            (_, _, Some(e)) => Err(e),
            _ => bail!("no machine of the zone is known to run a peer"),
        }
    }

    /// Every page of a leaf zone's records as one peer holds them, merged into `leaf`.
    async fn leaf(
        &mut self,
        zone: ZoneIdx,
        client: &PeerServiceClient,
        leaf: &mut LeafRecords,
    ) -> anyhow::Result<()> {
        let mut offset = 0;
        loop {
            let req = ZoneRecordsRequest {
                membership_version: self.version,
                zone,
                offset,
                limit: ZONE_RECORDS_PAGE,
            };
            let page = client
                .zone_records(ctx(Duration::from_secs(10)), req)
                .await??;
            leaf.total = Some(page.total as usize);
            for (id, record) in page.records {
                leaf.merge(id, record);
            }
            offset += ZONE_RECORDS_PAGE;
            if offset >= page.total {
                return Ok(());
            }
        }
    }
}

/// A leaf zone's records as gathered from one or more of its peers: the newest version of
/// each machine's ([`MachineRecord::order`]).
#[derive(Default)]
struct LeafRecords {
    /// The zone's machine count, as its peers answer it.
    total: Option<usize>,
    records: BTreeMap<u32, (MachineId, MachineRecord)>,
}

impl LeafRecords {
    fn merge(&mut self, id: MachineId, record: MachineRecord) {
        match self.records.get(&record.machine) {
            Some((_, known)) if known.order() >= record.order() => {}
            _ => {
                self.records.insert(record.machine, (id, record));
            }
        }
    }

    fn complete(&self) -> bool {
        self.total == Some(self.records.len())
    }
}
