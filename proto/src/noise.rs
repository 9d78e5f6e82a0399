//! The Noise layer: `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s` with K_E as the pre-shared key.
//!
//! Handshake: two frames. The psk is mixed in from the first message, so the responder
//! detects a wrong key when it reads message 1 (and answers with an empty frame, a refusal,
//! instead of message 2), and the initiator detects it when it reads that refusal where
//! message 2 should be. Both sides therefore fail inside the handshake, with
//! [`ProtoError::WrongKey`]. During a key rotation the responder accepts more than one key
//! ([`NoiseKeys::accepted_keys`]): it reads message 1 with each in turn, and refuses only when
//! none fits. Anything else that is not a valid message 2 (garbage, another
//! protocol) is a [`ProtoError::Handshake`] error, not a key problem.
//!
//! Transport: each frame is `u16 big-endian length || ciphertext`, at most 65,535 bytes. A
//! message longer than one Noise payload is split; the first plaintext byte of each frame
//! says whether more follows. A reassembled message larger than the cap is an error.

use std::{io, time::Duration};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use snow::{HandshakeState, TransportState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};

use crate::{ClusterKey, ProtoError, keyring::NoiseKeys};

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

/// A handshake failure with `peer`, for the reason given.
fn failed(peer: &str) -> impl Fn(String) -> ProtoError + '_ {
    move |reason| ProtoError::Handshake {
        peer: peer.to_owned(),
        reason,
    }
}

/// `run` (one side of the handshake with `peer`), or a timeout error after `timeout`.
async fn within<T>(
    peer: &str,
    timeout: Duration,
    run: impl Future<Output = Result<T, ProtoError>>,
) -> Result<T, ProtoError> {
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| ProtoError::HandshakeTimeout {
            peer: peer.to_owned(),
            after: timeout,
        })?
}

/// Run the initiator side of the handshake on `io`, with `keys`' initiator key.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin, K: NoiseKeys + ?Sized>(
    io: &mut S,
    keys: &K,
    peer: &str,
    timeout: Duration,
) -> Result<TransportState, ProtoError> {
    let fail = failed(peer);
    let key = keys.initiator_key();
    let run = async {
        let mut hs: HandshakeState = builder(&key)
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
        // A responder with another key refuses (above) instead of answering, so an answer
        // that does not decrypt comes from something else: not "wrong key".
        hs.read_message(&reply, &mut buf).map_err(|e| match e {
            snow::Error::Decrypt => fail("the answer does not decrypt: not an smon peer".into()),
            e => fail(format!("bad answer: {e}")),
        })?;
        hs.into_transport_mode().map_err(|e| fail(e.to_string()))
    };
    within(peer, timeout, run).await
}

/// Run the responder side of the handshake on `io`, accepting any of `keys`' accepted keys.
pub async fn respond<S: AsyncRead + AsyncWrite + Unpin, K: NoiseKeys + ?Sized>(
    io: &mut S,
    keys: &K,
    peer: &str,
    timeout: Duration,
) -> Result<TransportState, ProtoError> {
    let fail = failed(peer);
    let keys = keys.accepted_keys();
    let run = async {
        let mut buf = vec![0u8; MAX_FRAME];
        let hello = read_frame(io).await.map_err(|e| fail(e.to_string()))?;
        let mut hs = match read_hello(&keys, &hello, &mut buf) {
            Ok(hs) => hs,
            Err(e) => {
                // A refusal frame, so the initiator gets a typed error rather than a bare EOF.
                let _ = write_frame(io, &[]).await;
                return Err(match e {
                    snow::Error::Decrypt => ProtoError::WrongKey {
                        peer: peer.to_owned(),
                    },
                    e => fail(format!("bad first message: {e}")),
                });
            }
        };
        let n = hs
            .write_message(&[], &mut buf)
            .map_err(|e| fail(e.to_string()))?;
        write_frame(io, &buf[..n])
            .await
            .map_err(|e| fail(e.to_string()))?;
        hs.into_transport_mode().map_err(|e| fail(e.to_string()))
    };
    within(peer, timeout, run).await
}

