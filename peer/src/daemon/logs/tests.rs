//! The serving side of `read_log` against real files, and against what a hostile client can
//! put in a request: it must answer with a refusal or a bounded chunk, never panic.

use std::io::Write;

use super::*;

fn me() -> MachineId {
    MachineId::Local { name: "m1".into() }
}

fn tail_req(app: Option<&str>, lines: u32, within_ms: Option<u64>) -> LogRequest {
    LogRequest {
        machine: me(),
        app: app.map(str::to_owned),
        from: LogFrom::Tail { lines, within_ms },
        relayed: false,
    }
}

fn after_req(app: Option<&str>, cursor: LogCursor) -> LogRequest {
    LogRequest {
        from: LogFrom::After(cursor),
        ..tail_req(app, 0, None)
    }
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn text(chunk: &LogChunk) -> &str {
    std::str::from_utf8(&chunk.data).unwrap()
}

fn numbered(n: usize) -> String {
    (1..=n).map(|i| format!("line {i}\n")).collect()
}

#[test]
fn the_last_lines_of_the_peer_log_and_then_what_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let log = MachineFiles::new(dir.path()).log();
    append(&log, &numbered(10));
    append(&log, "half a li");
    let chunk = serve(dir.path(), &me(), &tail_req(None, 3, None), 0).unwrap();
    assert_eq!(text(&chunk), "line 8\nline 9\nline 10\n");
    assert_eq!(chunk.machine, me());
    assert!(!chunk.cut && !chunk.restarted && !chunk.more);
    // The unfinished line comes once it is finished, and only then.
    let same = serve(dir.path(), &me(), &after_req(None, chunk.next), 0).unwrap();
    assert_eq!(text(&same), "");
    assert_eq!(same.next, chunk.next);
    append(&log, "ne\nnew\n");
    let next = serve(dir.path(), &me(), &after_req(None, chunk.next), 0).unwrap();
    assert_eq!(text(&next), "half a line\nnew\n");
    assert!(!next.restarted);
}

#[test]
fn an_application_log_is_found_by_name_and_a_missing_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let files = MachineFiles::new(dir.path());
    let err = serve(dir.path(), &me(), &tail_req(Some("web"), 10, None), 0).unwrap_err();
    assert_eq!(
        err,
        Refusal::NotFound("no application web on local:m1".into())
    );
    std::fs::create_dir_all(files.app("web")).unwrap();
    let err = serve(dir.path(), &me(), &tail_req(Some("web"), 10, None), 0).unwrap_err();
    assert_eq!(
        err,
        Refusal::NotFound("the application web on local:m1 has no log yet".into())
    );
    append(&files.app_log("web"), "listening\n");
    let chunk = serve(dir.path(), &me(), &tail_req(Some("web"), 10, None), 0).unwrap();
    assert_eq!(text(&chunk), "listening\n");
    let err = serve(dir.path(), &me(), &tail_req(None, 10, None), 0).unwrap_err();
    assert_eq!(
        err,
        Refusal::NotFound("the peer of local:m1 has no log yet".into())
    );
}

#[test]
fn hostile_names_are_refused_and_open_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A file a path-traversing name would reach.
    append(&dir.path().join("secret"), "do not serve\n");
    let files = MachineFiles::new(dir.path());
    std::fs::create_dir_all(files.apps()).unwrap();
    let long = "a".repeat(100_000);
    for name in [
        "..",
        "../secret",
        "../../etc/passwd",
        "/etc/passwd",
        "a/b",
        "",
        ".hidden",
        "a\0b",
        "web\n",
        &long,
    ] {
        let err = serve(dir.path(), &me(), &tail_req(Some(name), 10, None), 0).unwrap_err();
        let Refusal::Invalid(message) = err else {
            panic!("{name:?}: {err:?}")
        };
        assert!(message.len() < 300, "a one-line error: {message}");
        assert!(!message.contains('\n'));
    }
}

