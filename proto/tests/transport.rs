//! The Noise transport end to end, on loopback: every RPC of both services, a 5 MiB payload
//! each way, the wrong cluster key, and clients and servers that misbehave (garbage, truncated
//! or oversized frames, silence). After each misbehaving client the server must still serve a
//! good one; a misbehaving server must give the client a clean `ProtoError`.
//!
//! Every listener binds 127.0.0.1:0, and nothing sleeps: tests wait on conditions, each under
//! a timeout.

use std::{
    future::Future,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, future::join_all};
use smon_proto::{
    ZoneRecords, ZoneRecordsRequest,
    noise::{self, NoiseCodec},
    tarpc::{
        context,
        server::{BaseChannel, Channel},
    },
    transport::{self, ServeLimits, ServerTransport},
    *,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::codec::Encoder;

/// Client-side connect and handshake timeout for the good clients.
const CONNECT: Duration = Duration::from_secs(10);
/// The longest any single wait in these tests may take before it counts as a hang (generous:
/// a debug build encrypts and serializes 5 MiB slowly, on 2 cores shared with other tests).
const PATIENCE: Duration = Duration::from_secs(90);
const MIB: usize = 1 << 20;
const MAX_FRAME_BUF: usize = noise::MAX_FRAME + 2;

// ---------------------------------------------------------------------------------------------
// Test services: each answer is derived from the request, so a mixed-up or corrupted answer
// cannot pass.

#[derive(Clone)]
struct TestPeer;

/// Deterministic bytes, different at every offset of a 251-byte cycle.
fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| ((offset + i) % 251) as u8 ^ 0x5a)
        .collect()
}

fn manifest(name: &str, version: Version, files: usize) -> PackageManifest {
    PackageManifest {
        kind: PackageKind::App,
        name: name.to_owned(),
        version,
        files: (0..files)
            .map(|i| FileDigest {
                path: format!("bin/file-{i:06}"),
                size: i as u64,
                sha256: sha256(&(i as u64).to_le_bytes()),
                mode: 0o644,
            })
            .collect(),
        signer: String::new(),
        signature: Vec::new(),
    }
}

fn chunk(name: &str, req: ChunkRequest) -> Result<Chunk, Refusal> {
    if req.max_len == 0 {
        return Err(Refusal::Invalid("empty chunk requested".into()));
    }
    Ok(Chunk {
        manifest: (req.offset == 0).then(|| manifest(name, req.version, 2)),
        total_len: req.offset + u64::from(req.max_len),
        offset: req.offset,
        data: pattern(req.offset, req.max_len as usize),
    })
}

fn chunk_req(version: Version, offset: u64, max_len: u32) -> ChunkRequest {
    ChunkRequest {
        session: offset ^ 0xfeed,
        version,
        offset,
        max_len,
    }
}

fn test_membership() -> Membership {
    Membership::parse("test", "local:a\nalice@host-1:2222\n10.0.0.1\n", 7).unwrap()
}

impl PeerService for TestPeer {
    async fn ping(self, _: context::Context, ping: Ping) -> Pong {
        Pong {
            from: "answerer@host-1".parse().unwrap(),
            version: Version::new(
                ping.version.major,
                ping.version.minor,
                ping.version.patch + 1,
            ),
            state: PeerState::Running,
            livetag: flipped(&ping.livetag),
            rekey: Default::default(),
            membership_version: ping.membership_version + 1,
            gossip: ping.gossip,
        }
    }

    async fn retrieve_peer(self, _: context::Context, req: ChunkRequest) -> Result<Chunk, Refusal> {
        chunk("smon-peer", req)
    }

    async fn exchange_livetag(self, _: context::Context, tag: SignedLiveTag) -> SignedLiveTag {
        flipped(&tag)
    }

    async fn exchange_member(self, _: context::Context, version: u64) -> MemberReply {
        let ours = test_membership();
        MemberReply {
            version: ours.version.max(version),
            blob: (version < ours.version).then(|| ours.encode()),
        }
    }

    async fn retrieve_member(self, _: context::Context) -> Vec<u8> {
        test_membership().encode()
    }

    async fn exchange_app(self, _: context::Context, offer: AppOffer) -> AppReply {
        let app = offer.app;
        if offer.from == MachineId::local("server") {
            return AppReply::Have; // our own offer, come back
        }
        match app.desired_rev {
            0 => AppReply::Want,
            1 => AppReply::Have,
            rev => AppReply::Newer(AppDecl {
                desired_rev: rev + 1,
                ..app
            }),
        }
    }

    async fn retrieve_app(
        self,
        _: context::Context,
        name: String,
        req: ChunkRequest,
    ) -> Result<Chunk, Refusal> {
        if name == "missing" {
            return Err(Refusal::NotFound(name));
        }
        chunk(&name, req)
    }

    async fn set_app_status(
        self,
        _: context::Context,
        desired: MachineAppDesired,
    ) -> Result<(), Refusal> {
        match desired.desired {
            DesiredState::Ignore => Err(Refusal::Denied(format!(
                "{} may not be ignored",
                desired.name
            ))),
            _ => Ok(()),
        }
    }

    async fn get_app_status(self, _: context::Context, name: Option<String>) -> Vec<AppStatus> {
        let name = name.unwrap_or_else(|| "all".into());
        vec![AppStatus {
            restarts: name.len() as u32,
            reason: None,
            name,
            version: Version::new(1, 2, 3),
            desired: DesiredState::Online,
            state: AppState::Backoff,
        }]
    }

