//! Chunked transfer of packages, written once for both directions and both kinds of package
//! (a peer release, `SMONPKG1`; an application, `SMONAPP1`).
//!
//! - **Fetch** (peer from peer): the client asks `retrieve_peer` / `retrieve_app` for
//!   consecutive [`ChunkRequest`]s of at most [`MAX_CHUNK`] bytes until it holds `total_len`
//!   bytes ([`fetch`]); the server answers the slice [`served_range`] names.
//! - **Push** (console to peer): the client sends the package as `PushRelease` / `PushApp`
//!   control actions of [`MAX_CHUNK`] bytes, in order ([`push`]); the server collects them in
//!   an [`Assembly`] and gets the whole package with the last piece.
//!
//! Sizes are checked on both sides before anything grows: a total over the kind's cap, a
//! piece out of order, more bytes than announced, an empty or shifted chunk are refused. What
//! the bytes mean (signature, manifest, version) is the caller's to verify.

use std::{future::Future, ops::Range, time::Duration};

use tarpc::context;

use crate::{
    Chunk, ChunkRequest, ControlAction, MAX_CHUNK, PeerServiceClient, Refusal, Version,
    app_package::MAX_APP_PACKAGE_BYTES, release::MAX_PACKAGE_BYTES,
};

/// Which kind of package a transfer carries: it decides the RPC, the control action and the
/// size cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A peer release (`retrieve_peer`, `PushRelease`), at most [`MAX_PACKAGE_BYTES`].
    Release,
    /// An application package (`retrieve_app`, `PushApp`), at most [`MAX_APP_PACKAGE_BYTES`].
    App,
}

impl Kind {
    /// The largest package of this kind, in bytes.
    pub fn cap(self) -> u64 {
        match self {
            Kind::Release => MAX_PACKAGE_BYTES,
            Kind::App => MAX_APP_PACKAGE_BYTES,
        }
    }

    /// The control action that pushes `data`, the piece at `offset` of a `total`-byte package.
    pub fn push_action(self, offset: u64, total: u64, data: Vec<u8>) -> ControlAction {
        match self {
            Kind::Release => ControlAction::PushRelease {
                offset,
                total,
                data,
            },
            Kind::App => ControlAction::PushApp {
                offset,
                total,
                data,
            },
        }
    }
}

/// What a fetch asks a peer for.
#[derive(Clone, Copy, Debug)]
pub enum Wanted<'a> {
    /// The peer's release `version` (`retrieve_peer`).
    Release(Version),
    /// Application `name` at `version` (`retrieve_app`).
    App(&'a str, Version),
}

impl Wanted<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Wanted::Release(_) => Kind::Release,
            Wanted::App(..) => Kind::App,
        }
    }

    pub fn version(&self) -> Version {
        match self {
            Wanted::Release(v) | Wanted::App(_, v) => *v,
        }
    }
}

/// Why a fetch failed. Nothing is kept of a failed fetch: the next offer starts over.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The call did not complete (deadline, connection lost).
    #[error("{0}")]
    Rpc(#[from] tarpc::client::RpcError),
    /// The serving peer refused (busy serving others, package not there).
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The serving peer answered a chunk that does not fit the transfer.
    #[error("bad chunk (offset {offset}, total {total}, {len} bytes): {why}")]
    BadChunk {
        offset: u64,
        total: u64,
        len: usize,
        why: &'static str,
    },
}

/// Fetch `wanted` from the peer behind `client` in chunks; each call has `timeout`. `session`
/// is chosen by the caller for the whole transfer (the server counts concurrent fetches by
/// it). Returns the whole package, at most the kind's cap, not yet verified.
pub async fn fetch(
    client: &PeerServiceClient,
    wanted: Wanted<'_>,
    session: u64,
    timeout: Duration,
) -> Result<Vec<u8>, FetchError> {
    let retrieve = |req: ChunkRequest| async move {
        let mut ctx = context::current();
        ctx.deadline = std::time::Instant::now() + timeout;
        let chunk = match wanted {
            Wanted::Release(_) => client.retrieve_peer(ctx, req).await?,
            Wanted::App(name, _) => client.retrieve_app(ctx, name.to_owned(), req).await?,
        };
        Ok(chunk?)
    };
    fetch_with(wanted.kind(), wanted.version(), session, retrieve).await
}

