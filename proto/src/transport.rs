//! Connect and accept helpers that turn a TCP stream into a Noise-encrypted tarpc transport,
//! and the serving loop that keeps accepting whatever a single connection does.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use futures::{TryStreamExt, stream::MapOk};
use tarpc::{ClientMessage, Response, client, tokio_serde::formats::Bincode};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio_util::codec::Framed;

pub use crate::envelope::{
    ClientCodec, MAX_DEADLINE, ServerCodec, WireClientMessage, WireResponse,
};
pub use crate::idle::IdleTimeout;
use crate::{
    AgentServiceClient, PeerServiceClient, ProtoError,
    door::{Door, DoorLimits, Handshake},
    keyring::NoiseKeys,
    noise::{self, NoiseCodec},
};

/// A tarpc transport over Noise over TCP.
pub type NoiseTransport<Item, SinkItem> = tarpc::tokio_serde::Framed<
    Framed<TcpStream, NoiseCodec>,
    Item,
    SinkItem,
    Bincode<Item, SinkItem>,
>;

/// Open a TCP connection and run the initiator handshake.
pub async fn connect<Item, SinkItem>(
    addr: impl ToSocketAddrs + std::fmt::Display,
    key: &(impl NoiseKeys + ?Sized),
    timeout: Duration,
) -> Result<NoiseTransport<Item, SinkItem>, ProtoError> {
    let name = addr.to_string();
    // One budget for connecting and the handshake together.
    let started = std::time::Instant::now();
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ProtoError::Handshake {
            peer: name.clone(),
            reason: format!("connect timed out after {timeout:?}"),
        })??;
    let left = timeout.saturating_sub(started.elapsed());
    initiate_on(stream, key, left.max(Duration::from_millis(1)))
        .await
        .map_err(|e| match e {
            // The budget the caller gave, not what was left of it.
            ProtoError::HandshakeTimeout { peer, .. } => ProtoError::HandshakeTimeout {
                peer,
                after: timeout,
            },
            e => e,
        })
}

/// Run the initiator handshake on a stream the caller opened (from a chosen source address,
/// say).
pub async fn initiate_on<Item, SinkItem>(
    mut stream: TcpStream,
    key: &(impl NoiseKeys + ?Sized),
    timeout: Duration,
) -> Result<NoiseTransport<Item, SinkItem>, ProtoError> {
    let name = prepare(&stream)?;
    let session = noise::initiate(&mut stream, key, &name, timeout).await?;
    Ok(wrap(stream, session))
}

/// Run the responder handshake on an accepted stream.
pub async fn accept<Item, SinkItem>(
    mut stream: TcpStream,
    key: &(impl NoiseKeys + ?Sized),
    timeout: Duration,
) -> Result<NoiseTransport<Item, SinkItem>, ProtoError> {
    let name = prepare(&stream)?;
    let session = noise::respond(&mut stream, key, &name, timeout).await?;
    Ok(wrap(stream, session))
}

/// No Nagle delay (calls are small and answered at once); the other side's address, for errors.
fn prepare(stream: &TcpStream) -> Result<String, ProtoError> {
    stream.set_nodelay(true)?;
    Ok(stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into()))
}

fn wrap<Item, SinkItem>(
    stream: TcpStream,
    session: snow::TransportState,
) -> NoiseTransport<Item, SinkItem> {
    tarpc::tokio_serde::Framed::new(
        Framed::new(stream, NoiseCodec::new(session)),
        Bincode::default(),
    )
}

/// The tarpc transport a client of requests `Req` and responses `Resp` gets: it decodes
/// [`WireResponse`]s (a server error keeps its kind) into tarpc's responses.
pub type ClientTransport<Req, Resp> = MapOk<
    NoiseTransport<WireResponse<Resp>, ClientMessage<Req>>,
    fn(WireResponse<Resp>) -> Response<Resp>,
>;

/// Connect as a client of `Req`/`Resp`.
async fn client_transport<Req, Resp>(
    addr: impl ToSocketAddrs + std::fmt::Display,
    key: &(impl NoiseKeys + ?Sized),
    timeout: Duration,
) -> Result<ClientTransport<Req, Resp>, ProtoError>
where
    Resp: serde::de::DeserializeOwned,
{
    let transport = connect::<WireResponse<Resp>, ClientMessage<Req>>(addr, key, timeout).await?;
    Ok(transport.map_ok(Response::from as fn(_) -> _))
}

/// A client of a peer.
pub async fn peer_client(
    addr: impl ToSocketAddrs + std::fmt::Display,
    key: &(impl NoiseKeys + ?Sized),
    timeout: Duration,
) -> Result<PeerServiceClient, ProtoError> {
    let transport = client_transport(addr, key, timeout).await?;
    Ok(PeerServiceClient::new(client::Config::default(), transport).spawn())
}

/// A client of an agent.
pub async fn agent_client(
    addr: impl ToSocketAddrs + std::fmt::Display,
    key: &(impl NoiseKeys + ?Sized),
    timeout: Duration,
) -> Result<AgentServiceClient, ProtoError> {
    let transport = client_transport(addr, key, timeout).await?;
    Ok(AgentServiceClient::new(client::Config::default(), transport).spawn())
}

