//! The transport frames a peer decodes after a real handshake: the fuzzer writes a script of
//! frames that the client's session encrypts (any flag byte, any size up to one Noise message,
//! runs of full-size frames), mixed with raw bytes, tampered bytes, forged lengths and skipped
//! nonces; the server's [`NoiseCodec`], reading the stream in pieces of a fuzzer-chosen size,
//! must deliver exactly the messages the script spells out when nothing was tampered with, and
//! never panic, hang or allocate without bound in any case.
//!
//! The codec is the server's (16 MiB reassembly cap), or, when the first byte's high bit is
//! set, the same codec with a cap of [`SMALL_CAP`] bytes: scripts stay small (encrypting
//! 16 MiB per input would slow the fuzzer a hundredfold) and still cross the cap.
//!
//! Speed (the campaign ran ~50 inputs/s): the handshake runs once per thread, not per input
//! (the server's receiving nonce is set to the client's sending nonce before each script, so
//! every input starts where a fresh session would, nonces aside); a script writes at most
//! [`MAX_WIRE`] bytes; and the stream is read in at most [`MAX_READS`] pieces.

use smon_proto::{
    ClusterKey,
    noise::{self, HANDSHAKE_TIMEOUT, MAX_FRAME, MAX_MESSAGE, NoiseCodec},
};
use snow::TransportState;

use crate::{
    io::{Trickle, block_on, decode_stream_keeping},
    keys,
};

const TAG_LEN: usize = 16;
/// Plaintext bytes of one frame after the flag byte.
const CHUNK: usize = MAX_FRAME - TAG_LEN - 1;
/// Flag bytes of the wire format (first plaintext byte of a frame).
const LAST: u8 = 0;
const MORE: u8 = 1;
/// No script writes more than this: a few times [`SMALL_CAP`], so scripts can still cross the
/// small cap several times (at 4 MiB, a long input took tens of milliseconds to encrypt).
pub const MAX_WIRE: usize = 512 << 10;
/// A stream is read in at most this many pieces: the fuzzer's read size is raised for long
/// streams (byte-at-a-time reads of a long stream cost one poll per byte).
pub const MAX_READS: usize = 4_096;
/// The reassembly cap of the small-cap mode: a few frames' worth.
pub const SMALL_CAP: usize = 2 * CHUNK + 100;

/// `data`: one byte (high bit: small cap; the rest: read size, 0 = whole stream), then the
/// script.
pub fn run(data: &[u8]) {
    let Some((&first, script)) = data.split_first() else {
        return;
    };
    let cap = if first & 0x80 != 0 {
        SMALL_CAP
    } else {
        MAX_MESSAGE
    };
    let step = usize::from(first & 0x7f);
    let (mut client, mut server) = SESSIONS
        .with(|s| s.take())
        .unwrap_or_else(|| block_on(sessions(&keys::cluster_key())));
    // A fresh session as far as the server can tell: it expects the client's next nonce.
    server.set_receiving_nonce(client.sending_nonce());
    let plan = Plan::build(script, &mut client, cap);
    let step = if step == 0 {
        0
    } else {
        step.max(plan.wire.len().div_ceil(MAX_READS))
    };
    let codec = if cap == MAX_MESSAGE {
        NoiseCodec::new(server)
    } else {
        NoiseCodec::with_max_message(server, cap)
    };
    let (messages, error, codec) =
        block_on(decode_stream_keeping(codec, Trickle::new(&plan.wire, step)));
    SESSIONS.with(|s| s.set(Some((client, codec.into_session()))));
    for message in &messages {
        assert!(message.len() <= cap, "a message over the cap was delivered");
        crate::rpc::peer_request(message);
    }
    if plan.clean {
        let got: Vec<&[u8]> = messages.iter().map(|m| &m[..]).collect();
        let want: Vec<&[u8]> = plan.messages.iter().map(|m| &m[..]).collect();
        assert_eq!(got, want, "delivered messages differ from the frames sent");
        assert_eq!(error.is_some(), plan.error, "error {error:?}");
    }
}

thread_local! {
    /// Both ends of this thread's one handshake: (client, server).
    static SESSIONS: std::cell::Cell<Option<(TransportState, TransportState)>> =
        const { std::cell::Cell::new(None) };
}

/// Both ends of a real handshake over an in-memory pipe.
pub async fn sessions(key: &ClusterKey) -> (TransportState, TransportState) {
    let (mut a, mut b) = tokio::io::duplex(2 * MAX_FRAME);
    let (i, r) = tokio::join!(
        noise::initiate(&mut a, key, "server", HANDSHAKE_TIMEOUT),
        noise::respond(&mut b, key, "client", HANDSHAKE_TIMEOUT),
    );
    (i.expect("initiator"), r.expect("responder"))
}