    async fn cluster_view(self, _: context::Context, since: u64) -> ClusterView {
        ClusterView {
            seq: since + 1,
            answered_by: MachineId::local("server"),
            membership_version: 7,
            machines: 3,
            livetag: LiveTag::default(),
            records: vec![(
                MachineId::local("a"),
                MachineRecord {
                    rev: since,
                    state: PeerState::Deploying,
                    ..MachineRecord::empty(0)
                },
            )],
            ..ClusterView::empty(MachineId::local("server"))
        }
    }

    async fn zone_records(
        self,
        _: context::Context,
        req: ZoneRecordsRequest,
    ) -> Result<ZoneRecords, Refusal> {
        Err(Refusal::NotFound(format!("zone {}", req.zone)))
    }
    async fn read_log(
        self,
        _: context::Context,
        req: smon_proto::LogRequest,
    ) -> Result<smon_proto::LogChunk, Refusal> {
        Err(Refusal::NotFound(format!("the log of {}", req.machine)))
    }
    async fn control(self, _: context::Context, action: ControlAction) -> Result<String, Refusal> {
        match action {
            ControlAction::SetLiveTag { tag } => Ok(format!("livetag enabled={}", tag.tag.enabled)),
            ControlAction::Rekey { rekey } => Ok(format!("rekey to epoch {}", rekey.epoch)),
            ControlAction::SetMembership { blob } => Membership::decode(&blob)
                .map(|m| format!("{} machines at version {}", m.len(), m.version))
                .map_err(|e| Refusal::Invalid(e.to_string())),
            ControlAction::PushRelease {
                offset,
                total,
                data,
            } => Ok(format!(
                "{} bytes at {offset} of {total}, sum {}",
                data.len(),
                data.iter().map(|&b| u64::from(b)).sum::<u64>()
            )),
            ControlAction::PushApp { total, data, .. } => {
                Ok(format!("{} of {total} application bytes", data.len()))
            }
            ControlAction::SetAppDesired {
                name, desired, rev, ..
            } => Ok(format!("{name} set {desired} at {rev}")),
            ControlAction::Shutdown { .. } => Err(Refusal::Busy("shutting down already".into())),
        }
    }
}

#[derive(Clone)]
struct TestAgent;

const AGENT_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKey test@smon";

impl AgentService for TestAgent {
    async fn resolve_challenge(
        self,
        _: context::Context,
        req: ChallengeRequest,
    ) -> Result<Vec<u8>, Refusal> {
        if req.target == MachineId::local("forbidden") {
            return Err(Refusal::Denied(format!("{} is not a member", req.target)));
        }
        let mut data = req.data;
        data.reverse();
        Ok(data)
    }

    async fn sign_package(
        self,
        _: context::Context,
        mut manifest: PackageManifest,
        _proof: Vec<u8>,
    ) -> Result<PackageManifest, Refusal> {
        if manifest.files.is_empty() {
            return Err(Refusal::RateLimited);
        }
        manifest.signer = AGENT_KEY.into();
        manifest.signature = sha256(&manifest.signing_bytes()).to_vec();
        Ok(manifest)
    }

    async fn sign_membership(
        self,
        _: context::Context,
        blob: Vec<u8>,
        _proof: Vec<u8>,
    ) -> Result<Vec<u8>, Refusal> {
        Ok(blob)
    }

    async fn sign_control(
        self,
        _: context::Context,
        bytes: Vec<u8>,
        proof: Vec<u8>,
    ) -> Result<Vec<u8>, Refusal> {
        if proof.is_empty() {
            return Err(Refusal::Denied("no operator proof".into()));
        }
        Ok(bytes)
    }

