//! Reading a machine's logs through the overlay (issue 16): `read_log`'s request and its
//! chunked answer.
//!
//! The console asks any peer; that peer serves its own machine's log, or relays the request
//! once to the named machine's peer. Which file is read is derived by the serving peer from
//! its machine's layout (the peer's log, or an application's): the request names a log,
//! never a path. Every answer is bounded by [`LOG_MAX_LINES`] and [`LOG_MAX_BYTES`]; a
//! follower asks again from the [`LogCursor`] it was given, as `tail -F` does.

use serde::{Deserialize, Serialize};

use crate::MachineId;

/// Most lines in one [`LogChunk`] (a larger `-n` is served as this many).
pub const LOG_MAX_LINES: u32 = 10_000;

/// Most bytes of log text in one [`LogChunk`] (the size of a package chunk).
pub const LOG_MAX_BYTES: u32 = crate::MAX_CHUNK;

/// `read_log`: which log of which machine, and from where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRequest {
    /// The machine whose peer reads its own file.
    pub machine: MachineId,
    /// An application's log (its name, checked as `app.toml`'s); `None`: the peer's own log.
    pub app: Option<String>,
    pub from: LogFrom,
    /// Set by the peer that relays the request: the receiver must be `machine`'s peer and
    /// relays no further (a request crosses at most one hop between peers).
    pub relayed: bool,
}

/// Where a [`LogChunk`] starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogFrom {
    /// The last `lines` complete lines (at most [`LOG_MAX_LINES`]); with `within_ms`, only
    /// lines stamped at most that many milliseconds before the serving peer's clock (a line
    /// is stamped by the RFC 3339 time it starts with, else by the line before it).
    Tail { lines: u32, within_ms: Option<u64> },
    /// The complete lines appended after a cursor a previous chunk returned.
    After(LogCursor),
}

/// A place in one log file: which file (its identity on the serving machine, so that a
/// rotated or replaced file is noticed) and a byte offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCursor {
    pub file: u64,
    pub offset: u64,
}

/// `read_log`'s answer: complete lines of one log file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    /// The machine whose peer read the file.
    pub machine: MachineId,
    /// Whole lines, each ending in `\n`, as the file holds them (not necessarily UTF-8).
    pub data: Vec<u8>,
    /// Ask from here for what comes next.
    pub next: LogCursor,
    /// Older lines than those asked for were left out to keep the chunk within its caps.
    pub cut: bool,
    /// The file was rotated or truncated since the cursor: `data` starts at the new file's
    /// beginning, and what the old one got after the cursor is not in it.
    pub restarted: bool,
    /// More complete lines were already there than one chunk holds: ask again at once.
    pub more: bool,
    /// `within_ms` was asked but no line of the file starts with a time: every line was
    /// taken as recent.
    pub untimed: bool,
}