/// The loop of [`fetch`], over any `retrieve` (one chunk request, one answer).
pub async fn fetch_with<F, Fut>(
    kind: Kind,
    version: Version,
    session: u64,
    mut retrieve: F,
) -> Result<Vec<u8>, FetchError>
where
    F: FnMut(ChunkRequest) -> Fut,
    Fut: Future<Output = Result<Chunk, FetchError>>,
{
    let mut package = Vec::new();
    let mut announced = None;
    loop {
        let offset = package.len() as u64;
        let chunk = retrieve(ChunkRequest {
            session,
            version,
            offset,
            max_len: MAX_CHUNK,
        })
        .await?;
        let bad = |why| FetchError::BadChunk {
            offset: chunk.offset,
            total: chunk.total_len,
            len: chunk.data.len(),
            why,
        };
        if chunk.total_len > kind.cap() {
            return Err(bad("over the cap"));
        }
        if chunk.data.is_empty() {
            return Err(bad("empty"));
        }
        if chunk.offset != offset {
            return Err(bad("not at the offset asked for"));
        }
        if *announced.get_or_insert(chunk.total_len) != chunk.total_len {
            return Err(bad("another total than before"));
        }
        if offset + chunk.data.len() as u64 > chunk.total_len {
            return Err(bad("past the announced total"));
        }
        package.extend_from_slice(&chunk.data);
        if package.len() as u64 == chunk.total_len {
            return Ok(package);
        }
    }
}

/// The bytes a [`ChunkRequest`] for `offset`/`max_len` gets of a `total`-byte package: at
/// most [`MAX_CHUNK`], at least one byte unless at the end. Errors: an offset past the end.
pub fn served_range(offset: u64, max_len: u32, total: u64) -> Result<Range<u64>, Refusal> {
    if offset > total {
        return Err(Refusal::Invalid(format!(
            "offset {offset} past the end ({total})"
        )));
    }
    let len = u64::from(max_len.clamp(1, MAX_CHUNK)).min(total - offset);
    Ok(offset..offset + len)
}

/// Push `package` as `kind` in pieces of [`MAX_CHUNK`] bytes through `send` (one control
/// action, one answer), in order. Returns the answer to the last piece (the receiver's
/// verdict on the whole); stops at the first error.
pub async fn push<F, Fut, E>(kind: Kind, package: &[u8], mut send: F) -> Result<String, E>
where
    F: FnMut(ControlAction) -> Fut,
    Fut: Future<Output = Result<String, E>>,
{
    let total = package.len() as u64;
    let mut answer = String::new();
    let mut offset = 0u64;
    for piece in package.chunks(MAX_CHUNK as usize) {
        answer = send(kind.push_action(offset, total, piece.to_vec())).await?;
        offset += piece.len() as u64;
    }
    Ok(answer)
}

/// The receiving side of a push: pieces collected in order until the package is whole.
#[derive(Debug)]
pub struct Assembly {
    kind: Kind,
    buf: Vec<u8>,
}

/// What one piece made of an [`Assembly`].
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    /// More to come; the text says how far it got ("N of TOTAL bytes").
    Partial(String),
    /// The last piece came: the whole package (the assembly is empty again).
    Complete(Vec<u8>),
}