/// A responder that read message 1 `hello` with the first of `keys` that fits (the psk is
/// mixed from message 1, so a wrong key fails to decrypt it); else the last key's error
/// (`Decrypt` when no key fits, the same error for each key when `hello` is malformed).
fn read_hello(
    keys: &[ClusterKey],
    hello: &[u8],
    buf: &mut [u8],
) -> Result<HandshakeState, snow::Error> {
    let mut last = snow::Error::Decrypt;
    for key in keys {
        let mut hs = builder(key).build_responder()?;
        match hs.read_message(hello, buf) {
            Ok(_) => return Ok(hs),
            Err(e) => last = e,
        }
    }
    Err(last)
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

    /// The session back (its nonces where this codec left them), e.g. for a fuzz target that
    /// runs one handshake for many inputs.
    pub fn into_session(self) -> TransportState {
        self.session
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sessions from a real handshake over an in-memory pipe.
    async fn sessions(
        initiator_key: &ClusterKey,
        responder_key: &ClusterKey,
    ) -> (
        Result<TransportState, ProtoError>,
        Result<TransportState, ProtoError>,
    ) {
        let (mut a, mut b) = tokio::io::duplex(2 * MAX_FRAME);
        tokio::join!(
            initiate(&mut a, initiator_key, "responder", HANDSHAKE_TIMEOUT),
            respond(&mut b, responder_key, "initiator", HANDSHAKE_TIMEOUT),
        )
    }

    async fn codecs(receiver_cap: usize) -> (NoiseCodec, NoiseCodec) {
        let key = ClusterKey::generate();
        let (i, r) = sessions(&key, &key).await;
        (
            NoiseCodec::new(i.unwrap()),
            NoiseCodec::with_max_message(r.unwrap(), receiver_cap),
        )
    }

    fn encode(codec: &mut NoiseCodec, message: &[u8]) -> BytesMut {
        let mut wire = BytesMut::new();
        codec
            .encode(Bytes::copy_from_slice(message), &mut wire)
            .unwrap();
        wire
    }

    #[tokio::test]
    async fn messages_of_every_size_round_trip_even_byte_by_byte() {
        let (mut tx, mut rx) = codecs(MAX_MESSAGE).await;
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let message: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let mut wire = encode(&mut tx, &message);
            let frames = len.div_ceil(CHUNK).max(1);
            assert_eq!(wire.len(), len + frames * (2 + TAG_LEN + 1), "{len} bytes");
            let decoded = rx.decode(&mut wire).unwrap().expect("a whole message");
            assert_eq!(&decoded[..], &message[..]);
            assert!(wire.is_empty());
        }
        // Arriving one byte at a time, as a slow TCP stream may deliver it.
        let message = vec![7u8; CHUNK + 100];
        let wire = encode(&mut tx, &message);
        let mut src = BytesMut::new();
        let mut decoded = None;
        for (i, byte) in wire.iter().enumerate() {
            src.extend_from_slice(&[*byte]);
            if let Some(m) = rx.decode(&mut src).unwrap() {
                assert_eq!(i, wire.len() - 1, "a message before its last byte");
                decoded = Some(m);
            }
        }
        assert_eq!(&decoded.unwrap()[..], &message[..]);
    }

    #[tokio::test]
    async fn the_receiver_refuses_a_message_above_its_cap() {
        // One frame over a small cap.
        let (mut tx, mut rx) = codecs(1000).await;
        let mut at_cap = encode(&mut tx, &[1u8; 1000]);
        assert_eq!(rx.decode(&mut at_cap).unwrap().unwrap().len(), 1000);
        let mut over = encode(&mut tx, &[1u8; 1001]);
        let err = rx.decode(&mut over).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("cap of 1000"), "{err}");

        // Over the cap only once reassembled: refused at the chunk that crosses it, before
        // the rest of the message is even read.
        let cap = 2 * CHUNK + 10;
        let (mut tx, mut rx) = codecs(cap).await;
        let mut over = encode(&mut tx, &vec![2u8; cap + 1]);
        let three_frames = over.len();
        let err = rx.decode(&mut over).unwrap_err();
        assert!(err.to_string().contains("larger than the cap"), "{err}");
        assert!(over.len() < three_frames, "the first frames were consumed");
    }

    #[tokio::test]
    async fn the_sender_refuses_a_message_above_its_cap() {
        let key = ClusterKey::generate();
        let (i, _r) = sessions(&key, &key).await;
        let mut tx = NoiseCodec::with_max_message(i.unwrap(), 10);
        let mut wire = BytesMut::new();
        let err = tx
            .encode(Bytes::from_static(&[0; 11]), &mut wire)
            .unwrap_err();
        assert!(err.to_string().contains("exceeds the cap of 10"), "{err}");
        assert!(wire.is_empty(), "nothing half-written");
    }

    #[tokio::test]
    async fn tampered_replayed_and_malformed_frames_are_errors() {
        let (mut tx, mut rx) = codecs(MAX_MESSAGE).await;
        let mut tampered = encode(&mut tx, b"hello");
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(rx.decode(&mut tampered).is_err());

        let (mut tx, mut rx) = codecs(MAX_MESSAGE).await;
        let good = encode(&mut tx, b"hello");
        assert_eq!(
            &rx.decode(&mut good.clone()).unwrap().unwrap()[..],
            b"hello"
        );
        assert!(rx.decode(&mut good.clone()).is_err(), "a replay");

        let (_tx, mut rx) = codecs(MAX_MESSAGE).await;
        let mut short = BytesMut::from(&[0u8, 16, 0, 0][..]);
        let err = rx.decode(&mut short).unwrap_err();
        assert!(err.to_string().contains("too short"), "{err}");

        // Incomplete input is not an error yet, and claims no more memory than one frame.
        let (_tx, mut rx) = codecs(MAX_MESSAGE).await;
        let mut partial = BytesMut::from(&[0xffu8, 0xff, 1, 2, 3][..]);
        assert!(rx.decode(&mut partial).unwrap().is_none());
        assert!(partial.capacity() <= 2 * (MAX_FRAME + 2));
    }

    #[tokio::test]
    async fn a_wrong_key_fails_both_sides_of_the_handshake() {
        let (i, r) = sessions(&ClusterKey::generate(), &ClusterKey::generate()).await;
        assert!(matches!(i, Err(ProtoError::WrongKey { ref peer }) if peer == "responder"));
        assert!(matches!(r, Err(ProtoError::WrongKey { ref peer }) if peer == "initiator"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_initiator_times_out_after_the_default_timeout() {
        let (_silent, mut server_side) = tokio::io::duplex(64);
        let key = ClusterKey::generate();
        let started = tokio::time::Instant::now();
        let err = respond(&mut server_side, &key, "silent", HANDSHAKE_TIMEOUT)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProtoError::HandshakeTimeout { after, .. } if after == HANDSHAKE_TIMEOUT)
        );
        assert_eq!(started.elapsed(), HANDSHAKE_TIMEOUT);
    }
}