/// The tarpc transport a server of requests `Req` and responses `Resp` gets: it decodes
/// [`WireClientMessage`]s (a deadline cannot overflow the clock) into tarpc's messages, and
/// ends after [`ServeLimits::idle`] without traffic.
pub type ServerTransport<Req, Resp> = IdleTimeout<
    MapOk<
        NoiseTransport<WireClientMessage<Req>, Response<Resp>>,
        fn(WireClientMessage<Req>) -> ClientMessage<Req>,
    >,
>;

/// How long a server waits for a connection's handshake, and then for its next message; and
/// its [`Door`], which decides which accepted connections get a handshake at all and counts
/// what it refused.
#[derive(Clone)]
pub struct ServeLimits {
    pub handshake: Duration,
    pub idle: Duration,
    pub door: Arc<Door>,
}

impl Default for ServeLimits {
    /// The default timeouts, and a door with the default limits (not fitted to this process's
    /// descriptors: servers use [`ServeLimits::for_this_process`]).
    fn default() -> Self {
        Self {
            handshake: noise::HANDSHAKE_TIMEOUT,
            idle: IDLE_TIMEOUT,
            door: Door::new(DoorLimits::default()),
        }
    }
}

impl ServeLimits {
    /// The defaults, with a door fitted to this process's descriptor limit
    /// ([`DoorLimits::for_this_process`]).
    pub fn for_this_process() -> Self {
        Self {
            door: Door::new(DoorLimits::for_this_process()),
            ..Self::default()
        }
    }
}

/// A served connection that carries nothing either way this long is closed. Clients call and
/// go (peers), or call every few seconds (consoles): minutes of silence is a stuck client.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The listen backlog of a server's socket (the kernel caps it at `net.core.somaxconn`): a
/// flood fills the accept queue between two wake-ups of the accept loop, and a full queue
/// drops the next SYN, legitimate or not, which its client resends only after a second.
/// tokio's `TcpListener::bind` asks for 1,024.
pub const LISTEN_BACKLOG: u32 = 4_096;

/// Listen on `addr` (`host:port`, the first address it resolves to) with [`LISTEN_BACKLOG`].
pub async fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As std's bind does: a restarted server binds while old connections linger.
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{addr}: no address"),
        )
    }))
}

/// Accept connections forever; each that [`ServeLimits::door`] lets in gets its own task, so
/// a bad or silent client (wrong key, garbage, a stalled handshake) affects only itself, and
/// one that opens too many is turned away before any handshake work. `on_transport` serves one connection,
/// typically `BaseChannel::with_defaults(t).execute(server.serve()).for_each(spawn_request)`.
/// A refused handshake is logged (debug); [`serve_connections_with`] hands it to a hook.
pub async fn serve_connections<Req, Resp, F, Fut>(
    listener: TcpListener,
    key: impl NoiseKeys + Clone + Send + Sync + 'static,
    limits: ServeLimits,
    on_transport: F,
) where
    F: Fn(ServerTransport<Req, Resp>, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    Req: serde::de::DeserializeOwned + Send + 'static,
    Resp: Send + 'static,
{
    let log_refusal = |addr: SocketAddr, e: ProtoError| async move {
        tracing::debug!("refused {addr}: {e}");
    };
    serve_connections_with(listener, key, limits, on_transport, log_refusal).await
}

/// [`serve_connections`], with `on_refused` called (in the connection's task) for every
/// connection whose handshake failed: wrong K_E, garbage, silence past
/// [`ServeLimits::handshake`]. The agent audits these.
pub async fn serve_connections_with<Req, Resp, F, Fut, R, RFut>(
    listener: TcpListener,
    key: impl NoiseKeys + Clone + Send + Sync + 'static,
    limits: ServeLimits,
    on_transport: F,
    on_refused: R,
) where
    F: Fn(ServerTransport<Req, Resp>, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    R: Fn(SocketAddr, ProtoError) -> RFut + Clone + Send + 'static,
    RFut: Future<Output = ()> + Send + 'static,
    Req: serde::de::DeserializeOwned + Send + 'static,
    Resp: Send + 'static,
{
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(ticket) = limits.door.admit(addr.ip()) else {
            // Refused (counted and logged by the door): closed with a reset, so that neither
            // side keeps the connection in TIME_WAIT.
            let _ = stream.set_zero_linger();
            continue;
        };
        let (key, handshake, idle) = (key.clone(), limits.handshake, limits.idle);
        let (on_transport, on_refused) = (on_transport.clone(), on_refused.clone());
        tokio::spawn(async move {
            let mut ticket = ticket;
            match accept::<WireClientMessage<Req>, Response<Resp>>(stream, &key, handshake).await {
                Ok(transport) => {
                    ticket.handshake(Handshake::Done);
                    let transport = transport.map_ok(ClientMessage::from as fn(_) -> _);
                    on_transport(IdleTimeout::new(transport, idle), addr).await
                }
                Err(e) => {
                    ticket.handshake(match e {
                        ProtoError::HandshakeTimeout { .. } => Handshake::TimedOut,
                        _ => Handshake::Failed,
                    });
                    on_refused(addr, e).await
                }
            }
            drop(ticket);
        });
    }
}

/// Spawn one request's handler: the `for_each` argument of a tarpc channel.
pub async fn spawn_request(fut: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(fut);
}
