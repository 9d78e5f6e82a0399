//! What a core answers: the calls other peers make (ping, offers, chunk fetches within the
//! serving cap) and the console's reads (the cluster view, a zone's records).

use super::*;

impl Core {
    /// Answer a call from another peer (or the console acting as one).
    ///
    /// For `RetrievePeer` the core only decides admission (the fetch cap): an `Ok` chunk with
    /// no data means "admitted", and the daemon fills in the bytes from disk.
    pub fn on_call(
        &mut self,
        now: Millis,
        call: PeerCall,
        rng: &mut impl Rng,
        out: &mut Vec<Output>,
    ) -> PeerReply {
        self.last_heard = now;
        self.now = now;
        self.view.set_clock(now);
        match call {
            PeerCall::Ping(mut ping) => {
                let theirs = std::mem::take(&mut ping.gossip.digest);
                let list = (ping.membership_version, ping.gossip.membership_digest);
                let same_list = list == self.view.membership().order();
                if !self.exited {
                    let _ = self.absorb_livetag(Sender::Peer(ping.from.clone()), ping.livetag, out);
                    let _ = self.absorb_rekey(Sender::Peer(ping.from.clone()), ping.rekey, out);
                    self.absorb_gossip(ping.gossip, out);
                    self.consider_version(&ping.from, ping.version, rng, out);
                    self.consider_membership(&ping.from, list, out);
                }
                let partner = self.view.membership().index_of(&ping.from);
                PeerReply::Pong(Pong {
                    from: self.me.clone(),
                    version: self.state.version,
                    state: self.own_state(),
                    livetag: self.signed_livetag(),
                    rekey: self.state.rekey.clone(),
                    membership_version: self.view.membership().version,
                    gossip: self.outgoing_gossip(
                        partner,
                        if same_list { &theirs } else { &[] },
                        rng,
                    ),
                })
            }
            PeerCall::ExchangeLivetag(tag) => {
                // The call names no sender: the daemon adds the caller's address to the log.
                let _ = self.absorb_livetag(Sender::Unnamed, tag, out);
                PeerReply::Livetag(self.signed_livetag())
            }
            PeerCall::ExchangeMember(version) => {
                // At an equal version too: the caller saw a list of this version that
                // orders above its own (a greater digest), and takes it only if so.
                let mine = self.view.membership().version;
                let blob = (mine >= version).then(|| {
                    let membership = self.view.membership().clone();
                    self.membership_blob
                        .get_or_insert_with(|| Arc::new(membership.encode()))
                        .to_vec()
                });
                PeerReply::Member(MemberReply {
                    version: mine,
                    blob,
                })
            }
            PeerCall::ExchangeApp(offer) => PeerReply::App(self.on_app_offer(offer, out)),
            PeerCall::RetrievePeer(req) => PeerReply::Chunk(self.admit_fetch(now, &req)),
        }
    }

    pub(crate) fn admit_fetch(
        &mut self,
        now: Millis,
        req: &ChunkRequest,
    ) -> Result<Chunk, Refusal> {
        if req.version != self.state.version {
            return Err(Refusal::NotFound(format!(
                "this peer serves {}, not {}",
                self.state.version, req.version
            )));
        }
        if !self.slots.admit(
            now,
            req.session,
            self.cfg.fetch_cap,
            self.cfg.fetch_slot_idle_ms,
        ) {
            return Err(Refusal::Busy(format!(
                "{} fetches in progress",
                self.cfg.fetch_cap
            )));
        }
        Ok(Chunk {
            manifest: None,
            total_len: 0,
            offset: req.offset,
            data: Vec::new(),
        })
    }

    /// The fetcher of `session` read its last chunk.
    pub fn release_fetch(&mut self, session: u64) {
        self.slots.release(session);
    }

