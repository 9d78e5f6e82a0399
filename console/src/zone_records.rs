//! Every machine's record, fetched zone by zone (issue 11): a peer holds the records of its own
//! leaf zone only, and rows for the other zones. Starting from one peer's view, each zone not
//! yet covered is asked of one of its representatives (the machines its row says run a peer):
//! a leaf zone for its records (`zone_records`, in pages), an inner zone for its own view,
//! whose rows name the zones below.

use std::{collections::BTreeSet, time::Duration};

use anyhow::bail;
use smon_proto::{
    ClusterView, MachineId, MachineRecord, PeerServiceClient, ZONE_RECORDS_PAGE, ZoneIdx, ZoneInfo,
    ZoneRecordsRequest, transport,
};

use crate::{
    cluster_dir::ClusterDir,
    connect::{CONNECT_TIMEOUT, ctx},
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
    records.sort_by_key(|(_, r)| r.machine);
    records.dedup_by_key(|(_, r)| r.machine);
    (records, walk.missed)
}

struct Walk<'a> {
    dir: &'a ClusterDir,
    version: u64,
    covered: BTreeSet<ZoneIdx>,
    records: Vec<(MachineId, MachineRecord)>,
    missed: Vec<String>,
}

impl Walk<'_> {
    /// Take a peer's records (its leaf zone's) and mark the zones on its path covered.
    fn take_view(&mut self, view: &ClusterView) {
        if view.membership_version != self.version {
            return;
        }
        self.records.extend(view.records.iter().cloned());
        for z in view.zones.iter().filter(|z| z.own) {
            self.covered.insert(z.zone);
        }
    }

    fn uncovered(&self, view: &ClusterView) -> Vec<ZoneInfo> {
        if view.membership_version != self.version {
            return Vec::new();
        }
        view.zones
            .iter()
            .filter(|z| !z.own && !self.covered.contains(&z.zone))
            .cloned()
            .collect()
    }

    /// Ask a representative of `zone`: the records of a leaf zone (None), the view of a peer
    /// inside an inner zone.
    async fn visit(&mut self, zone: &ZoneInfo) -> anyhow::Result<Option<ClusterView>> {
        let mut last = None;
        for peer in &zone.peers {
            let addr = self.dir.peer_address(peer);
            let client = match transport::peer_client(&addr, &self.dir.key, CONNECT_TIMEOUT).await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(anyhow::anyhow!("{peer}: {e}"));
                    continue;
                }
            };
            let result = if zone.leaf {
                self.leaf(zone.zone, &client).await.map(|()| None)
            } else {
                client
                    .cluster_view(ctx(Duration::from_secs(10)), 0)
                    .await
                    .map(Some)
                    .map_err(anyhow::Error::from)
            };
            match result {
                Ok(view) => return Ok(view),
                Err(e) => last = Some(anyhow::anyhow!("{peer}: {e}")),
            }
        }
        match last {
            Some(e) => Err(e),
            None => bail!("no machine of the zone is known to run a peer"),
        }
    }

    /// Every page of a leaf zone's records.
    async fn leaf(&mut self, zone: ZoneIdx, client: &PeerServiceClient) -> anyhow::Result<()> {
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
            self.records.extend(page.records);
            offset += ZONE_RECORDS_PAGE;
            if offset >= page.total {
                return Ok(());
            }
        }
    }
}
