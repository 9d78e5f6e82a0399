//! A connection flood against one server, for tests and benchmarks of its door
//! (`smon_proto::door`): one client, from one source address, that holds N connections open
//! and silent ([`Mode::Hold`]), opens and drops them in a loop ([`Mode::Churn`]), or sends
//! handshakes with a wrong cluster key at full speed ([`Mode::WrongKey`]). Loopback only: the
//! target and the source must be in 127.0.0.0/8.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use smon_lab::flood::{Flood, Mode};
//! let flood = Flood::new(Mode::Hold, "127.1.2.3:7946".parse()?, 1_000)?;
//! let (stop, report) = flood.start();   // runs until stopped (or `flood.duration`)
//! // ... talk to the server as a legitimate client ...
//! let _ = stop.send(true);
//! let report = report.await?;           // what the flooder saw
//! # Ok(()) }
//! ```

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::bail;
use serde::Serialize;
use smon_proto::{ClusterKey, noise};
use tokio::{
    io::AsyncReadExt,
    net::{TcpSocket, TcpStream},
    sync::watch,
    task::JoinSet,
};

/// What the flooding client does with each of its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Open, say nothing, hold until the server closes, open again.
    Hold,
    /// Open and drop at once (a reset), in a loop.
    Churn,
    /// Open, send a handshake made with a random cluster key, drop, in a loop.
    WrongKey,
}

/// The default source: an address of 127.0.0.0/8 no local machine of smon gets (those are
/// 127.1-255.x.x, derived from a salt and the name, and consoles and peers connect from
/// 127.0.0.1), so that the server sees the flood as one source of its own.
pub const DEFAULT_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 66);

/// One flood: how, at what, from where, with how many connections (held at once in
/// [`Mode::Hold`]; concurrent loops otherwise), for how long at most.
#[derive(Clone, Debug)]
pub struct Flood {
    pub mode: Mode,
    pub target: SocketAddr,
    pub source: Ipv4Addr,
    pub connections: usize,
    pub duration: Duration,
}

/// What the flooder saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FloodReport {
    pub mode: Option<Mode>,
    pub seconds: f64,
    /// Connection attempts.
    pub attempts: u64,
    /// Of those, connected (the server's kernel accepted them).
    pub connected: u64,
    /// Of those, failed to connect (refused, no port, out of ports).
    pub connect_errors: u64,
    /// The first connect error, as the OS said it.
    pub first_connect_error: Option<String>,
    /// Connections the server closed (EOF or reset) while the flooder held them.
    pub closed_by_server: u64,
    /// Wrong-key handshakes the server refused (the initiator saw an error or EOF).
    pub handshakes_refused: u64,
    /// Wrong-key handshakes the server took: must stay 0.
    pub handshakes_accepted: u64,
}

#[derive(Default)]
struct Counts {
    attempts: AtomicU64,
    connected: AtomicU64,
    connect_errors: AtomicU64,
    closed_by_server: AtomicU64,
    handshakes_refused: AtomicU64,
    handshakes_accepted: AtomicU64,
    first_connect_error: std::sync::OnceLock<String>,
}

impl Flood {
    /// A flood of `mode` against `target` from [`DEFAULT_SOURCE`], for at most an hour;
    /// refused unless `target` is loopback.
    pub fn new(mode: Mode, target: SocketAddr, connections: usize) -> anyhow::Result<Self> {
        let flood = Flood {
            mode,
            target,
            source: DEFAULT_SOURCE,
            connections,
            duration: Duration::from_secs(3_600),
        };
        flood.check()?;
        Ok(flood)
    }

    fn check(&self) -> anyhow::Result<()> {
        if !self.target.ip().is_loopback() {
            bail!(
                "flood target {}: only loopback (127.0.0.0/8) is allowed",
                self.target
            );
        }
        if !self.source.is_loopback() {
            bail!(
                "flood source {}: only loopback (127.0.0.0/8) is allowed",
                self.source
            );
        }
        if self.connections == 0 {
            bail!("flood: --connections must be at least 1");
        }
        Ok(())
    }

    /// Start the flood on the current tokio runtime: a sender that stops it (send `true`), and
    /// its report once every connection is dropped.
    pub fn start(
        &self,
    ) -> (
        watch::Sender<bool>,
        tokio::task::JoinHandle<anyhow::Result<FloodReport>>,
    ) {
        let (stop, stopped) = watch::channel(false);
        let flood = self.clone();
        (stop, tokio::spawn(async move { flood.run(stopped).await }))
    }

    /// Run until `stop` says true or [`Flood::duration`] passes; every connection is dropped
    /// (with a reset) before this returns.
    pub async fn run(self, stop: watch::Receiver<bool>) -> anyhow::Result<FloodReport> {
        self.check()?;
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.duration;
        let counts = Arc::new(Counts::default());
        let mut workers = JoinSet::new();
        for _ in 0..self.connections {
            let (flood, counts, mut stop) = (self.clone(), counts.clone(), stop.clone());
            workers.spawn(async move {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = flood.worker(&counts) => {}
                }
            });
        }
        while workers.join_next().await.is_some() {}
        let c = |a: &AtomicU64| a.load(Relaxed);
        Ok(FloodReport {
            mode: Some(self.mode),
            seconds: started.elapsed().as_secs_f64(),
            attempts: c(&counts.attempts),
            connected: c(&counts.connected),
            connect_errors: c(&counts.connect_errors),
            closed_by_server: c(&counts.closed_by_server),
            handshakes_refused: c(&counts.handshakes_refused),
            handshakes_accepted: c(&counts.handshakes_accepted),
            first_connect_error: counts.first_connect_error.get().cloned(),
        })
    }

    /// One connection's loop, forever (the caller stops it).
    async fn worker(&self, counts: &Counts) {
        // Each worker its own wrong key: nothing is cached between handshakes.
        let wrong = ClusterKey::generate();
        loop {
            counts.attempts.fetch_add(1, Relaxed);
            let mut stream = match self.connect().await {
                Ok(s) => s,
                Err(e) => {
                    counts.connect_errors.fetch_add(1, Relaxed);
                    let _ = counts.first_connect_error.set(e.to_string());
                    // Out of ports or refused: do not spin.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            };
            counts.connected.fetch_add(1, Relaxed);
            let _ = stream.set_zero_linger();
            match self.mode {
                Mode::Hold => {
                    let mut buf = [0u8; 64];
                    // Until the server closes it (EOF or reset): it never sends data first.
                    while let Ok(n) = stream.read(&mut buf).await
                        && n > 0
                    {}
                    counts.closed_by_server.fetch_add(1, Relaxed);
                }
                Mode::Churn => drop(stream),
                Mode::WrongKey => {
                    let timeout = noise::HANDSHAKE_TIMEOUT;
                    match noise::initiate(&mut stream, &wrong, "flood", timeout).await {
                        Ok(_) => counts.handshakes_accepted.fetch_add(1, Relaxed),
                        Err(_) => counts.handshakes_refused.fetch_add(1, Relaxed),
                    };
                }
            }
            tokio::task::yield_now().await;
        }
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(IpAddr::V4(self.source), 0))?;
        socket.connect(self.target).await
    }
}
