//! What the targets need of tokio: one runtime per thread (made once: a fuzzer calls a target
//! millions of times), and streams over byte slices.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::BytesMut;
use futures::StreamExt;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::{Decoder, FramedRead};

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
}

/// Run `future` to completion on this thread's runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    RUNTIME.with(|runtime| runtime.block_on(future))
}

/// A reader that hands out at most `step` bytes per read, as TCP may deliver a stream in
/// pieces of any size (0 means all at once).
pub struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl<'a> Trickle<'a> {
    pub fn new(data: &'a [u8], step: usize) -> Self {
        Self { data, step }
    }
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let step = if self.step == 0 {
            usize::MAX
        } else {
            self.step
        };
        let n = self.data.len().min(buf.remaining()).min(step);
        let (head, rest) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

/// Every item `decoder` yields from `stream` as a `Framed` transport reads it, until the end of
/// the stream or the first error (after which a transport closes the connection).
pub async fn decode_stream<D>(decoder: D, stream: Trickle<'_>) -> (Vec<BytesMut>, Option<io::Error>)
where
    D: Decoder<Item = BytesMut, Error = io::Error>,
{
    let (items, error, _) = decode_stream_keeping(decoder, stream).await;
    (items, error)
}

/// [`decode_stream`], giving the decoder back (a target that reuses its state across inputs).
pub async fn decode_stream_keeping<D>(
    decoder: D,
    stream: Trickle<'_>,
) -> (Vec<BytesMut>, Option<io::Error>, D)
where
    D: Decoder<Item = BytesMut, Error = io::Error>,
{
    let mut framed = FramedRead::new(stream, decoder);
    let mut items = Vec::new();
    let mut error = None;
    while let Some(item) = framed.next().await {
        match item {
            Ok(item) => items.push(item),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    (items, error, framed.into_parts().codec)
}
