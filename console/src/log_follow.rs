//! Reading a machine's log through the overlay (issue 16), for `logs` and the TUI's log pane
//! alike: the last lines first, then (following) what is appended, from the cursor each
//! answer gives, as `tail -F` does. Any peer is asked; it relays to the machine's peer.

use std::{sync::Arc, time::Duration};

use smon_proto::{
    KeyringHandle, LogChunk, LogCursor, LogFrom, LogRequest, MachineId, PeerServiceClient, Refusal,
    app_package::valid_app_name, transport,
};

use crate::{cluster_dir::ClusterDir, connect};

/// Which log: a machine's peer's own, or one of its applications'.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogTarget {
    pub machine: MachineId,
    pub app: Option<String>,
}

impl LogTarget {
    /// Errors: an application name `app.toml` would refuse (checked here too, so that the
    /// error comes before any connection).
    pub fn new(machine: MachineId, app: Option<String>) -> anyhow::Result<Self> {
        if let Some(name) = &app
            && !valid_app_name(name)
        {
            anyhow::bail!(
                "{name:?} is not an application name (letters, digits, '.', '_' and '-', \
                 starting with a letter or digit, at most 64)"
            );
        }
        Ok(Self { machine, app })
    }
}

impl std::fmt::Display for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.app {
            Some(app) => write!(f, "the log of {app} on {}", self.machine),
            None => write!(f, "the peer log of {}", self.machine),
        }
    }
}

/// How to reach some peer: the cluster directory's (any that answers, or `--via`'s), or one
/// address (the TUI's `--peer`).
#[derive(Clone)]
pub enum Reach {
    Dir(Arc<ClusterDir>),
    Peer { addr: String, key: KeyringHandle },
}

impl Reach {
    /// A client of some peer, and how to name it.
    async fn connect(&self) -> anyhow::Result<(String, PeerServiceClient)> {
        match self {
            Reach::Dir(dir) => {
                let (machine, client) = connect::any_peer(dir).await?;
                Ok((machine.to_string(), client))
            }
            Reach::Peer { addr, key } => {
                let client = transport::peer_client(addr.as_str(), key, connect::CONNECT_TIMEOUT)
                    .await
                    .map_err(|e| anyhow::anyhow!("{addr}: {e}"))?;
                Ok((addr.clone(), client))
            }
        }
    }
}

/// Why a read did not give a chunk.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The peer asked, or the machine's, did not answer: trying again may help.
    #[error("{0}")]
    Lost(String),
    /// The answer is no (no such machine, application or log; a bad name).
    #[error("{0}")]
    Refused(String),
}

/// Reads one log, first its last lines, then each time what was appended.
pub struct LogFollower {
    reach: Reach,
    target: LogTarget,
    /// How long to wait when nothing new was there.
    pub every: Duration,
    peer: Option<(String, PeerServiceClient)>,
    cursor: Option<LogCursor>,
    /// The last answer said more lines were already waiting.
    more: bool,
}

/// How long the console waits for a (possibly relayed) answer.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

impl LogFollower {
    pub fn new(reach: Reach, target: LogTarget) -> Self {
        Self {
            reach,
            target,
            every: Duration::from_millis(500),
            peer: None,
            cursor: None,
            more: false,
        }
    }

    /// The peer the last answer came through.
    pub fn via(&self) -> Option<&str> {
        self.peer.as_ref().map(|(name, _)| name.as_str())
    }

    /// The last `lines` lines (of the last `since`, when given).
    pub async fn tail(
        &mut self,
        lines: u32,
        since: Option<Duration>,
    ) -> Result<LogChunk, LogError> {
        let within_ms = since.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.read(LogFrom::Tail { lines, within_ms }).await
    }

    /// What was appended since the last answer, once there is some (asking every
    /// [`Self::every`]); a chunk may be empty when the file was rotated with nothing in it.
    pub async fn next(&mut self) -> Result<LogChunk, LogError> {
        loop {
            if !self.more {
                tokio::time::sleep(self.every).await;
            }
            let from = match self.cursor {
                Some(cursor) => LogFrom::After(cursor),
                None => LogFrom::Tail {
                    lines: 0,
                    within_ms: None,
                },
            };
            let chunk = self.read(from).await?;
            if !chunk.data.is_empty() || chunk.restarted {
                return Ok(chunk);
            }
        }
    }

    async fn read(&mut self, from: LogFrom) -> Result<LogChunk, LogError> {
        if self.peer.is_none() {
            let peer =
                self.reach.connect().await.map_err(|e| {
                    LogError::Lost(format!("{}: no peer to ask: {e:#}", self.target))
                })?;
            self.peer = Some(peer);
        }
        let (via, client) = self.peer.as_ref().expect("connected above");
        let req = LogRequest {
            machine: self.target.machine.clone(),
            app: self.target.app.clone(),
            from,
            relayed: false,
        };
        let answer = client.read_log(connect::ctx(READ_TIMEOUT), req).await;
        let through = |what: String| format!("{} through {via}: {what}", self.target);
        let result = match answer {
            Ok(Ok(chunk)) => Ok(chunk),
            Ok(Err(refusal @ (Refusal::Unreachable(_) | Refusal::Busy(_)))) => {
                Err(LogError::Lost(through(refusal.to_string())))
            }
            Ok(Err(refusal)) => Err(LogError::Refused(through(refusal.to_string()))),
            Err(e) => Err(LogError::Lost(through(format!(
                "the peer does not answer: {e}"
            )))),
        };
        match &result {
            Ok(chunk) => {
                self.cursor = Some(chunk.next);
                self.more = chunk.more;
            }
            // Another peer next time (any_peer starts from the first that answers).
            Err(LogError::Lost(_)) => self.peer = None,
            Err(LogError::Refused(_)) => {}
        }
        result
    }
}