    /// What the console sees: the root aggregate, the zone rows this peer holds, and the
    /// records of its leaf zone that changed after `since` (0: all).
    pub fn cluster_view(&self, since: u64) -> ClusterView {
        let membership = self.view.membership();
        let tree = self.view.tree();
        let records: Vec<_> = self
            .view
            .records()
            .filter(|(_, seq)| *seq > since)
            .filter_map(|(r, _)| membership.get(r.machine).map(|m| (m.clone(), r.clone())))
            .collect();
        let record_ages_ms = self.ages_of(&records);
        let names = |sample: &[u32]| -> Vec<MachineId> {
            sample
                .iter()
                .filter_map(|&m| membership.get(m).cloned())
                .collect()
        };
        let mut zones: Vec<ZoneInfo> = self
            .view
            .rows()
            .map(|(_, child, row)| {
                let zone = tree.zone(child);
                ZoneInfo {
                    zone: child,
                    name: zone.name.clone(),
                    parent: zone.parent,
                    depth: zone.depth,
                    leaf: zone.is_leaf(),
                    own: self.view.is_own(child),
                    row: row.map(|r| (r.order, r.agg.clone())),
                    peers: row.map_or_else(Vec::new, |r| names(&r.agg.up_sample)),
                }
            })
            .collect();
        let root = self.view.root();
        if let Some(zone) = tree.get(root.zone) {
            zones.insert(
                0,
                ZoneInfo {
                    zone: root.zone,
                    name: zone.name.clone(),
                    parent: None,
                    depth: 0,
                    leaf: zone.is_leaf(),
                    own: true,
                    row: Some((root.order, root.agg.clone())),
                    peers: names(&root.agg.up_sample),
                },
            );
        }
        ClusterView {
            seq: self.view.seq(),
            answered_by: self.me.clone(),
            membership_version: membership.version,
            machines: membership.len() as u32,
            livetag: self.state.livetag,
            records,
            root: root.agg.clone(),
            now_ms: self.now,
            as_of_ms: root.order.as_of_ms,
            zones,
            peer: Default::default(),
            record_ages_ms,
            bad_versions: (root.agg.bad_sample.iter())
                .filter_map(|m| Some((membership.get(m.machine)?.clone(), m.bad)))
                .collect(),
        }
    }

    /// `zone_records`: a page of the records of this peer's own leaf zone. Refused for
    /// another membership version or another zone (the console asks a peer of that zone).
    pub fn zone_records(&self, req: &ZoneRecordsRequest) -> Result<ZoneRecords, Refusal> {
        let membership = self.view.membership();
        if req.membership_version != membership.version {
            return Err(Refusal::Invalid(format!(
                "zone_records for membership version {}: this peer has version {}",
                req.membership_version, membership.version
            )));
        }
        let tree = self.view.tree();
        let leaf = self.view.path().last();
        let Some(zone) = tree.get(req.zone).filter(|_| leaf == Some(req.zone)) else {
            return Err(Refusal::NotFound(format!(
                "zone {} is not the leaf zone of {}: ask a peer of that zone",
                req.zone, self.me
            )));
        };
        let limit = req.limit.min(ZONE_RECORDS_PAGE) as usize;
        let records: Vec<_> = tree
            .machines(req.zone)
            .iter()
            .skip(req.offset as usize)
            .take(limit)
            .filter_map(|&m| Some((membership.get(m)?.clone(), self.view.get(m)?.clone())))
            .collect();
        Ok(ZoneRecords {
            answered_by: self.me.clone(),
            zone: req.zone,
            total: zone.len() as u32,
            now_ms: self.now,
            record_ages_ms: self.ages_of(&records),
            records,
        })
    }

    /// The ages of `records` in this peer's view ([`View::age_ms`]), in order.
    fn ages_of(&self, records: &[(MachineId, MachineRecord)]) -> Vec<u64> {
        records
            .iter()
            .map(|(_, r)| self.view.age_ms(r.machine).unwrap_or(0))
            .collect()
    }
}
