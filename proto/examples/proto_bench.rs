//! smon-proto benchmark: RPC rate and bulk throughput over the Noise transport on loopback, and
//! the membership codec at 15,000 machines.
//!
//!     cargo run --release -p smon-proto --example proto_bench
//!
//! Prints a Markdown table (the numbers of BENCHMARKS.md). Times are medians of several runs.

#[path = "../tests/support/names.rs"]
mod names;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use smon_proto::{
    ZoneRecords, ZoneRecordsRequest,
    noise::{self, NoiseCodec},
    tarpc::{
        context,
        server::{BaseChannel, Channel},
    },
    transport::{self, ServerTransport},
    *,
};
use tokio::net::TcpListener;
use tokio_util::codec::{Decoder, Encoder};

const MIB: usize = 1 << 20;
const BIG: usize = 5 * MIB;
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct BenchPeer {
    payload: Arc<Vec<u8>>,
}

impl PeerService for BenchPeer {
    async fn ping(self, _: context::Context, ping: Ping) -> Pong {
        Pong {
            from: ping.from,
            version: ping.version,
            state: PeerState::Running,
            livetag: ping.livetag,
            rekey: Default::default(),
            membership_version: ping.membership_version,
            gossip: ping.gossip,
        }
    }
    async fn retrieve_peer(self, _: context::Context, req: ChunkRequest) -> Result<Chunk, Refusal> {
        let len = (req.max_len as usize).min(self.payload.len());
        Ok(Chunk {
            manifest: None,
            total_len: self.payload.len() as u64,
            offset: req.offset,
            data: self.payload[..len].to_vec(),
        })
    }
    async fn exchange_livetag(
        self,
        _: context::Context,
        tag: smon_proto::SignedLiveTag,
    ) -> smon_proto::SignedLiveTag {
        tag
    }
    async fn exchange_member(self, _: context::Context, version: u64) -> MemberReply {
        MemberReply {
            version,
            blob: None,
        }
    }
    async fn retrieve_member(self, _: context::Context) -> Vec<u8> {
        Vec::new()
    }
    async fn exchange_app(self, _: context::Context, _: AppOffer) -> AppReply {
        AppReply::Have
    }
    async fn retrieve_app(
        self,
        _: context::Context,
        name: String,
        _: ChunkRequest,
    ) -> Result<Chunk, Refusal> {
        Err(Refusal::NotFound(name))
    }
    async fn set_app_status(
        self,
        _: context::Context,
        _: smon_proto::MachineAppDesired,
    ) -> Result<(), Refusal> {
        Ok(())
    }
    async fn get_app_status(self, _: context::Context, _: Option<String>) -> Vec<AppStatus> {
        Vec::new()
    }
    async fn cluster_view(self, _: context::Context, since: u64) -> ClusterView {
        ClusterView {
            seq: since,
            ..ClusterView::empty(MachineId::local("bench"))
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
    async fn control(self, _: context::Context, _: ControlAction) -> Result<String, Refusal> {
        Ok(String::new())
    }
}

#[derive(Clone)]
struct BenchAgent;

impl AgentService for BenchAgent {
    async fn resolve_challenge(
        self,
        _: context::Context,
        req: ChallengeRequest,
    ) -> Result<Vec<u8>, Refusal> {
        Ok(req.data)
    }
    async fn sign_package(
        self,
        _: context::Context,
        manifest: PackageManifest,
        _proof: Vec<u8>,
    ) -> Result<PackageManifest, Refusal> {
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

    async fn public_key(self, _: context::Context) -> String {
        String::new()
    }

    async fn sign_control(
        self,
        _: context::Context,
        bytes: Vec<u8>,
        _proof: Vec<u8>,
    ) -> Result<Vec<u8>, Refusal> {
        Ok(bytes)
    }
}

async fn peer_server(key: &ClusterKey, payload: Arc<Vec<u8>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(transport::serve_connections(
        listener,
        key.clone(),
        transport::ServeLimits::default(),
        move |t: ServerTransport<PeerServiceRequest, PeerServiceResponse>, _| {
            let server = BenchPeer {
                payload: payload.clone(),
            };
            async move {
                BaseChannel::with_defaults(t)
                    .execute(server.serve())
                    .for_each(transport::spawn_request)
                    .await
            }
        },
    ));
    addr
}

async fn agent_server(key: &ClusterKey) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(transport::serve_connections(
        listener,
        key.clone(),
        transport::ServeLimits::default(),
        |t: ServerTransport<AgentServiceRequest, AgentServiceResponse>, _| async move {
            BaseChannel::with_defaults(t)
                .execute(BenchAgent.serve())
                .for_each(transport::spawn_request)
                .await
        },
    ));
    addr
}

fn ctx() -> context::Context {
    let mut ctx = context::current();
    ctx.deadline = Instant::now() + Duration::from_secs(60);
    ctx
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Median time of `runs` runs of `f`, after one warm-up run.
fn time_sync<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    std::hint::black_box(f());
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(f());
                start.elapsed()
            })
            .collect(),
    )
}