/// The bytes a script puts on the wire, and what a correct receiver makes of them.
struct Plan {
    wire: Vec<u8>,
    /// Nothing but well-formed frames: the outcome is known exactly.
    clean: bool,
    messages: Vec<Vec<u8>>,
    partial: Vec<u8>,
    /// The receiver must stop with an error (bad flag, over the cap).
    error: bool,
    cap: usize,
}

/// Takes bytes off the front of the script; missing bytes read as 0.
struct Script<'a>(&'a [u8]);

impl<'a> Script<'a> {
    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

impl Plan {
    fn build(script: &[u8], client: &mut TransportState, cap: usize) -> Plan {
        let mut plan = Plan {
            wire: Vec::new(),
            clean: true,
            messages: Vec::new(),
            partial: Vec::new(),
            error: false,
            cap,
        };
        let mut s = Script(script);
        while !s.0.is_empty() && plan.wire.len() < MAX_WIRE {
            match s.u8() % 6 {
                0 => {
                    let flag = s.u8();
                    let len = usize::from(s.u16()) % (CHUNK + 1);
                    let data = s.take(len).to_vec();
                    plan.frame(client, flag, &data);
                }
                1 => {
                    // A run of full frames: flag MORE on all but the last.
                    let (flag, count, fill) = (s.u8(), 1 + s.u8() % 3, s.u8());
                    let data = vec![fill; CHUNK];
                    for n in 0..count {
                        let f = if n + 1 == count { flag } else { MORE };
                        plan.frame(client, f, &data);
                    }
                }
                2 => {
                    let n = usize::from(s.u8());
                    plan.wire.extend_from_slice(s.take(n));
                    plan.clean = false;
                }
                3 => {
                    let at = usize::from(s.u16());
                    if !plan.wire.is_empty() {
                        let i = at % plan.wire.len();
                        plan.wire[i] ^= s.u8() | 1;
                    }
                    plan.clean = false;
                }
                4 => {
                    // A genuine frame under a forged length prefix.
                    let (flag, len) = (s.u8(), s.u16());
                    let n = usize::from(s.u8());
                    let data = s.take(n).to_vec();
                    let at = plan.wire.len();
                    plan.frame(client, flag, &data);
                    plan.wire[at..at + 2].copy_from_slice(&len.to_be_bytes());
                    plan.clean = false;
                }
                _ => {
                    // Encrypted, never sent: the receiver's nonce falls behind.
                    let mut scratch = vec![0u8; MAX_FRAME];
                    let _ = client.write_message(&[LAST], &mut scratch);
                    plan.clean = false;
                }
            }
        }
        plan
    }

    /// One frame `flag || data`, encrypted as the sending codec does, and its expected effect.
    fn frame(&mut self, client: &mut TransportState, flag: u8, data: &[u8]) {
        let mut plain = Vec::with_capacity(1 + data.len());
        plain.push(flag);
        plain.extend_from_slice(data);
        let mut cipher = vec![0u8; MAX_FRAME];
        let n = client
            .write_message(&plain, &mut cipher)
            .expect("a frame within one Noise message encrypts");
        self.wire.extend_from_slice(&(n as u16).to_be_bytes());
        self.wire.extend_from_slice(&cipher[..n]);
        if self.error {
            return;
        }
        if self.partial.len() + data.len() > self.cap {
            self.error = true;
            return;
        }
        self.partial.extend_from_slice(data);
        match flag {
            LAST => self.messages.push(std::mem::take(&mut self.partial)),
            MORE => {}
            _ => self.error = true,
        }
    }
}

/// Seeds: one short message, an empty one, a message of several frames, a bad flag, and a
/// real request to a peer carried in one frame.
pub fn seeds() -> Vec<Vec<u8>> {
    let frame = |flag: u8, data: &[u8]| {
        let mut op = vec![0, flag];
        op.extend_from_slice(&(data.len() as u16).to_le_bytes());
        op.extend_from_slice(data);
        op
    };
    let mut seeds = vec![
        [vec![0], frame(LAST, b"hello")].concat(),
        [vec![7], frame(LAST, b"")].concat(),
        [
            vec![3],
            frame(MORE, b"abc"),
            frame(MORE, b"def"),
            frame(LAST, b"g"),
        ]
        .concat(),
        [vec![0], vec![1, LAST, 2, 0x61]].concat(),
        [vec![0], frame(2, b"x")].concat(),
        [vec![0], frame(LAST, b"a"), vec![5], frame(LAST, b"b")].concat(),
        [vec![1], frame(LAST, b"a"), vec![3, 5, 0, 1]].concat(),
        // Small cap: three full frames cross it; a full frame then a short one do not.
        [vec![0x80], vec![1, LAST, 2, 0x61]].concat(),
        [vec![0x81], vec![1, MORE, 0, 0x62], frame(LAST, b"end")].concat(),
    ];
    for request in crate::rpc::peer_request_seeds().into_iter().take(4) {
        seeds.push([vec![0], frame(LAST, &request)].concat());
    }
    seeds
}
