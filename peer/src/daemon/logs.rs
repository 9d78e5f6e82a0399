//! `read_log`'s serving side (issue 16): the one place where a peer opens a log file for
//! someone else. The file is chosen from this machine's layout ([`MachineFiles`]: the
//! peer's own `peer.log`, or an application's `app.log`), never from the request; an
//! application's name is checked as `app.toml`'s is before it becomes part of a path. Every
//! answer holds complete lines only, within [`LOG_MAX_LINES`] and [`LOG_MAX_BYTES`].

use std::{
    fs::File,
    os::unix::fs::{FileExt, MetadataExt},
    path::{Path, PathBuf},
};

use smon_proto::{
    LOG_MAX_BYTES, LOG_MAX_LINES, LogChunk, LogCursor, LogFrom, LogRequest, MachineId, Refusal,
    app_package::valid_app_name, files::MachineFiles,
};

/// Serve `req` from this machine's files (`root`, the machine's smon directory), as the
/// peer of `me` at `now_ms` (the clock `within_ms` counts back from). Blocking: file reads.
/// Errors: `Invalid` for a bad application name, `NotFound` for an application that is not
/// installed here or a log that does not exist yet, `Busy` for a read that failed.
pub fn serve(
    root: &Path,
    me: &MachineId,
    req: &LogRequest,
    now_ms: u64,
) -> Result<LogChunk, Refusal> {
    let (path, what) = log_path(root, me, req.app.as_deref())?;
    let file = File::open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Refusal::NotFound(format!("{what} has no log yet")),
        _ => Refusal::Busy(format!("opening {what}'s log: {e}")),
    })?;
    let read_error = |e: std::io::Error| Refusal::Busy(format!("reading {what}'s log: {e}"));
    let meta = file.metadata().map_err(read_error)?;
    let id = file_id(&meta);
    let piece = match &req.from {
        LogFrom::Tail { lines, within_ms } => {
            let since = within_ms.map(|w| now_ms.saturating_sub(w));
            tail(&file, meta.len(), (*lines).min(LOG_MAX_LINES), since).map_err(read_error)?
        }
        LogFrom::After(cursor) => after(&file, meta.len(), id, *cursor).map_err(read_error)?,
    };
    Ok(LogChunk {
        machine: me.clone(),
        data: piece.data,
        next: LogCursor {
            file: id,
            offset: piece.end,
        },
        cut: piece.cut,
        restarted: piece.restarted,
        more: piece.more,
        untimed: piece.untimed,
    })
}

/// The file a log name means on this machine, and how to name it in a message.
fn log_path(root: &Path, me: &MachineId, app: Option<&str>) -> Result<(PathBuf, String), Refusal> {
    let files = MachineFiles::new(root);
    let Some(name) = app else {
        return Ok((files.log(), format!("the peer of {me}")));
    };
    if !valid_app_name(name) {
        return Err(Refusal::Invalid(format!(
            "{:?} is not an application name (letters, digits, '.', '_' and '-', starting \
             with a letter or digit, at most 64)",
            name.chars().take(80).collect::<String>()
        )));
    }
    if !files.app(name).is_dir() {
        return Err(Refusal::NotFound(format!("no application {name} on {me}")));
    }
    Ok((
        files.app_log(name),
        format!("the application {name} on {me}"),
    ))
}

/// A file's identity on this machine: a rotated log is a new file (a new inode).
fn file_id(meta: &std::fs::Metadata) -> u64 {
    meta.ino() ^ meta.dev().rotate_left(32)
}

/// What one read found: [`LogChunk`]'s fields but the machine and the file, with `end` the
/// offset to go on from.
#[derive(Default)]
struct Piece {
    data: Vec<u8>,
    end: u64,
    cut: bool,
    restarted: bool,
    more: bool,
    untimed: bool,
}

