//! Every RPC message as the other side's transport decodes it: the bytes of one reassembled
//! Noise message, through the transport's codec (tarpc's `Bincode` with its default options:
//! `transport::ServerCodec` on a server, `ClientCodec` on a client) into tarpc's envelope
//! around the real request and response enums of `PeerService` and `AgentService`. A value
//! that decodes must re-encode (as tarpc on the other side encodes it) to bytes that decode to
//! the same value, and `wire_size` must count exactly those bytes.

use std::{pin::Pin, time::Instant};

use bytes::BytesMut;
use serde::{Serialize, de::DeserializeOwned};
use smon_proto::{
    AgentServiceRequest, AgentServiceResponse, PeerServiceRequest, PeerServiceResponse,
    tarpc::{
        ClientMessage, Response,
        tokio_serde::{Deserializer, Serializer, formats::Bincode},
    },
    transport::{ClientCodec, ServerCodec},
    wire_size,
};

/// What a peer's server decodes.
pub fn peer_request(data: &[u8]) {
    check(
        data,
        request::<PeerServiceRequest, PeerServiceResponse>,
        fix_request,
    );
}

/// What a peer's client (a peer, the console) decodes.
pub fn peer_reply(data: &[u8]) {
    check(
        data,
        reply::<PeerServiceRequest, PeerServiceResponse>,
        |_| (),
    );
}

/// What the agent's server decodes.
pub fn agent_request(data: &[u8]) {
    check(
        data,
        request::<AgentServiceRequest, AgentServiceResponse>,
        fix_request,
    );
}

/// What an agent's client (a peer, the console) decodes.
pub fn agent_reply(data: &[u8]) {
    check(
        data,
        reply::<AgentServiceRequest, AgentServiceResponse>,
        |_| (),
    );
}

/// A request as a server of `Req`/`Resp` decodes it.
pub fn request<Req, Resp>(data: &[u8]) -> std::io::Result<ClientMessage<Req>>
where
    Req: DeserializeOwned + Unpin,
    Resp: Unpin,
{
    let mut codec = ServerCodec::<Req, Resp>::default();
    Ok(Pin::new(&mut codec)
        .deserialize(&BytesMut::from(data))?
        .into())
}

/// A reply as a client of `Req`/`Resp` decodes it.
pub fn reply<Req, Resp>(data: &[u8]) -> std::io::Result<Response<Resp>>
where
    Req: Unpin,
    Resp: DeserializeOwned + Unpin,
{
    let mut codec = ClientCodec::<Req, Resp>::default();
    Ok(Pin::new(&mut codec)
        .deserialize(&BytesMut::from(data))?
        .into())
}

/// Encode `item` as the transport that sends it does.
pub fn encode<Item, Other>(item: &Item) -> Vec<u8>
where
    Item: Serialize + Unpin,
    Other: Unpin,
{
    let mut codec = Bincode::<Other, Item>::default();
    Pin::new(&mut codec)
        .serialize(item)
        .expect("a decoded value encodes")
        .to_vec()
}

/// The deadline travels as the time left: a request re-encoded later says less. Pin it to
/// "now", which encodes as zero, so that two encodings compare.
fn fix_request<T>(message: &mut ClientMessage<T>) {
    if let ClientMessage::Request(request) = message {
        request.context.deadline = Instant::now();
    }
}

fn check<Item>(data: &[u8], decode: fn(&[u8]) -> std::io::Result<Item>, normalize: fn(&mut Item))
where
    Item: Serialize + Unpin,
{
    let Ok(mut item) = decode(data) else {
        return;
    };
    normalize(&mut item);
    let bytes = encode::<Item, ()>(&item);
    let mut again = decode(&bytes).expect("a re-encoded value decodes");
    normalize(&mut again);
    assert_eq!(encode::<Item, ()>(&again), bytes, "encoding is not stable");
    normalize(&mut item);
    assert_eq!(wire_size(&item), bytes.len() as u64, "wire_size is off");
}

// ---- seeds: one message per variant, with realistic values ------------------------------------

mod examples {
    use std::sync::Arc;

    use smon_proto::{
        Aggregate, AppDecl, AppState, AppStatus, Chunk, ChunkRequest, ClusterView, DesiredState,
        Gossip, LiveTag, MachineId, MachineRecord, PackageManifest, PeerState, Ping, Pong,
        RowOrder, Version, ZoneInfo, ZoneRecords, ZoneRecordsRequest, ZoneRow,
    };