    async fn public_key(self, _: context::Context) -> String {
        AGENT_KEY.into()
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after {PATIENCE:?}"))
}

async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A peer server on a fresh loopback port.
async fn peer_server(key: &ClusterKey, handshake_timeout: Duration) -> SocketAddr {
    let limits = ServeLimits {
        handshake: handshake_timeout,
        ..ServeLimits::default()
    };
    peer_server_with(key, limits).await
}

async fn peer_server_with(key: &ClusterKey, limits: ServeLimits) -> SocketAddr {
    peer_server_keys(key.clone(), limits).await
}

/// A peer server whose handshakes take their keys from `keys` (a keyring handle, say).
async fn peer_server_keys(
    keys: impl NoiseKeys + Clone + Send + Sync + 'static,
    limits: ServeLimits,
) -> SocketAddr {
    let (listener, addr) = listen().await;
    tokio::spawn(transport::serve_connections(
        listener,
        keys,
        limits,
        |t: ServerTransport<PeerServiceRequest, PeerServiceResponse>, _| async move {
            BaseChannel::with_defaults(t)
                .execute(TestPeer.serve())
                .for_each(transport::spawn_request)
                .await
        },
    ));
    addr
}

async fn agent_server(key: &ClusterKey) -> SocketAddr {
    let (listener, addr) = listen().await;
    tokio::spawn(transport::serve_connections(
        listener,
        key.clone(),
        ServeLimits::default(),
        |t: ServerTransport<AgentServiceRequest, AgentServiceResponse>, _| async move {
            BaseChannel::with_defaults(t)
                .execute(TestAgent.serve())
                .for_each(transport::spawn_request)
                .await
        },
    ));
    addr
}

/// A context that allows big payloads in a debug build.
fn ctx() -> context::Context {
    let mut ctx = context::current();
    ctx.deadline = Instant::now() + PATIENCE;
    ctx
}

/// A livetag with a stand-in signature (the test servers only carry it).
fn signed_tag(enabled: bool, version: u64) -> SignedLiveTag {
    SignedLiveTag {
        tag: LiveTag { enabled, version },
        signature: format!("sig {enabled} {version}").into_bytes(),
    }
}

/// The test server's answer to a livetag: the other state, one version up, signed.
fn flipped(tag: &SignedLiveTag) -> SignedLiveTag {
    signed_tag(!tag.tag.enabled, tag.tag.version + 1)
}

fn machine_desired(desired: DesiredState) -> MachineAppDesired {
    MachineAppDesired {
        machine: MachineId::local("web-1"),
        name: "web".into(),
        desired,
        rev: 7,
        signature: b"sig".to_vec(),
    }
}

fn ping_from(name: &str) -> Ping {
    Ping {
        from: MachineId::local(name),
        version: Version::new(1, 2, 3),
        livetag: signed_tag(true, 4),
        rekey: Default::default(),
        membership_version: 5,
        gossip: Gossip {
            membership_version: 5,
            membership_digest: 9,
            records: vec![
                MachineRecord::empty(1).into(),
                MachineRecord::empty(2).into(),
            ],
            rows: Vec::new(),
            digest: Vec::new(),
        },
    }
}

/// A fresh, good client connects and gets a correct pong: the server still works.
async fn assert_serves(addr: SocketAddr, key: &ClusterKey) {
    within("a good client after a bad one", async {
        let client = transport::peer_client(addr, key, CONNECT).await.unwrap();
        let pong = client.ping(ctx(), ping_from("good")).await.unwrap();
        assert_eq!(pong.version, Version::new(1, 2, 4));
        assert_eq!(pong.membership_version, 6);
    })
    .await;
}

/// Read until the other side closes (EOF, or a reset when it closed with our bytes unread);
/// returns what arrived before.
async fn wait_closed(stream: &mut TcpStream) -> Vec<u8> {
    wait_closed_after(stream, "the server closing the connection").await
}

async fn wait_closed_after(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    within(what, async {
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return received,
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return received,
                Err(e) => panic!("unexpected read error: {e}"),
            }
        }
    })
    .await
}

fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Round trips: one test per RPC of the peer service, then the core's calls and the agent's.