impl Assembly {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            buf: Vec::new(),
        }
    }

    /// Add the piece `data` at `offset` of a `total`-byte package. Pieces must come in order;
    /// a piece at offset 0 starts over. Errors (the pieces so far are kept): a total over the
    /// kind's cap, an offset other than the next expected, more data than announced.
    pub fn add(&mut self, offset: u64, total: u64, data: &[u8]) -> Result<Assembled, Refusal> {
        let cap = self.kind.cap();
        if total > cap {
            return Err(Refusal::Invalid(format!(
                "a package of {total} bytes is over the cap of {cap}"
            )));
        }
        if offset == 0 {
            self.buf.clear();
        }
        if offset != self.buf.len() as u64 {
            return Err(Refusal::Invalid(format!(
                "expected offset {}, got {offset}",
                self.buf.len()
            )));
        }
        if self.buf.len() as u64 + data.len() as u64 > total {
            return Err(Refusal::Invalid("more data than announced".into()));
        }
        self.buf.extend_from_slice(data);
        if (self.buf.len() as u64) < total {
            return Ok(Assembled::Partial(format!(
                "{} of {total} bytes",
                self.buf.len()
            )));
        }
        Ok(Assembled::Complete(std::mem::take(&mut self.buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// A server of `package` as `retrieve_peer` serves it.
    fn serve(package: &[u8], req: ChunkRequest) -> Result<Chunk, FetchError> {
        let total = package.len() as u64;
        let range = served_range(req.offset, req.max_len, total)?;
        Ok(Chunk {
            manifest: None,
            total_len: total,
            offset: req.offset,
            data: package[range.start as usize..range.end as usize].to_vec(),
        })
    }

    fn block_on<T>(fut: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(fut)
    }

    #[test]
    fn a_push_assembles_into_what_a_fetch_gets() {
        for len in [1, MAX_CHUNK as usize, MAX_CHUNK as usize * 2 + 17] {
            let original = package(len);
            let mut requests = 0;
            let fetched = block_on(fetch_with(Kind::Release, Version::new(1, 0, 0), 9, |req| {
                requests += 1;
                assert_eq!(req.session, 9);
                std::future::ready(serve(&original, req))
            }))
            .unwrap();
            assert_eq!(fetched, original);
            assert_eq!(requests, len.div_ceil(MAX_CHUNK as usize));

            let mut assembly = Assembly::new(Kind::App);
            let mut whole = None;
            let answer = block_on(push(Kind::App, &fetched, |action| {
                let ControlAction::PushApp {
                    offset,
                    total,
                    data,
                } = action
                else {
                    panic!("not an application push: {action:?}");
                };
                let answer = match assembly.add(offset, total, &data) {
                    Ok(Assembled::Partial(progress)) => Ok(progress),
                    Ok(Assembled::Complete(p)) => {
                        whole = Some(p);
                        Ok("complete".to_string())
                    }
                    Err(r) => Err(r),
                };
                std::future::ready(answer)
            }))
            .unwrap();
            assert_eq!(answer, "complete");
            assert_eq!(whole.unwrap(), original);
        }
    }

    #[test]
    fn a_fetch_refuses_chunks_that_do_not_fit() {
        let original = package(3 * MAX_CHUNK as usize);
        type Spoil = fn(&mut Chunk);
        let cases: [(&str, Spoil); 5] = [
            ("over the cap", |c| c.total_len = MAX_PACKAGE_BYTES + 1),
            ("empty", |c| c.data.clear()),
            ("not at the offset", |c| c.offset += 1),
            ("another total", |c| {
                if c.offset > 0 {
                    c.total_len += 1
                }
            }),
            ("past the announced total", |c| {
                c.total_len = c.offset + 1;
            }),
        ];
        for (why, spoil) in cases {
            let err = block_on(fetch_with(Kind::Release, Version::new(1, 0, 0), 1, |req| {
                let mut chunk = serve(&original, req).unwrap();
                spoil(&mut chunk);
                std::future::ready(Ok(chunk))
            }))
            .unwrap_err();
            assert!(err.to_string().contains(why), "{why}: {err}");
        }
        let refused = block_on(fetch_with(Kind::App, Version::new(1, 0, 0), 1, |_| {
            std::future::ready(Err(Refusal::Busy("serving others".into()).into()))
        }))
        .unwrap_err();
        assert!(matches!(refused, FetchError::Refused(Refusal::Busy(_))));
    }

    #[test]
    fn an_assembly_refuses_what_does_not_fit_and_starts_over_at_zero() {
        let mut a = Assembly::new(Kind::Release);
        let over = a.add(0, MAX_PACKAGE_BYTES + 1, b"x").unwrap_err();
        assert!(over.to_string().contains("over the cap"), "{over}");
        assert_eq!(
            a.add(0, 6, b"abc").unwrap(),
            Assembled::Partial("3 of 6 bytes".into())
        );
        let gap = a.add(4, 6, b"ef").unwrap_err();
        assert!(
            gap.to_string().contains("expected offset 3, got 4"),
            "{gap}"
        );
        let more = a.add(3, 6, b"defg").unwrap_err();
        assert!(
            more.to_string().contains("more data than announced"),
            "{more}"
        );
        // A first piece again starts over.
        assert_eq!(
            a.add(0, 4, b"wx").unwrap(),
            Assembled::Partial("2 of 4 bytes".into())
        );
        assert_eq!(
            a.add(2, 4, b"yz").unwrap(),
            Assembled::Complete(b"wxyz".to_vec())
        );
    }

    #[test]
    fn served_ranges_stay_within_the_package_and_the_chunk_size() {
        assert_eq!(served_range(0, 0, 10).unwrap(), 0..1);
        assert_eq!(served_range(4, 100, 10).unwrap(), 4..10);
        assert_eq!(served_range(10, 100, 10).unwrap(), 10..10);
        assert_eq!(
            served_range(0, u32::MAX, u64::MAX).unwrap(),
            0..u64::from(MAX_CHUNK)
        );
        assert!(served_range(11, 1, 10).is_err());
    }
}
