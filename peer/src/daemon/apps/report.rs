//! State reports to an application's `report` address: one line of JSON per change over TCP
//! (the protocol is [`smon_proto::AppReport`]). Supervision never waits for the listener:
//! lines go through a bounded queue to a task that keeps one connection open.

use std::time::Duration;

use smon_proto::AppReport;
use tokio::{io::AsyncWriteExt, net::TcpStream, sync::mpsc};

/// Lines waiting beyond this are dropped (the newest are kept by the supervisor's retries).
const QUEUE: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Reporter {
    pub address: String,
    tx: mpsc::Sender<String>,
}

impl Reporter {
    pub fn new(address: String) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(deliver(address.clone(), rx));
        Self { address, tx }
    }

    /// Queue a report; dropped (with a log line) if the queue is full.
    pub fn send(&self, report: &AppReport) {
        if self.tx.try_send(report.to_line()).is_err() {
            tracing::debug!("report to {} dropped: queue full", self.address);
        }
    }
}

async fn deliver(address: String, mut rx: mpsc::Receiver<String>) {
    let mut conn: Option<TcpStream> = None;
    while let Some(line) = rx.recv().await {
        // One retry on a fresh connection when the kept one broke.
        for _ in 0..2 {
            if conn.as_ref().is_some_and(closed_by_listener) {
                conn = None;
            }
            if conn.is_none() {
                conn = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&address))
                    .await
                {
                    Ok(Ok(stream)) => Some(stream),
                    Ok(Err(e)) => {
                        tracing::debug!("report to {address}: {e}");
                        None
                    }
                    Err(_) => None,
                };
            }
            let Some(stream) = conn.as_mut() else {
                break;
            };
            match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(line.as_bytes())).await {
                Ok(Ok(())) => break,
                _ => conn = None,
            }
        }
    }
}

/// The listener closed its side (a write would seem to succeed and the line be lost).
fn closed_by_listener(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match stream.try_read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}
