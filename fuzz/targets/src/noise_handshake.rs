//! The Noise handshake, from the first byte a client sends to a peer or an agent
//! ([`noise::respond`], then the transport frames that follow, decoded by the session it made),
//! and from the first byte a server answers to a client ([`noise::initiate`]).

use smon_proto::noise::{self, HANDSHAKE_TIMEOUT, NoiseCodec};

use crate::{
    io::{Trickle, block_on, decode_stream},
    keys,
};

/// `data` is the byte stream of one connection.
pub fn run(data: &[u8]) {
    block_on(async {
        let key = keys::cluster_key();
        let mut rest = data;
        let responded = {
            let mut io = tokio::io::join(&mut rest, tokio::io::sink());
            noise::respond(&mut io, &key, "fuzz", HANDSHAKE_TIMEOUT).await
        };
        if let Ok(session) = responded {
            let (messages, _) =
                decode_stream(NoiseCodec::new(session), Trickle::new(rest, 0)).await;
            for message in messages {
                crate::rpc::peer_request(&message);
            }
        }
        let mut io = tokio::io::join(data, tokio::io::sink());
        // A server's answer cannot complete a handshake started with a fresh ephemeral key;
        // what matters is that every answer ends in a value, not a panic or a wait.
        let _ = noise::initiate(&mut io, &key, "fuzz", HANDSHAKE_TIMEOUT).await;
    })
}

/// Seeds: a genuine first message under the fixed K_E (alone, and followed by frames), one
/// under another key, a refusal, and nothing.
pub fn seeds() -> Vec<Vec<u8>> {
    let hello = first_message(&keys::cluster_key());
    let other = first_message(&smon_proto::ClusterKey::from_bytes([1; 32]));
    let mut with_frames = hello.clone();
    with_frames.extend_from_slice(&[0, 17]);
    with_frames.extend_from_slice(&[0xab; 17]);
    let mut with_garbage = hello.clone();
    with_garbage.extend_from_slice(b"\x00\x05hello");
    vec![hello, other, with_frames, with_garbage, vec![0, 0], vec![]]
}

/// What a client sends first: its handshake frame (the handshake itself then fails for want
/// of an answer).
pub fn first_message(key: &smon_proto::ClusterKey) -> Vec<u8> {
    let mut sent = Vec::new();
    block_on(async {
        let mut io = tokio::io::join(&[][..], &mut sent);
        let _ = noise::initiate(&mut io, key, "seed", HANDSHAKE_TIMEOUT).await;
    });
    sent
}
