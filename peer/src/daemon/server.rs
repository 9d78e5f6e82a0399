//! The peer service as the network sees it: every call goes to the actor that owns the core;
//! package chunks are read from disk here.

use std::{sync::Arc, time::Duration};

use smon_proto::{
    AppOffer, AppReply, AppStatus, Chunk, ChunkRequest, ClusterView, ControlAction, KeyringHandle,
    LogChunk, LogRequest, MachineAppDesired, MemberReply, PeerCall, PeerReply, PeerService, Ping,
    Pong, Refusal, SignedLiveTag, ZoneRecords, ZoneRecordsRequest, chunked,
    tarpc::context::Context,
};
use tokio::sync::{mpsc, oneshot};

use super::{actor::Msg, own_package::OwnPackage};

#[derive(Clone)]
pub struct PeerServer {
    pub tx: mpsc::Sender<Msg>,
    pub package: Arc<OwnPackage>,
    pub me: smon_proto::MachineId,
    /// The machine's smon directory (application packages are served from it).
    pub root: std::path::PathBuf,
    /// K_E, to relay a `read_log` to another machine's peer.
    pub key: KeyringHandle,
    /// The connection's remote address (set per connection): named in the log line of
    /// refused control state.
    pub caller: Option<std::net::SocketAddr>,
}

impl PeerServer {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.ok()?;
        rx.await.ok()
    }

    async fn call(&self, call: PeerCall) -> Option<PeerReply> {
        let caller = self.caller;
        self.ask(|reply| Msg::Call(call, caller, reply)).await
    }
}

/// How long a relayed `read_log` may take to connect, and then to be answered.
const RELAY_CONNECT: Duration = Duration::from_millis(1500);
const RELAY_CALL: Duration = Duration::from_secs(5);

/// Ask `machine`'s peer at `addr` for the log `req` names, once (it relays no further), and
/// check that it is that machine's peer that answers.
async fn relay_log(
    key: &KeyringHandle,
    addr: &str,
    mut req: LogRequest,
) -> Result<LogChunk, Refusal> {
    let machine = req.machine.clone();
    req.relayed = true;
    let unreachable = |e: &dyn std::fmt::Display| {
        Refusal::Unreachable(format!(
            "the peer of {machine} ({addr}) does not answer: {e}"
        ))
    };
    let client = smon_proto::transport::peer_client(addr, key, RELAY_CONNECT)
        .await
        .map_err(|e| unreachable(&e))?;
    let mut ctx = smon_proto::tarpc::context::current();
    ctx.deadline = std::time::Instant::now() + RELAY_CALL;
    let chunk = client
        .read_log(ctx, req)
        .await
        .map_err(|e| unreachable(&e))??;
    if chunk.machine != machine {
        return Err(Refusal::Unreachable(format!(
            "{machine}'s address {addr} is answered by the peer of {}",
            chunk.machine
        )));
    }
    Ok(chunk)
}

fn gone() -> Refusal {
    Refusal::Busy("the peer is shutting down".into())
}

impl PeerService for PeerServer {
    async fn ping(self, _: Context, ping: Ping) -> Pong {
        match self.call(PeerCall::Ping(ping)).await {
            Some(PeerReply::Pong(pong)) => pong,
            _ => Pong {
                from: self.me.clone(),
                version: self.package.manifest.version,
                state: smon_proto::PeerState::Stopped,
                livetag: SignedLiveTag::default(),
                rekey: Default::default(),
                membership_version: 0,
                gossip: Default::default(),
            },
        }
    }

    async fn retrieve_peer(self, _: Context, req: ChunkRequest) -> Result<Chunk, Refusal> {
        let session = req.session;
        match self.call(PeerCall::RetrievePeer(req.clone())).await {
            Some(PeerReply::Chunk(Ok(_))) => {}
            Some(PeerReply::Chunk(Err(refusal))) => return Err(refusal),
            _ => return Err(gone()),
        }
        let total = self.package.len;
        let range = chunked::served_range(req.offset, req.max_len, total)?;
        if range.end == total {
            let _ = self.tx.send(Msg::ReleaseFetch(session)).await;
        }
        let data = self
            .package
            .read_at(range.start, range.end - range.start)
            .map_err(|e| Refusal::Busy(format!("reading the package: {e}")))?;
        Ok(Chunk {
            manifest: (req.offset == 0).then(|| self.package.manifest.clone()),
            total_len: total,
            offset: req.offset,
            data,
        })
    }