    pub fn machine() -> MachineId {
        MachineId::parse_entry("alice@h1:2222").expect("a machine")
    }
    pub fn version() -> Version {
        Version::new(1, 2, 3)
    }
    pub fn tag() -> LiveTag {
        LiveTag {
            enabled: true,
            version: 7,
        }
    }
    pub fn signed_tag() -> smon_proto::SignedLiveTag {
        smon_proto::SignedLiveTag {
            tag: tag(),
            signature: b"-----BEGIN SSH SIGNATURE-----\n".to_vec(),
        }
    }
    pub fn machine_desired() -> smon_proto::MachineAppDesired {
        smon_proto::MachineAppDesired {
            machine: machine(),
            name: "hello".into(),
            desired: smon_proto::DesiredState::Ignore,
            rev: 1_767_225_601_000,
            signature: b"-----BEGIN SSH SIGNATURE-----\n".to_vec(),
        }
    }
    pub fn status() -> AppStatus {
        AppStatus {
            name: "hello".into(),
            version: version(),
            desired: DesiredState::Online,
            state: AppState::Running,
            restarts: 2,
            reason: None,
        }
    }
    pub fn decl() -> AppDecl {
        AppDecl {
            name: "hello".into(),
            version: version(),
            desired: DesiredState::Offline,
            desired_rev: 3,
            desired_sig: b"-----BEGIN SSH SIGNATURE-----\n".to_vec(),
        }
    }
    pub fn record() -> MachineRecord {
        MachineRecord {
            rev: 4,
            state: PeerState::Running,
            peer_version: Some(version()),
            first_deployed_ms: Some(1_767_225_600_000),
            overhead: 1,
            logins: 2,
            livetag: tag(),
            apps: vec![status()],
            load: 37,
            bad_versions: vec![bad()],
            reason: None,
            ..MachineRecord::empty(1)
        }
    }
    /// A version marked bad on [`record`]'s machine.
    pub fn bad() -> smon_proto::BadVersion {
        smon_proto::BadVersion {
            version: smon_proto::Version::new(9, 0, 0),
            reason: smon_proto::BadReason::Exited { code: 3 },
            at_ms: 1_767_225_600_000,
        }
    }
    /// The aggregate of [`record`]'s machine, in a zone of two.
    pub fn aggregate() -> Aggregate {
        let mut agg = Aggregate {
            machines: 2,
            up_sample: vec![1],
            missing_sample: vec![0],
            bad_sample: vec![smon_proto::BadMark {
                machine: 1,
                bad: bad(),
            }],
            ..Aggregate::default()
        };
        agg.add_record(&record(), 1);
        agg
    }
    pub fn row() -> ZoneRow {
        ZoneRow {
            zone: 3,
            order: RowOrder {
                news: 9,
                rev: 12,
                tiebreak: 1 << 31,
                as_of_ms: 1_767_225_600_000,
            },
            agg: aggregate(),
        }
    }
    pub fn gossip() -> Gossip {
        Gossip {
            membership_version: 2,
            membership_digest: 0x5eed_0f11_57ab_1e00,
            records: vec![Arc::new(record()), Arc::new(MachineRecord::empty(0))],
            rows: vec![Arc::new(row())],
            digest: vec![0, 0, 0x2a, 0x91],
        }
    }
    pub fn zone_records_request() -> ZoneRecordsRequest {
        ZoneRecordsRequest {
            membership_version: 2,
            zone: 3,
            offset: 0,
            limit: 1000,
        }
    }
    pub fn log_request() -> smon_proto::LogRequest {
        smon_proto::LogRequest {
            machine: machine(),
            app: Some("hello".into()),
            from: smon_proto::LogFrom::Tail {
                lines: 100,
                within_ms: Some(600_000),
            },
            relayed: false,
        }
    }
    pub fn log_chunk() -> smon_proto::LogChunk {
        smon_proto::LogChunk {
            machine: machine(),
            data: b"listening on 127.0.0.1:8080\n".to_vec(),
            next: smon_proto::LogCursor {
                file: 0x1234_5678,
                offset: 28,
            },
            cut: false,
            restarted: false,
            more: false,
            untimed: true,
        }
    }
    pub fn zone_records() -> ZoneRecords {
        ZoneRecords {
            answered_by: machine(),
            zone: 3,
            total: 2,
            now_ms: 1_767_225_601_000,
            records: vec![(machine(), record())],
            record_ages_ms: vec![4_000],
        }
    }
    pub fn ping() -> Ping {
        Ping {
            from: machine(),
            version: version(),
            livetag: signed_tag(),
            rekey: Default::default(),
            membership_version: 2,
            gossip: gossip(),
        }
    }
    pub fn pong() -> Pong {
        Pong {
            from: machine(),
            version: version(),
            state: PeerState::Disabled,
            livetag: signed_tag(),
            rekey: Default::default(),
            membership_version: 2,
            gossip: gossip(),
        }
    }
    pub fn chunk_request() -> ChunkRequest {
        ChunkRequest {
            session: 99,
            version: version(),
            offset: 1 << 20,
            max_len: 1 << 20,
        }
    }
    pub fn manifest() -> PackageManifest {
        smon_proto::release::package_manifest(b"\x7fELF", version())
    }
    pub fn chunk() -> Chunk {
        Chunk {
            manifest: Some(manifest()),
            total_len: 10,
            offset: 0,
            data: b"0123456789".to_vec(),
        }
    }
    pub fn view() -> ClusterView {
        ClusterView {
            seq: 5,
            answered_by: MachineId::local("m001"),
            membership_version: 2,
            machines: 2,
            livetag: tag(),
            records: vec![(machine(), record())],
            root: aggregate(),
            now_ms: 1_767_225_601_000,
            as_of_ms: 1_767_225_600_000,
            zones: vec![ZoneInfo {
                zone: 3,
                name: "h1".into(),
                parent: Some(0),
                depth: 1,
                leaf: true,
                own: false,
                row: Some((row().order, row().agg)),
                peers: vec![machine()],
            }],
            bad_versions: vec![(machine(), bad())],
            peer: Default::default(),
            record_ages_ms: vec![4_000],
        }
    }
}