/// The last `lines` complete lines of the file (of at most the last [`LOG_MAX_BYTES`]),
/// those stamped at or after `since_ms` when given.
fn tail(file: &File, len: u64, lines: u32, since_ms: Option<u64>) -> std::io::Result<Piece> {
    let window = len.min(u64::from(LOG_MAX_BYTES));
    let start = len - window;
    let mut buf = vec![0; window as usize];
    file.read_exact_at(&mut buf, start)?;
    // Complete lines only: what follows the last newline is still being written.
    buf.truncate(buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1));
    let end = start + buf.len() as u64;
    // A window that does not start at the file's start starts inside a line.
    let first = match start {
        0 => 0,
        _ => buf
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |i| i + 1),
    };
    let all: Vec<&[u8]> = buf[first..].split_inclusive(|&b| b == b'\n').collect();
    let (recent, untimed) = match since_ms {
        Some(since) => recent_from(&all, since),
        None => (0, false),
    };
    let keep = &all[recent..];
    let skip = keep.len().saturating_sub(lines as usize);
    let data: Vec<u8> = keep[skip..].concat();
    let mut out = Piece {
        data,
        end,
        ..Piece::default()
    };
    // Lines were asked for that the window could not hold.
    out.cut = start > 0 && recent == 0 && keep.len() < lines as usize;
    out.untimed = untimed;
    Ok(out)
}

/// The index of the first line stamped at or after `since_ms` (a line without a time takes
/// the time of the nearest stamped line before it, or of the first one after it at the
/// start), and whether no line had a time at all (then every line counts as recent).
fn recent_from(lines: &[&[u8]], since_ms: u64) -> (usize, bool) {
    let stamps: Vec<Option<u64>> = lines.iter().map(|l| line_time_ms(l)).collect();
    if stamps.iter().all(Option::is_none) {
        return (0, true);
    }
    let mut current = stamps.iter().flatten().next().copied();
    for (i, stamp) in stamps.iter().enumerate() {
        if stamp.is_some() {
            current = *stamp;
        }
        if current.is_some_and(|t| t >= since_ms) {
            return (i, false);
        }
    }
    (lines.len(), false)
}

/// The RFC 3339 time a line starts with (the peer's tracing lines do), in ms since the epoch.
fn line_time_ms(line: &[u8]) -> Option<u64> {
    let head = &line[..line.len().min(40)];
    let word = head.split(|b| b.is_ascii_whitespace()).next()?;
    let time = humantime::parse_rfc3339_weak(std::str::from_utf8(word).ok()?).ok()?;
    let ms = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    u64::try_from(ms).ok()
}

/// The complete lines after `cursor`; from the file's start when it is another file than the
/// cursor's or shorter than its offset (rotated or truncated).
fn after(file: &File, len: u64, id: u64, cursor: LogCursor) -> std::io::Result<Piece> {
    let restarted = cursor.file != id || cursor.offset > len;
    let from = if restarted { 0 } else { cursor.offset };
    let want = (len - from).min(u64::from(LOG_MAX_BYTES));
    let mut buf = vec![0; want as usize];
    file.read_exact_at(&mut buf, from)?;
    let full = want == u64::from(LOG_MAX_BYTES);
    match buf.iter().rposition(|&b| b == b'\n') {
        Some(i) => buf.truncate(i + 1),
        // One line longer than a chunk: served in pieces, or it would block the follower.
        None if full => {}
        None => buf.clear(),
    }
    let mut out = Piece {
        end: from + buf.len() as u64,
        ..Piece::default()
    };
    // Beyond the line cap: the rest is served by the next request.
    let newlines: Vec<usize> = buf
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
        .collect();
    if let Some(&cap_end) = newlines.get(LOG_MAX_LINES as usize - 1) {
        buf.truncate(cap_end + 1);
        out.end = from + buf.len() as u64;
    }
    out.more = out.end < len && (full || newlines.len() > LOG_MAX_LINES as usize);
    out.restarted = restarted;
    out.data = buf;
    Ok(out)
}

#[cfg(test)]
mod tests;