#[test]
fn a_huge_n_is_capped_by_lines_and_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = MachineFiles::new(dir.path()).log();
    append(&log, &numbered(LOG_MAX_LINES as usize + 5));
    let chunk = serve(dir.path(), &me(), &tail_req(None, u32::MAX, None), 0).unwrap();
    assert_eq!(
        chunk.data.iter().filter(|&&b| b == b'\n').count(),
        LOG_MAX_LINES as usize
    );
    assert!(text(&chunk).ends_with(&format!("line {}\n", LOG_MAX_LINES + 5)));
    // Two megabytes of long lines: the chunk holds the last complete lines of one megabyte.
    let line = format!("{}\n", "x".repeat(999));
    let big: String = line.repeat(2048);
    append(&log, &big);
    let chunk = serve(dir.path(), &me(), &tail_req(None, u32::MAX, None), 0).unwrap();
    assert!(chunk.data.len() <= LOG_MAX_BYTES as usize);
    assert!(chunk.data.len() > LOG_MAX_BYTES as usize - 2000);
    assert!(text(&chunk).starts_with('x') && chunk.cut);
    // Following from the start of that file comes in bounded pieces, each saying more follows.
    let start = LogCursor {
        file: chunk.next.file,
        offset: 0,
    };
    let first = serve(dir.path(), &me(), &after_req(None, start), 0).unwrap();
    assert!(first.more && first.data.len() <= LOG_MAX_BYTES as usize);
    assert!(first.data.iter().filter(|&&b| b == b'\n').count() <= LOG_MAX_LINES as usize);
}

#[test]
fn a_rotated_or_truncated_log_is_followed_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = MachineFiles::new(dir.path()).log();
    append(&log, &numbered(5));
    let chunk = serve(dir.path(), &me(), &tail_req(None, 1, None), 0).unwrap();
    // Rotated: renamed away, a new file in its place.
    std::fs::rename(&log, dir.path().join("peer.log.1")).unwrap();
    append(&log, "fresh\n");
    let next = serve(dir.path(), &me(), &after_req(None, chunk.next), 0).unwrap();
    assert!(next.restarted);
    assert_eq!(text(&next), "fresh\n");
    // Truncated in place: shorter than the cursor.
    append(&log, &numbered(3));
    let at = serve(dir.path(), &me(), &after_req(None, next.next), 0).unwrap();
    std::fs::write(&log, "after truncation\n").unwrap();
    let again = serve(dir.path(), &me(), &after_req(None, at.next), 0).unwrap();
    assert!(again.restarted);
    assert_eq!(text(&again), "after truncation\n");
    // A cursor made up by a client: another file, an offset past the end.
    let made_up = LogCursor {
        file: 12345,
        offset: u64::MAX,
    };
    let chunk = serve(dir.path(), &me(), &after_req(None, made_up), 0).unwrap();
    assert!(chunk.restarted);
    assert_eq!(text(&chunk), "after truncation\n");
}

#[test]
fn since_selects_lines_by_the_time_they_start_with() {
    let dir = tempfile::tempdir().unwrap();
    let log = MachineFiles::new(dir.path()).log();
    append(
        &log,
        "2026-12-01T00:00:00.000000Z  INFO old\n\
         continued old\n\
         2026-12-01T00:10:00.500000Z  INFO recent\n\
         continued recent\n\
         2026-12-01T00:11:00Z  WARN newest\n",
    );
    let now = 1_796_083_200_000 + 12 * 60_000; // 2026-12-01T00:12:00Z
    let five_minutes = Some(5 * 60_000);
    let chunk = serve(dir.path(), &me(), &tail_req(None, 100, five_minutes), now).unwrap();
    assert_eq!(
        text(&chunk),
        "2026-12-01T00:10:00.500000Z  INFO recent\ncontinued recent\n\
         2026-12-01T00:11:00Z  WARN newest\n"
    );
    assert!(!chunk.untimed);
    let none = serve(dir.path(), &me(), &tail_req(None, 100, Some(1000)), now).unwrap();
    assert_eq!(text(&none), "");
    // A log without times: every line counts, and the answer says so.
    let files = MachineFiles::new(dir.path());
    std::fs::create_dir_all(files.app("web")).unwrap();
    append(&files.app_log("web"), "a\nb\n");
    let chunk = serve(dir.path(), &me(), &tail_req(Some("web"), 100, Some(1)), now).unwrap();
    assert_eq!(text(&chunk), "a\nb\n");
    assert!(chunk.untimed);
}

#[test]
fn a_line_longer_than_a_chunk_is_served_in_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let log = MachineFiles::new(dir.path()).log();
    append(&log, &"y".repeat(LOG_MAX_BYTES as usize + 10));
    let start = LogCursor { file: 0, offset: 0 };
    let first = serve(dir.path(), &me(), &after_req(None, start), 0).unwrap();
    assert_eq!(first.data.len(), LOG_MAX_BYTES as usize);
    let second = serve(dir.path(), &me(), &after_req(None, first.next), 0).unwrap();
    assert!(!second.restarted);
    assert_eq!(second.next.offset, LOG_MAX_BYTES as u64);
}