fn sent_request<T>(id: u64, message: T) -> ClientMessage<T> {
    let mut context = smon_proto::tarpc::context::current();
    context.deadline = Instant::now() + std::time::Duration::from_secs(10);
    ClientMessage::Request(smon_proto::tarpc::Request {
        context,
        id,
        message,
    })
}

fn cancel<T>() -> ClientMessage<T> {
    ClientMessage::Cancel {
        trace_context: Default::default(),
        request_id: 3,
    }
}

fn sent_reply<T>(message: T) -> Response<T> {
    Response {
        request_id: 1,
        message: Ok(message),
    }
}

fn server_error<T>() -> Response<T> {
    Response {
        request_id: 2,
        message: Err(smon_proto::tarpc::ServerError::new(
            std::io::ErrorKind::TimedOut,
            "deadline exceeded".into(),
        )),
    }
}

/// Requests to a peer: every call of `PeerService`, and a cancellation.
pub fn peer_request_seeds() -> Vec<Vec<u8>> {
    use PeerServiceRequest as R;
    use examples::*;
    use smon_proto::{AppOffer, ControlAction, DesiredState};
    let membership = crate::membership::seeds().pop().expect("a membership blob");
    let messages = vec![
        R::Ping { ping: ping() },
        R::RetrievePeer {
            req: chunk_request(),
        },
        R::ExchangeLivetag { tag: signed_tag() },
        R::ExchangeMember { version: 3 },
        R::RetrieveMember {},
        R::ExchangeApp {
            offer: AppOffer {
                from: machine(),
                app: decl(),
            },
        },
        R::RetrieveApp {
            name: "hello".into(),
            req: chunk_request(),
        },
        R::SetAppStatus {
            desired: machine_desired(),
        },
        R::GetAppStatus {
            name: Some("hello".into()),
        },
        R::ClusterView { since: 12 },
        R::ZoneRecords {
            req: zone_records_request(),
        },
        R::ReadLog { req: log_request() },
        R::ReadLog {
            req: smon_proto::LogRequest {
                from: smon_proto::LogFrom::After(log_chunk().next),
                relayed: true,
                ..log_request()
            },
        },
        R::Control {
            action: ControlAction::SetLiveTag { tag: signed_tag() },
        },
        R::Control {
            action: ControlAction::SetMembership { blob: membership },
        },
        R::Control {
            action: ControlAction::PushRelease {
                offset: 0,
                total: 4,
                data: b"\x7fELF".to_vec(),
            },
        },
        R::Control {
            action: ControlAction::PushApp {
                offset: 4,
                total: 8,
                data: b"SMON".to_vec(),
            },
        },
        R::Control {
            action: ControlAction::SetAppDesired {
                name: "hello".into(),
                desired: DesiredState::Offline,
                rev: 3,
                signature: b"-----BEGIN SSH SIGNATURE-----\n".to_vec(),
            },
        },
        R::Control {
            action: ControlAction::Shutdown { stop_apps: true },
        },
    ];
    let mut seeds: Vec<Vec<u8>> = messages
        .into_iter()
        .enumerate()
        .map(|(id, m)| encode::<_, ()>(&sent_request(id as u64, m)))
        .collect();
    seeds.push(encode::<_, ()>(&cancel::<PeerServiceRequest>()));
    seeds
}

