//! The Noise layer: `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s` with K_E as the pre-shared key.
//!
//! Handshake: two frames. The psk is mixed in from the first message, so the responder
//! detects a wrong key when it reads message 1 (and answers with an empty frame, a refusal,
//! instead of message 2), and the initiator detects it when it reads message 2. Both sides
//! therefore fail inside the handshake, with [`ProtoError::WrongKey`].
//!
//! Transport: each frame is `u16 big-endian length || ciphertext`, at most 65,535 bytes. A
//! message longer than one Noise payload is split; the first plaintext byte of each frame
//! says whether more follows. A reassembled message larger than the cap is an error.

use std::{io, time::Duration};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use snow::{HandshakeState, TransportState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};

use crate::{ClusterKey, ProtoError};

pub const NOISE_PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// Bound into the handshake hash: a peer of another protocol version cannot complete it.
pub const PROLOGUE: &[u8] = b"smon/1 Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
pub const MAX_FRAME: usize = 65_535;
const TAG_LEN: usize = 16;
/// Plaintext bytes per frame: one byte says whether more follows.
const CHUNK: usize = MAX_FRAME - TAG_LEN - 1;
/// Hard cap on a reassembled message.
pub const MAX_MESSAGE: usize = 16 << 20;
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

const LAST: u8 = 0;
const MORE: u8 = 1;

fn builder(key: &ClusterKey) -> snow::Builder<'_> {
    snow::Builder::new(NOISE_PATTERN.parse().expect("valid noise pattern"))
        .prologue(PROLOGUE)
        .expect("prologue")
        .psk(0, key.bytes())
        .expect("psk")
}

async fn write_frame<S: AsyncWrite + Unpin>(io: &mut S, payload: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(2 + payload.len());
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(payload);
    io.write_all(&frame).await?;
    io.flush().await
}

async fn read_frame<S: AsyncRead + Unpin>(io: &mut S) -> io::Result<Vec<u8>> {
    let len = io.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Run the initiator side of the handshake on `io`.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    key: &ClusterKey,
    peer: &str,
    timeout: Duration,
) -> Result<TransportState, ProtoError> {
    let fail = |reason: String| ProtoError::Handshake {
        peer: peer.to_owned(),
        reason,
    };
    let run = async {
        let mut hs: HandshakeState = builder(key)
            .build_initiator()
            .map_err(|e| fail(e.to_string()))?;
        let mut buf = vec![0u8; MAX_FRAME];
        let n = hs
            .write_message(&[], &mut buf)
            .map_err(|e| fail(e.to_string()))?;
        write_frame(io, &buf[..n])
            .await
            .map_err(|e| fail(e.to_string()))?;
        let reply = read_frame(io).await.map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => fail("closed by the other side".into()),
            _ => fail(e.to_string()),
        })?;
        if reply.is_empty() {
            return Err(ProtoError::WrongKey {
                peer: peer.to_owned(),
            });
        }
        hs.read_message(&reply, &mut buf).map_err(|e| match e {
            snow::Error::Decrypt => ProtoError::WrongKey {
                peer: peer.to_owned(),
            },
            e => fail(e.to_string()),
        })?;
        hs.into_transport_mode().map_err(|e| fail(e.to_string()))
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| ProtoError::HandshakeTimeout {
            peer: peer.to_owned(),
            after: timeout,
        })?
}

/// Run the responder side of the handshake on `io`.
pub async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    key: &ClusterKey,
    peer: &str,
    timeout: Duration,
) -> Result<TransportState, ProtoError> {
    let fail = |reason: String| ProtoError::Handshake {
        peer: peer.to_owned(),
        reason,
    };
    let run = async {
        let mut hs = builder(key)
            .build_responder()
            .map_err(|e| fail(e.to_string()))?;
        let mut buf = vec![0u8; MAX_FRAME];
        let hello = read_frame(io).await.map_err(|e| fail(e.to_string()))?;
        if let Err(e) = hs.read_message(&hello, &mut buf) {
            // A refusal frame, so the initiator gets a typed error rather than a bare EOF.
            let _ = write_frame(io, &[]).await;
            return Err(match e {
                snow::Error::Decrypt => ProtoError::WrongKey {
                    peer: peer.to_owned(),
                },
                e => fail(format!("bad first message: {e}")),
            });
        }
        let n = hs
            .write_message(&[], &mut buf)
            .map_err(|e| fail(e.to_string()))?;
        write_frame(io, &buf[..n])
            .await
            .map_err(|e| fail(e.to_string()))?;
        hs.into_transport_mode().map_err(|e| fail(e.to_string()))
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| ProtoError::HandshakeTimeout {
            peer: peer.to_owned(),
            after: timeout,
        })?
}

/// Encrypting, chunking tokio codec over an established Noise session.
pub struct NoiseCodec {
    session: TransportState,
    partial: BytesMut,
    max_message: usize,
    scratch: Vec<u8>,
}

impl NoiseCodec {
    pub fn new(session: TransportState) -> Self {
        Self::with_max_message(session, MAX_MESSAGE)
    }

    pub fn with_max_message(session: TransportState, max_message: usize) -> Self {
        Self {
            session,
            partial: BytesMut::new(),
            max_message,
            scratch: vec![0u8; MAX_FRAME],
        }
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Decoder for NoiseCodec {
    type Item = BytesMut;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        loop {
            if src.len() < 2 {
                return Ok(None);
            }
            let len = u16::from_be_bytes([src[0], src[1]]) as usize;
            if len <= TAG_LEN {
                return Err(invalid(format!("noise frame of {len} bytes is too short")));
            }
            if src.len() < 2 + len {
                src.reserve(2 + len - src.len());
                return Ok(None);
            }
            src.advance(2);
            let frame = src.split_to(len);
            let n = self
                .session
                .read_message(&frame, &mut self.scratch)
                .map_err(|e| invalid(format!("noise frame rejected: {e}")))?;
            let (flag, data) = self.scratch[..n]
                .split_first()
                .ok_or_else(|| invalid("empty noise payload"))?;
            if self.partial.len() + data.len() > self.max_message {
                return Err(invalid(format!(
                    "message larger than the cap of {} bytes",
                    self.max_message
                )));
            }
            self.partial.extend_from_slice(data);
            match *flag {
                LAST => return Ok(Some(self.partial.split())),
                MORE => continue,
                other => return Err(invalid(format!("bad chunk marker {other}"))),
            }
        }
    }
}

impl Encoder<Bytes> for NoiseCodec {
    type Error = io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> io::Result<()> {
        if item.len() > self.max_message {
            return Err(invalid(format!(
                "message of {} bytes exceeds the cap of {}",
                item.len(),
                self.max_message
            )));
        }
        let mut chunks = item.chunks(CHUNK).peekable();
        let mut plain = Vec::with_capacity(CHUNK + 1);
        if item.is_empty() {
            return self.encode_chunk(&[LAST], dst);
        }
        while let Some(chunk) = chunks.next() {
            plain.clear();
            plain.push(if chunks.peek().is_some() { MORE } else { LAST });
            plain.extend_from_slice(chunk);
            self.encode_chunk(&plain, dst)?;
        }
        Ok(())
    }
}

impl NoiseCodec {
    fn encode_chunk(&mut self, plain: &[u8], dst: &mut BytesMut) -> io::Result<()> {
        let n = self
            .session
            .write_message(plain, &mut self.scratch)
            .map_err(|e| io::Error::other(format!("noise encrypt: {e}")))?;
        dst.reserve(2 + n);
        dst.put_u16(n as u16);
        dst.extend_from_slice(&self.scratch[..n]);
        Ok(())
    }
}