fn mb_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn row(what: &str, value: String) {
    println!("| {what} | {value} |");
}

fn small_ping() -> Ping {
    Ping {
        from: MachineId::local("bench"),
        version: Version::new(1, 0, 0),
        livetag: Default::default(),
        rekey: Default::default(),
        membership_version: 1,
        gossip: Gossip::default(),
    }
}

fn gossip_ping(records: u32) -> Ping {
    Ping {
        gossip: Gossip {
            membership_version: 1,
            membership_digest: 1,
            records: (0..records)
                .map(|i| MachineRecord::empty(i).into())
                .collect(),
            rows: Vec::new(),
            digest: Vec::new(),
        },
        ..small_ping()
    }
}

/// Sequential calls for about `budget`: (calls per second, median latency).
async fn sequential(client: &PeerServiceClient, ping: &Ping, budget: Duration) -> (f64, Duration) {
    for _ in 0..200 {
        client.ping(ctx(), ping.clone()).await.unwrap();
    }
    let mut latencies = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget {
        let t = Instant::now();
        client.ping(ctx(), ping.clone()).await.unwrap();
        latencies.push(t.elapsed());
    }
    let rate = latencies.len() as f64 / start.elapsed().as_secs_f64();
    (rate, median(latencies))
}

/// `in_flight` tasks sharing one connection, each calling in a loop for about `budget`.
async fn concurrent(
    client: &PeerServiceClient,
    ping: &Ping,
    in_flight: usize,
    budget: Duration,
) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let client = client.clone();
            let ping = ping.clone();
            tokio::spawn(async move {
                let mut calls = 0u64;
                while start.elapsed() < budget {
                    client.ping(ctx(), ping.clone()).await.unwrap();
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    let mut calls = 0;
    for task in tasks {
        calls += task.await.unwrap();
    }
    calls as f64 / start.elapsed().as_secs_f64()
}

/// Sequential small calls with client and server on one thread: no cross-thread wake-ups, so
/// this is the CPU cost of a call through the whole stack (tarpc, bincode, Noise, TCP).
async fn single_thread_rpc() -> (f64, Duration) {
    let key = ClusterKey::generate();
    let peer = peer_server(&key, Arc::new(Vec::new())).await;
    let client = transport::peer_client(peer, &key, TIMEOUT).await.unwrap();
    sequential(&client, &small_ping(), Duration::from_secs(3)).await
}

async fn transport_bench(single_rate: f64, single_latency: Duration) {
    let key = ClusterKey::generate();
    let payload = Arc::new((0..BIG).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let peer = peer_server(&key, payload.clone()).await;
    let agent = agent_server(&key).await;

    let client = transport::peer_client(peer, &key, TIMEOUT).await.unwrap();
    let connects = {
        let mut samples = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            let c = transport::peer_client(peer, &key, TIMEOUT).await.unwrap();
            samples.push(t.elapsed());
            drop(c);
        }
        median(samples)
    };

    let budget = Duration::from_secs(3);
    let small = small_ping();
    let gossip = gossip_ping(16);
    let (seq_rate, seq_latency) = sequential(&client, &small, budget).await;
    let (gossip_rate, gossip_latency) = sequential(&client, &gossip, budget).await;
    let conc_rate = concurrent(&client, &small, 16, budget).await;
    let conc_gossip = concurrent(&client, &gossip, 16, budget).await;

    // 5 MiB down: one retrieve_peer chunk.
    let mut down = Vec::new();
    for i in 0..11 {
        let req = ChunkRequest {
            session: 1,
            version: Version::new(1, 0, 0),
            offset: 0,
            max_len: BIG as u32,
        };
        let t = Instant::now();
        let chunk = client.retrieve_peer(ctx(), req).await.unwrap().unwrap();
        if i > 0 {
            down.push(t.elapsed());
        }
        assert!(chunk.data == *payload);
    }
    let down = median(down);

    // 5 MiB up and the same 5 MiB back: resolve_challenge on an echoing agent.
    let agent = transport::agent_client(agent, &key, TIMEOUT).await.unwrap();
    let mut echo = Vec::new();
    for i in 0..11 {
        let req = ChallengeRequest {
            requester: MachineId::local("a"),
            target: MachineId::local("b"),
            data: payload.to_vec(),
        };
        let t = Instant::now();
        let back = agent.resolve_challenge(ctx(), req).await.unwrap().unwrap();
        if i > 0 {
            echo.push(t.elapsed());
        }
        assert_eq!(back.len(), BIG);
    }
    let echo = median(echo);

    // The Noise codec alone, in memory: encrypt + decrypt 5 MiB.
    let (mut tx, mut rx) = codec_pair().await;
    let message = Bytes::from(payload.to_vec());
    let codec = time_sync(11, || {
        let mut wire = BytesMut::new();
        tx.encode(message.clone(), &mut wire).unwrap();
        rx.decode(&mut wire).unwrap().unwrap()
    });

    println!("| transport (Noise over TCP loopback, one connection) | |");
    println!("|---|---|");
    row("connect + Noise handshake (median of 50)", us(connects));
    row(
        "small RPC (`ping`, empty gossip), sequential, 2 runtime threads",
        format!("{seq_rate:.0} calls/s (median latency {})", us(seq_latency)),
    );
    row(
        "small RPC, sequential, client and server on one thread",
        format!(
            "{single_rate:.0} calls/s (median latency {})",
            us(single_latency)
        ),
    );
    row("small RPC, 16 in flight", format!("{conc_rate:.0} calls/s"));
    row(
        "`ping` with 16 gossip records, sequential",
        format!(
            "{gossip_rate:.0} calls/s (median latency {})",
            us(gossip_latency)
        ),
    );
    row(
        "`ping` with 16 gossip records, 16 in flight",
        format!("{conc_gossip:.0} calls/s"),
    );
    row(
        "5 MiB down (`retrieve_peer`), median of 10",
        format!("{} = {:.0} MB/s", ms(down), mb_per_s(BIG, down)),
    );
    row(
        "5 MiB up + 5 MiB back (`resolve_challenge` echo), median of 10",
        format!(
            "{} = {:.0} MB/s (10 MiB moved)",
            ms(echo),
            mb_per_s(2 * BIG, echo)
        ),
    );
    row(
        "NoiseCodec alone, encrypt + decrypt 5 MiB in memory",
        format!("{} = {:.0} MB/s", ms(codec), mb_per_s(BIG, codec)),
    );
    println!();
}

async fn codec_pair() -> (NoiseCodec, NoiseCodec) {
    let key = ClusterKey::generate();
    let (mut a, mut b) = tokio::io::duplex(1 << 17);
    let (i, r) = tokio::join!(
        noise::initiate(&mut a, &key, "b", TIMEOUT),
        noise::respond(&mut b, &key, "a", TIMEOUT),
    );
    (NoiseCodec::new(i.unwrap()), NoiseCodec::new(r.unwrap()))
}

fn membership_bench(label: &str, names: Vec<String>) {
    let text = names.join("\n") + "\n";
    let parse = time_sync(11, || Membership::parse("bench", &text, 1).unwrap());
    let list = Membership::parse("bench", &text, 1).unwrap();
    let blob = list.encode();
    let front_coded = u32::from_le_bytes(blob[17..21].try_into().unwrap());
    let encode = time_sync(21, || list.encode());
    let decode = time_sync(21, || Membership::decode(&blob).unwrap());
    assert_eq!(Membership::decode(&blob).unwrap(), list);

    println!("| membership: {label} | |");
    println!("|---|---|");
    row("machines", list.len().to_string());
    row(
        "raw size (the list as a text file)",
        format!("{} bytes", text.len()),
    );
    row(
        "sorted + front-coded, before lz4",
        format!("{front_coded} bytes"),
    );
    row(
        "**blob (goal ≤ 60 KB)**",
        format!(
            "**{} bytes** ({:.1} bytes/machine, {:.1}× smaller than the text)",
            blob.len(),
            blob.len() as f64 / list.len() as f64,
            text.len() as f64 / blob.len() as f64
        ),
    );
    row("encode, median of 21", ms(encode));
    row(
        "**decode (goal ≤ 5 ms)**, median of 21",
        format!("**{}**", ms(decode)),
    );
    row("parse the text file, median of 11", ms(parse));
    println!();
}

/// 15,000 realistic names, every SSH machine with a pinned ed25519 host key (random keys:
/// incompressible, the cost of pinning).
fn pinned_membership_bench() {
    let list = Membership::new(
        1,
        names::machine_names(2024, 15_000)
            .iter()
            .map(|n| MachineId::parse_entry(n).unwrap())
            .collect(),
    );
    let mut rng = rand::rng();
    let list = list.with_host_keys(|_| {
        Some(
            smon_proto::ReleasePrivateKey::random(&mut rng, ssh_key::Algorithm::Ed25519)
                .unwrap()
                .public_key()
                .clone(),
        )
    });
    let pinned = list
        .machines()
        .iter()
        .filter(|m| list.host_key(m).is_some())
        .count();
    let blob = list.encode();
    let encode = time_sync(21, || list.encode());
    let decode = time_sync(21, || Membership::decode(&blob).unwrap());
    assert_eq!(Membership::decode(&blob).unwrap(), list);
    println!("| membership: 15,000 realistic names, SSH host keys pinned | |");
    println!("|---|---|");
    row(
        "machines / with a pinned ed25519 key",
        format!("{} / {pinned}", list.len()),
    );
    row(
        "**blob**",
        format!(
            "**{} bytes** ({:.1} bytes/machine)",
            blob.len(),
            blob.len() as f64 / list.len() as f64
        ),
    );
    row("encode, median of 21", ms(encode));
    row(
        "**decode** (every key parsed), median of 21",
        format!("**{}**", ms(decode)),
    );
    println!();
}

fn main() {
    if std::env::args().any(|a| a == "membership") {
        membership_bench(
            "15,000 realistic names (sites with their own conventions)",
            names::machine_names(2024, 15_000),
        );
        pinned_membership_bench();
        return;
    }
    // Other work on the machine moves the latency numbers a lot: say how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "smon-proto benchmark, {} CPUs, release build, load average at start: {}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let one_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (single_rate, single_latency) = one_thread.block_on(single_thread_rpc());
    drop(one_thread);
    runtime.block_on(transport_bench(single_rate, single_latency));
    membership_bench(
        "15,000 realistic names (sites with their own conventions)",
        names::machine_names(2024, 15_000),
    );
    membership_bench(
        "15,000 uniformly random names (worst case: no conventions)",
        names::uniform_machine_names(2024, 15_000),
    );
    pinned_membership_bench();
}