/// Replies of a peer: every call's answer, refusals, and a server error.
pub fn peer_reply_seeds() -> Vec<Vec<u8>> {
    use PeerServiceResponse as R;
    use examples::*;
    use smon_proto::{AppReply, MemberReply, Refusal};
    let messages = vec![
        R::Ping(pong()),
        R::RetrievePeer(Ok(chunk())),
        R::RetrievePeer(Err(Refusal::Busy("3 fetches".into()))),
        R::ExchangeLivetag(signed_tag()),
        R::ExchangeMember(MemberReply {
            version: 3,
            blob: Some(crate::membership::seeds().pop().expect("a blob")),
        }),
        R::RetrieveMember(b"SMEM".to_vec()),
        R::ExchangeApp(AppReply::Newer(decl())),
        R::ExchangeApp(AppReply::Want),
        R::RetrieveApp(Err(Refusal::NotFound("hello".into()))),
        R::SetAppStatus(Err(Refusal::RateLimited)),
        R::GetAppStatus(vec![status()]),
        R::ClusterView(view()),
        R::ZoneRecords(Ok(zone_records())),
        R::ZoneRecords(Err(Refusal::NotFound(
            "zone 3 is not the leaf zone of m001".into(),
        ))),
        R::ReadLog(Ok(log_chunk())),
        R::ReadLog(Err(Refusal::Unreachable(
            "the peer of local:m2 (127.0.0.1:7946) does not answer".into(),
        ))),
        R::Control(Ok("livetag set to false (version 8)".into())),
        R::Control(Err(Refusal::Denied("package refused".into()))),
    ];
    let mut seeds: Vec<Vec<u8>> = messages
        .into_iter()
        .map(|m| encode::<_, ()>(&sent_reply(m)))
        .collect();
    seeds.push(encode::<_, ()>(&server_error::<PeerServiceResponse>()));
    seeds
}

/// Requests to the agent: every call of `AgentService`, and a cancellation.
pub fn agent_request_seeds() -> Vec<Vec<u8>> {
    use AgentServiceRequest as R;
    use examples::*;
    let challenge = crate::userauth::seeds().swap_remove(0)[1..].to_vec();
    let messages = vec![
        R::ResolveChallenge {
            req: smon_proto::ChallengeRequest {
                requester: smon_proto::MachineId::local("m001"),
                target: machine(),
                data: challenge,
            },
        },
        R::SignPackage {
            manifest: manifest(),
            proof: vec![0x11; 32],
        },
        R::SignMembership {
            blob: crate::membership::seeds().pop().expect("a blob"),
            proof: vec![0x22; 32],
        },
        R::PublicKey {},
        R::SignControl {
            bytes: smon_proto::SignedLiveTag::signing_bytes(&tag()),
            proof: vec![0x33; 32],
        },
    ];
    let mut seeds: Vec<Vec<u8>> = messages
        .into_iter()
        .enumerate()
        .map(|(id, m)| encode::<_, ()>(&sent_request(id as u64, m)))
        .collect();
    seeds.push(encode::<_, ()>(&cancel::<AgentServiceRequest>()));
    seeds
}

/// Replies of the agent.
pub fn agent_reply_seeds() -> Vec<Vec<u8>> {
    use AgentServiceResponse as R;
    use examples::*;
    use smon_proto::Refusal;
    let messages = vec![
        R::ResolveChallenge(Ok(vec![0, 0, 0, 11, b's', b's', b'h'])),
        R::ResolveChallenge(Err(Refusal::Invalid("not a user-auth request".into()))),
        R::SignPackage(Ok(manifest())),
        R::SignMembership(Ok(b"-----BEGIN SSH SIGNATURE-----\n".to_vec())),
        R::PublicKey(crate::keys::release_public().to_openssh().expect("openssh")),
        R::SignControl(Ok(b"-----BEGIN SSH SIGNATURE-----\n".to_vec())),
    ];
    let mut seeds: Vec<Vec<u8>> = messages
        .into_iter()
        .map(|m| encode::<_, ()>(&sent_reply(m)))
        .collect();
    seeds.push(encode::<_, ()>(&server_error::<AgentServiceResponse>()));
    seeds
}