/// A client of a fresh [`TestPeer`] server on loopback.
async fn test_peer() -> PeerServiceClient {
    let key = ClusterKey::generate();
    let addr = peer_server(&key, noise::HANDSHAKE_TIMEOUT).await;
    within(
        "connecting to the test peer",
        transport::peer_client(addr, &key, CONNECT),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn ping_round_trips() {
    let client = test_peer().await;
    within("ping", async {
        let ping = ping_from("m1");
        let pong = client.ping(ctx(), ping.clone()).await.unwrap();
        assert_eq!(
            pong,
            Pong {
                from: "answerer@host-1".parse().unwrap(),
                version: Version::new(1, 2, 4),
                state: PeerState::Running,
                livetag: signed_tag(false, 5),
                rekey: Default::default(),
                membership_version: 6,
                gossip: ping.gossip.clone(),
            }
        );
    })
    .await;
}

#[tokio::test]
async fn retrieve_peer_round_trips() {
    let client = test_peer().await;
    within("retrieve_peer", async {
        let req = chunk_req(Version::new(2, 0, 0), 0, 1000);
        let first = client.retrieve_peer(ctx(), req.clone()).await.unwrap();
        assert_eq!(first.unwrap(), chunk("smon-peer", req).unwrap());
        let later = chunk_req(Version::new(2, 0, 0), 1000, 10);
        let second = client.retrieve_peer(ctx(), later).await.unwrap().unwrap();
        assert_eq!(second.manifest, None);
        assert_eq!(second.data, pattern(1000, 10));
        let refused = chunk_req(Version::new(2, 0, 0), 0, 0);
        assert!(matches!(
            client.retrieve_peer(ctx(), refused).await.unwrap(),
            Err(Refusal::Invalid(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn exchange_livetag_round_trips() {
    let client = test_peer().await;
    within("exchange_livetag", async {
        let tag = signed_tag(true, 9);
        assert_eq!(
            client.exchange_livetag(ctx(), tag).await.unwrap(),
            signed_tag(false, 10)
        );
    })
    .await;
}

#[tokio::test]
async fn exchange_member_round_trips() {
    let client = test_peer().await;
    within("exchange_member", async {
        let newer = client.exchange_member(ctx(), 3).await.unwrap();
        assert_eq!(newer.version, 7);
        let blob = newer.blob.expect("the server's list is newer");
        assert_eq!(Membership::decode(&blob).unwrap(), test_membership());
        assert_eq!(
            client.exchange_member(ctx(), 8).await.unwrap(),
            MemberReply {
                version: 8,
                blob: None
            }
        );
    })
    .await;
}

#[tokio::test]
async fn retrieve_member_round_trips() {
    let client = test_peer().await;
    within("retrieve_member", async {
        let blob = client.retrieve_member(ctx()).await.unwrap();
        assert_eq!(Membership::decode(&blob).unwrap(), test_membership());
    })
    .await;
}

#[tokio::test]
async fn exchange_app_round_trips() {
    let client = test_peer().await;
    within("exchange_app", async {
        let app = AppDecl {
            name: "web".into(),
            version: Version::new(0, 3, 0),
            desired: DesiredState::Online,
            desired_rev: 0,
            desired_sig: Vec::new(),
        };
        let offer = |from: &str, desired_rev: u64| AppOffer {
            from: MachineId::local(from),
            app: AppDecl {
                desired_rev,
                ..app.clone()
            },
        };
        assert_eq!(
            client.exchange_app(ctx(), offer("m1", 0)).await.unwrap(),
            AppReply::Want
        );
        assert_eq!(
            client.exchange_app(ctx(), offer("m1", 1)).await.unwrap(),
            AppReply::Have
        );
        assert_eq!(
            client
                .exchange_app(ctx(), offer("server", 0))
                .await
                .unwrap(),
            AppReply::Have
        );
        assert_eq!(
            client.exchange_app(ctx(), offer("m1", 5)).await.unwrap(),
            AppReply::Newer(AppDecl {
                desired_rev: 6,
                ..app.clone()
            })
        );
    })
    .await;
}

#[tokio::test]
async fn retrieve_app_round_trips() {
    let client = test_peer().await;
    within("retrieve_app", async {
        let req = chunk_req(Version::new(0, 3, 0), 0, 77);
        let web = client
            .retrieve_app(ctx(), "web".into(), req.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(web.manifest.unwrap().name, "web");
        assert_eq!(web.data, pattern(0, 77));
        assert_eq!(
            client
                .retrieve_app(ctx(), "missing".into(), req)
                .await
                .unwrap(),
            Err(Refusal::NotFound("missing".into()))
        );
    })
    .await;
}

#[tokio::test]
async fn set_app_status_round_trips() {
    let client = test_peer().await;
    within("set_app_status", async {
        assert_eq!(
            client
                .set_app_status(ctx(), machine_desired(DesiredState::Offline))
                .await
                .unwrap(),
            Ok(())
        );
        assert_eq!(
            client
                .set_app_status(ctx(), machine_desired(DesiredState::Ignore))
                .await
                .unwrap(),
            Err(Refusal::Denied("web may not be ignored".into()))
        );
    })
    .await;
}

#[tokio::test]
async fn get_app_status_round_trips() {
    let client = test_peer().await;
    within("get_app_status", async {
        let statuses = client
            .get_app_status(ctx(), Some("db".into()))
            .await
            .unwrap();
        assert_eq!(statuses.len(), 1);
        assert_eq!((statuses[0].name.as_str(), statuses[0].restarts), ("db", 2));
        assert_eq!(statuses[0].state, AppState::Backoff);
        let all = client.get_app_status(ctx(), None).await.unwrap();
        assert_eq!(all[0].name, "all");
    })
    .await;
}

#[tokio::test]
async fn cluster_view_round_trips() {
    let client = test_peer().await;
    within("cluster_view", async {
        let view = client.cluster_view(ctx(), 41).await.unwrap();
        assert_eq!(view.seq, 42);
        assert_eq!(view.answered_by, MachineId::local("server"));
        assert_eq!(view.records.len(), 1);
        assert_eq!(view.records[0].1.rev, 41);
        assert_eq!(view.records[0].1.state, PeerState::Deploying);
    })
    .await;
}

#[tokio::test]
async fn control_round_trips() {
    let client = test_peer().await;
    within("control", async {
        assert_eq!(
            client
                .control(
                    ctx(),
                    ControlAction::SetLiveTag {
                        tag: signed_tag(false, 3),
                    },
                )
                .await
                .unwrap(),
            Ok("livetag enabled=false".into())
        );
        let blob = test_membership().encode();
        assert_eq!(
            client
                .control(ctx(), ControlAction::SetMembership { blob })
                .await
                .unwrap(),
            Ok("3 machines at version 7".into())
        );
        let refused = client
            .control(
                ctx(),
                ControlAction::SetMembership {
                    blob: b"not a blob".to_vec(),
                },
            )
            .await
            .unwrap();
        assert!(
            matches!(&refused, Err(Refusal::Invalid(why)) if why.contains("membership blob")),
            "{refused:?}"
        );
        assert_eq!(
            client
                .control(
                    ctx(),
                    ControlAction::PushRelease {
                        offset: 1 << 20,
                        total: 3 << 20,
                        data: vec![3; 1000],
                    }
                )
                .await
                .unwrap(),
            Ok("1000 bytes at 1048576 of 3145728, sum 3000".into())
        );
        assert_eq!(
            client
                .control(ctx(), ControlAction::Shutdown { stop_apps: true })
                .await
                .unwrap(),
            Err(Refusal::Busy("shutting down already".into()))
        );
    })
    .await;
}

#[tokio::test]
async fn the_core_calls_map_onto_the_client() {
    use smon_proto::InvokePeerCall;
    let key = ClusterKey::generate();
    let addr = peer_server(&key, noise::HANDSHAKE_TIMEOUT).await;
    within("PeerCall::invoke", async {
        let client = transport::peer_client(addr, &key, CONNECT).await.unwrap();
        let tag = signed_tag(false, 1);
        let req = chunk_req(Version::new(1, 0, 0), 5, 3);
        let app = AppDecl {
            name: "a".into(),
            version: Version::new(1, 0, 0),
            desired: DesiredState::Offline,
            desired_rev: 1,
            desired_sig: b"sig".to_vec(),
        };
        let calls = [
            PeerCall::Ping(ping_from("core")),
            PeerCall::ExchangeLivetag(tag),
            PeerCall::ExchangeMember(0),
            PeerCall::ExchangeApp(AppOffer {
                from: MachineId::local("core"),
                app,
            }),
            PeerCall::RetrievePeer(req.clone()),
        ];
        let mut replies = Vec::new();
        for call in calls {
            replies.push(call.invoke(&client, ctx()).await.unwrap());
        }
        assert!(matches!(&replies[0], PeerReply::Pong(p) if p.membership_version == 6));
        assert_eq!(replies[1], PeerReply::Livetag(signed_tag(true, 2)));
        assert!(matches!(&replies[2], PeerReply::Member(m) if m.version == 7 && m.blob.is_some()));
        assert_eq!(replies[3], PeerReply::App(AppReply::Have));
        assert_eq!(replies[4], PeerReply::Chunk(chunk("smon-peer", req)));
    })
    .await;
}

#[tokio::test]
async fn every_agent_rpc_round_trips() {
    let key = ClusterKey::generate();
    let addr = agent_server(&key).await;
    within("agent rpcs", async {
        let client = transport::agent_client(addr, &key, CONNECT).await.unwrap();
        let req = ChallengeRequest {
            requester: MachineId::local("m1"),
            target: "alice@host:2222".parse().unwrap(),
            data: b"session id, user, ssh-connection, publickey".to_vec(),
        };
        let mut expected = req.data.clone();
        expected.reverse();
        assert_eq!(
            client.resolve_challenge(ctx(), req.clone()).await.unwrap(),
            Ok(expected)
        );
        let forbidden = ChallengeRequest {
            target: MachineId::local("forbidden"),
            ..req
        };
        assert_eq!(
            client.resolve_challenge(ctx(), forbidden).await.unwrap(),
            Err(Refusal::Denied("local:forbidden is not a member".into()))
        );

        let unsigned = manifest("smon-peer", Version::new(1, 0, 0), 3);
        let signed = client
            .sign_package(ctx(), unsigned.clone(), Vec::new())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(signed.signer, AGENT_KEY);
        assert_eq!(signed.files, unsigned.files);
        assert_eq!(signed.signature, sha256(&signed.signing_bytes()).to_vec());
        assert_eq!(
            client
                .sign_package(
                    ctx(),
                    manifest("empty", Version::new(1, 0, 0), 0),
                    Vec::new()
                )
                .await
                .unwrap(),
            Err(Refusal::RateLimited)
        );

        assert_eq!(client.public_key(ctx()).await.unwrap(), AGENT_KEY);
    })
    .await;
}

#[tokio::test]
async fn five_mib_round_trip_byte_identical_both_ways() {
    let key = ClusterKey::generate();
    let peer = peer_server(&key, noise::HANDSHAKE_TIMEOUT).await;
    let agent = agent_server(&key).await;
    within("5 MiB payloads", async {
        // Server to client: one 5 MiB chunk (the codec splits it into ~80 Noise frames).
        let client = transport::peer_client(peer, &key, CONNECT).await.unwrap();
        let req = chunk_req(Version::new(1, 0, 0), 12_345, 5 * MIB as u32);
        let big = client.retrieve_peer(ctx(), req).await.unwrap().unwrap();
        assert_eq!(big.data.len(), 5 * MIB);
        assert!(big.data == pattern(12_345, 5 * MIB), "payload corrupted");

        // Client to server and back: 5 MiB up, reversed, 5 MiB down.
        let agent = transport::agent_client(agent, &key, CONNECT).await.unwrap();
        let data = garbage(5 * MIB, 42);
        let mut expected = data.clone();
        expected.reverse();
        let req = ChallengeRequest {
            requester: MachineId::local("m1"),
            target: MachineId::local("m2"),
            data,
        };
        let back = agent.resolve_challenge(ctx(), req).await.unwrap().unwrap();
        assert!(back == expected, "payload corrupted");
    })
    .await;
}

#[tokio::test]
async fn a_big_manifest_round_trips() {
    let key = ClusterKey::generate();
    let agent = agent_server(&key).await;
    within("a big manifest", async {
        let agent = transport::agent_client(agent, &key, CONNECT).await.unwrap();
        // 30,000 files: over a MiB encoded, so many Noise frames each way.
        let unsigned = manifest("big", Version::new(1, 0, 0), 30_000);
        assert!(wire_size(&unsigned) > MIB as u64);
        let signed = agent
            .sign_package(ctx(), unsigned.clone(), Vec::new())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(signed.files, unsigned.files);
        assert_eq!(signed.signature, sha256(&signed.signing_bytes()).to_vec());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_and_many_calls_in_flight() {
    let key = ClusterKey::generate();
    let addr = peer_server(&key, noise::HANDSHAKE_TIMEOUT).await;
    within("concurrent calls", async {
        let clients = join_all((0..8).map(|_| transport::peer_client(addr, &key, CONNECT))).await;
        let calls = clients.into_iter().enumerate().flat_map(|(c, client)| {
            let client = client.unwrap();
            (0..32u64).map(move |i| {
                let client = client.clone();
                async move {
                    let since = c as u64 * 1000 + i;
                    let view = client.cluster_view(ctx(), since).await.unwrap();
                    assert_eq!(view.seq, since + 1);
                }
            })
        });
        join_all(calls).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The wrong key.

#[tokio::test]
async fn wrong_key_is_refused_on_both_sides_and_the_server_keeps_serving() {
    let key = ClusterKey::generate();
    let addr = peer_server(&key, noise::HANDSHAKE_TIMEOUT).await;
    let wrong = ClusterKey::generate();
    for _ in 0..3 {
        let err = within(
            "a wrong-key client",
            transport::peer_client(addr, &wrong, CONNECT),
        )
        .await
        .expect_err("a wrong key must not connect");
        match &err {
            ProtoError::WrongKey { peer } => assert_eq!(peer, &addr.to_string()),
            other => panic!("expected WrongKey, got {other:?}"),
        }
        assert!(err.to_string().contains("wrong cluster key"), "{err}");
        let err = within(
            "a wrong-key agent client",
            transport::agent_client(addr, &wrong, CONNECT),
        )
        .await
        .expect_err("a wrong key must not connect");
        assert!(matches!(err, ProtoError::WrongKey { .. }), "{err:?}");
    }
    assert_serves(addr, &key).await;
}

// ---------------------------------------------------------------------------------------------
// Key rotation: a keyring accepts both keys during the grace period, only the new one after.

/// A client of `addr` connecting with `keys`: the handshake's result only.
async fn try_connect(addr: SocketAddr, keys: &impl NoiseKeys) -> Result<(), ProtoError> {
    within("a handshake", transport::peer_client(addr, keys, CONNECT))
        .await
        .map(drop)
}

#[tokio::test]
async fn a_keyring_accepts_both_keys_during_grace_and_refuses_the_old_one_after() {
    let (old, new) = (ClusterKey::generate(), ClusterKey::generate());
    let far = keyring::unix_now_ms() + 3_600_000;
    let in_grace = Keyring::from(old.clone())
        .rotated(1, new.clone(), far)
        .unwrap();
    let handle = KeyringHandle::new(in_grace.clone());
    let addr = peer_server_keys(handle.clone(), ServeLimits::default()).await;

    // During the grace period: a peer not yet told (old key only), one on the new key only,
    // and one that rotated (initiates with the old key) all get in; a stranger does not.
    assert_serves(addr, &old).await;
    assert_serves(addr, &new).await;
    try_connect(addr, &in_grace).await.unwrap();
    let err = try_connect(addr, &ClusterKey::generate())
        .await
        .unwrap_err();
    assert!(matches!(err, ProtoError::WrongKey { .. }), "{err:?}");

    // The grace ends (here: the running server's handle is given an expired keyring).
    let after = Keyring::from(old.clone())
        .rotated(1, new.clone(), 1)
        .unwrap();
    handle.set(after.clone());
    let err = try_connect(addr, &old).await.unwrap_err();
    assert!(matches!(err, ProtoError::WrongKey { .. }), "{err:?}");
    assert_serves(addr, &new).await;
    try_connect(addr, &after).await.unwrap();
    // A client in grace initiates with the old key, which a server past it refuses.
    let err = try_connect(addr, &in_grace).await.unwrap_err();
    assert!(matches!(err, ProtoError::WrongKey { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Misbehaving clients, during the handshake.

#[tokio::test]
async fn garbage_instead_of_a_handshake_is_dropped() {
    let key = ClusterKey::generate();
    let addr = peer_server(&key, noise::HANDSHAKE_TIMEOUT).await;
    for (seed, len) in [(1, 10), (2, 100), (3, 4096), (4, 200_000)] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // Some garbage announces a frame longer than what follows: closing our side ends it.
        let bytes = garbage(len, seed);
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
        let answer = wait_closed(&mut stream).await;
        assert!(
            answer.is_empty() || answer == [0, 0],
            "only a refusal frame may come back, got {answer:?}"
        );
        assert_serves(addr, &key).await;
    }
    // HTTP, a classic wrong client: the first two bytes announce a 0x4745-byte frame.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: smon\r\n\r\n")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    wait_closed(&mut stream).await;
    assert_serves(addr, &key).await;
}

#[tokio::test]
async fn a_complete_but_bogus_first_message_gets_a_refusal_frame() {
    let key = ClusterKey::generate();
    let addr = peer_server(&key, noise::HANDSHAKE_TIMEOUT).await;
    for len in [0usize, 5, 48, 64, 1000] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut frame = (len as u16).to_be_bytes().to_vec();
        frame.extend(garbage(len, len as u64 + 7));
        stream.write_all(&frame).await.unwrap();
        // Not closing our side: the server must decide on its own, and say so.
        let answer = wait_closed(&mut stream).await;
        assert_eq!(answer, [0, 0], "a {len}-byte first message");
        assert_serves(addr, &key).await;
    }
}

#[tokio::test]
async fn truncated_and_oversized_handshake_frames_are_dropped() {
    let key = ClusterKey::generate();
    let addr = peer_server(&key, noise::HANDSHAKE_TIMEOUT).await;
    let cases: [&[u8]; 4] = [
        &[0x00],                   // half a length prefix, then EOF
        &[0x00, 0x30],             // a length prefix, then EOF
        &[0x00, 0x30, 1, 2, 3],    // a length prefix, part of the body, then EOF
        &[0xff, 0xff, 9, 9, 9, 9], // announces 65,535 bytes, sends 4
    ];
    for bytes in cases {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        stream.shutdown().await.unwrap();
        let answer = wait_closed(&mut stream).await;
        assert!(answer.is_empty(), "{bytes:?} got {answer:?}");
        assert_serves(addr, &key).await;
    }
}

#[tokio::test]
async fn a_silent_client_times_out_without_blocking_others() {
    let key = ClusterKey::generate();
    let handshake_timeout = Duration::from_millis(300);
    let addr = peer_server(&key, handshake_timeout).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(&[0x00, 0x30, 1, 2]).await.unwrap(); // and then nothing
    // While both hang in their handshakes, good clients are served.
    assert_serves(addr, &key).await;
    assert_serves(addr, &key).await;
    assert!(wait_closed(&mut silent).await.is_empty());
    assert!(wait_closed(&mut half).await.is_empty());
    assert!(
        started.elapsed() >= handshake_timeout,
        "closed after {:?}, before the handshake timeout",
        started.elapsed()
    );
    assert_serves(addr, &key).await;
}

#[tokio::test]
async fn a_client_silent_after_the_handshake_is_closed_after_the_idle_timeout() {
    let key = ClusterKey::generate();
    let idle = Duration::from_millis(400);
    let limits = ServeLimits {
        idle,
        ..ServeLimits::default()
    };
    let addr = peer_server_with(&key, limits).await;
    // A client that calls every idle/4 for four idle periods is never cut.
    let client = transport::peer_client(addr, &key, CONNECT).await.unwrap();
    let mut pace = tokio::time::interval(idle / 4);
    let started = Instant::now();
    while started.elapsed() < idle * 4 {
        pace.tick().await;
        client.ping(ctx(), ping_from("busy")).await.unwrap();
    }
    // One that completes the handshake and then says nothing is closed after `idle`.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let _session = noise::initiate(&mut silent, &key, "silent", CONNECT)
        .await
        .unwrap();
    let handshaken = Instant::now();
    assert!(wait_closed(&mut silent).await.is_empty());
    assert!(
        handshaken.elapsed() >= idle,
        "closed after {:?}",
        handshaken.elapsed()
    );
    assert_serves(addr, &key).await;
}

#[tokio::test]
async fn a_silent_client_is_not_closed_before_the_default_timeout() {
    // With the default 5 s timeout, a client that is merely slow gets to finish: send the
    // first handshake message in two halves, the second one after other clients were served.
    let key = ClusterKey::generate();
    let addr = peer_server(&key, noise::HANDSHAKE_TIMEOUT).await;
    let (mut client_io, mut relay) = tokio::io::duplex(MAX_FRAME_BUF);
    let initiator = tokio::spawn({
        let key = key.clone();
        async move { noise::initiate(&mut client_io, &key, "slow", CONNECT).await }
    });
    let mut hello = vec![0u8; 2];
    relay.read_exact(&mut hello).await.unwrap();
    let mut body = vec![0u8; u16::from_be_bytes([hello[0], hello[1]]) as usize];
    relay.read_exact(&mut body).await.unwrap();
    hello.extend(body);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&hello[..3]).await.unwrap();
    assert_serves(addr, &key).await;
    stream.write_all(&hello[3..]).await.unwrap();
    // Relay the server's answer to the initiator: the handshake completes.
    let mut reply = vec![0u8; 2];
    within(
        "the server's handshake reply",
        stream.read_exact(&mut reply),
    )
    .await
    .unwrap();
    let mut body = vec![0u8; u16::from_be_bytes([reply[0], reply[1]]) as usize];
    stream.read_exact(&mut body).await.unwrap();
    assert!(!body.is_empty(), "refused a correct, slow client");
    reply.extend(body);
    relay.write_all(&reply).await.unwrap();
    within("the slow handshake", initiator)
        .await
        .unwrap()
        .expect("the handshake completes");
}

// ---------------------------------------------------------------------------------------------
// Misbehaving clients, after the handshake.

/// One transport frame made by hand: `u16 length || ciphertext of plain`.
fn frame(session: &mut snow::TransportState, plain: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; noise::MAX_FRAME];
    let n = session.write_message(plain, &mut buf).unwrap();
    let mut out = (n as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&buf[..n]);
    out
}

#[tokio::test]
async fn bad_frames_after_the_handshake_end_only_that_connection() {
    let key = ClusterKey::generate();
    let addr = peer_server(&key, noise::HANDSHAKE_TIMEOUT).await;

    // What the client sends after a correct handshake, and whether it then closes its side.
    // Chunk markers: 0 = last chunk of a message, 1 = more follows.
    type Make = fn(&mut snow::TransportState) -> Vec<u8>;
    let cases: [(&str, Make, bool); 10] = [
        ("garbage", |_| garbage(3000, 9), true),
        (
            "a whole frame of garbage, left open",
            |_| [&3000u16.to_be_bytes()[..], &garbage(3000, 10)].concat(),
            false,
        ),
        (
            "a frame too short for a tag",
            |_| vec![0, 5, 1, 2, 3, 4, 5],
            false,
        ),
        ("a length prefix, then EOF", |_| vec![0x01, 0x00], true),
        (
            "0xFFFF announced, 10 bytes sent, then EOF",
            |_| [&[0xff, 0xff][..], &garbage(10, 11)].concat(),
            true,
        ),
        (
            "an encrypted frame that is not a tarpc message",
            |s| frame(s, b"\0 hello"),
            false,
        ),
        ("a bad chunk marker", |s| frame(s, b"\x09 hello"), false),
        (
            "a tampered frame",
            |s| {
                let mut f = frame(s, b"\x01 first chunk");
                f[10] ^= 0x20;
                f
            },
            false,
        ),
        (
            "a replayed frame",
            |s| {
                let f = frame(s, b"\x01 first chunk");
                [f.clone(), f].concat()
            },
            false,
        ),
        (
            "half a message, then EOF",
            |s| frame(s, b"\x01 more follows"),
            true,
        ),
    ];
    for (what, make, close) in cases {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut session = noise::initiate(&mut stream, &key, "raw", CONNECT)
            .await
            .unwrap();
        stream.write_all(&make(&mut session)).await.unwrap();
        if close {
            stream.shutdown().await.unwrap();
        }
        let answer = wait_closed_after(&mut stream, what).await;
        assert!(answer.is_empty(), "{what}: got {} bytes back", answer.len());
        assert_serves(addr, &key).await;
    }
}

#[tokio::test]
async fn a_message_over_the_cap_ends_the_connection() {
    let key = ClusterKey::generate();
    let addr = peer_server(&key, noise::HANDSHAKE_TIMEOUT).await;
    let (stream, session) = {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let session = noise::initiate(&mut stream, &key, "big", CONNECT)
            .await
            .unwrap();
        (stream, session)
    };
    // Our codec allows more than the server's 16 MiB cap; the server must stop reading.
    let mut codec = NoiseCodec::with_max_message(session, noise::MAX_MESSAGE + MIB);
    let mut out = BytesMut::new();
    codec
        .encode(Bytes::from(vec![0u8; noise::MAX_MESSAGE + 1]), &mut out)
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        // The server hangs up mid-way: a write error is expected.
        let _ = write.write_all(&out).await;
        write
    });
    within("the server hanging up", async {
        let mut buf = vec![0u8; 4096];
        match read.read(&mut buf).await {
            Ok(0) => {}
            Ok(n) => panic!("the server answered {n} bytes"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{e}"),
        }
    })
    .await;
    drop(within("the writer", writer).await);
    assert_serves(addr, &key).await;
}

// ---------------------------------------------------------------------------------------------
// Misbehaving servers: the client gets a clean error, within its timeout.

/// A plain TCP server that does `behave` with every connection.
async fn rogue_server<F, Fut>(behave: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (listener, addr) = listen().await;
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(behave(stream));
        }
    });
    addr
}

async fn connect_err(addr: SocketAddr, timeout: Duration) -> ProtoError {
    let key = ClusterKey::generate();
    within("a client of a rogue server", async {
        transport::connect::<PeerServiceResponse, PeerServiceRequest>(addr, &key, timeout)
            .await
            .map(|_| ())
            .expect_err("a rogue server cannot complete a handshake")
    })
    .await
}

#[tokio::test]
async fn a_server_that_sends_garbage_gives_a_handshake_error() {
    let addr = rogue_server(|mut s| async move {
        let _ = s.write_all(&garbage(70_000, 5)).await;
    })
    .await;
    let err = connect_err(addr, Duration::from_secs(5)).await;
    match &err {
        // Not WrongKey: the operator should look for the wrong program, not the wrong key.
        ProtoError::Handshake { reason, .. } => {
            assert!(reason.contains("not an smon peer"), "{reason}")
        }
        other => panic!("expected a handshake error, got {other:?}"),
    }

    // Garbage that announces more than it sends, then closes.
    let addr = rogue_server(|mut s| async move {
        let _ = s.read(&mut [0u8; 1024]).await;
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
    })
    .await;
    let err = connect_err(addr, Duration::from_secs(5)).await;
    match &err {
        // "closed", or "reset" when the close raced with the rest of our hello.
        ProtoError::Handshake { reason, .. } => {
            assert!(
                reason.contains("closed") || reason.contains("reset"),
                "{reason}"
            )
        }
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_closes_gives_a_handshake_error() {
    let addr = rogue_server(|s| async move { drop(s) }).await;
    let err = connect_err(addr, Duration::from_secs(5)).await;
    assert!(
        matches!(err, ProtoError::Handshake { .. } | ProtoError::Io(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = rogue_server(move |s| {
        let tx = tx.clone();
        async move {
            // Hold the connection open, silently, until the test ends.
            let _ = tx.send(s);
        }
    })
    .await;
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = connect_err(addr, timeout).await;
    match err {
        ProtoError::HandshakeTimeout { after, .. } => assert_eq!(after, timeout),
        other => panic!("expected a handshake timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= timeout);
    assert!(rx.recv().await.is_some(), "the rogue server saw the client");
}

#[tokio::test]
async fn nobody_listening_is_an_io_error() {
    let addr = {
        let (listener, addr) = listen().await;
        drop(listener);
        addr
    };
    let err = connect_err(addr, Duration::from_secs(5)).await;
    match err {
        ProtoError::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("expected connection refused, got {other:?}"),
    }
}