    async fn exchange_livetag(self, _: Context, tag: SignedLiveTag) -> SignedLiveTag {
        match self.call(PeerCall::ExchangeLivetag(tag)).await {
            Some(PeerReply::Livetag(t)) => t,
            _ => SignedLiveTag::default(),
        }
    }

    async fn exchange_member(self, _: Context, version: u64) -> MemberReply {
        match self.call(PeerCall::ExchangeMember(version)).await {
            Some(PeerReply::Member(m)) => m,
            _ => MemberReply {
                version: 0,
                blob: None,
            },
        }
    }

    async fn retrieve_member(self, _: Context) -> Vec<u8> {
        match self.call(PeerCall::ExchangeMember(0)).await {
            Some(PeerReply::Member(MemberReply { blob: Some(b), .. })) => b,
            _ => Vec::new(),
        }
    }

    async fn exchange_app(self, _: Context, offer: AppOffer) -> AppReply {
        match self.call(PeerCall::ExchangeApp(offer)).await {
            Some(PeerReply::App(a)) => a,
            _ => AppReply::Have,
        }
    }

    /// A slice of an installed application package, read from disk (only verified packages
    /// are ever stored there).
    async fn retrieve_app(
        self,
        _: Context,
        name: String,
        req: ChunkRequest,
    ) -> Result<Chunk, Refusal> {
        let root = self.root.clone();
        let read = tokio::task::spawn_blocking(move || {
            super::apps::install::read_chunk(&root, &name, req.version, req.offset, req.max_len)
        })
        .await
        .map_err(|_| gone())?;
        let (total_len, data) = read?;
        Ok(Chunk {
            manifest: None,
            total_len,
            offset: req.offset,
            data,
        })
    }

    async fn set_app_status(self, _: Context, desired: MachineAppDesired) -> Result<(), Refusal> {
        self.ask(|reply| Msg::SetAppStatus(desired, reply))
            .await
            .unwrap_or_else(|| Err(gone()))
    }

    async fn get_app_status(self, _: Context, name: Option<String>) -> Vec<AppStatus> {
        self.ask(|reply| Msg::GetAppStatus(name, reply))
            .await
            .unwrap_or_default()
    }

    async fn cluster_view(self, _: Context, since: u64) -> ClusterView {
        let me = self.me.clone();
        self.ask(|reply| Msg::View(since, reply))
            .await
            .unwrap_or_else(|| ClusterView::empty(me))
    }

    async fn zone_records(
        self,
        _: Context,
        req: ZoneRecordsRequest,
    ) -> Result<ZoneRecords, Refusal> {
        self.ask(|reply| Msg::ZoneRecords(req, reply))
            .await
            .unwrap_or_else(|| Err(gone()))
    }

    async fn control(self, _: Context, action: ControlAction) -> Result<String, Refusal> {
        self.ask(|reply| Msg::Control(action, reply))
            .await
            .unwrap_or_else(|| Err(gone()))
    }

    /// This machine's log, or the named machine's through its peer (one hop).
    async fn read_log(self, _: Context, req: LogRequest) -> Result<LogChunk, Refusal> {
        if req.machine == self.me {
            let (root, me) = (self.root.clone(), self.me.clone());
            return tokio::task::spawn_blocking(move || {
                super::logs::serve(&root, &me, &req, super::clock::now_ms())
            })
            .await
            .map_err(|_| gone())?;
        }
        if req.relayed {
            return Err(Refusal::Invalid(format!(
                "this is the peer of {}, not of {}",
                self.me, req.machine
            )));
        }
        let machine = req.machine.clone();
        let addr = self
            .ask(|reply| Msg::PeerAddress(machine, reply))
            .await
            .ok_or_else(gone)?
            .ok_or_else(|| {
                Refusal::NotFound(format!(
                    "{} is not in the membership {} holds",
                    req.machine, self.me
                ))
            })?;
        relay_log(&self.key, &addr, req).await
    }
}
