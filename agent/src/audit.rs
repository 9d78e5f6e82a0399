//! The audit log: every request and its decision, in SQLite. Rows are written by one thread
//! with group commit, and a decision is returned to the caller only once its row is committed:
//! no signature leaves the agent unaudited. The table keeps the newest [`MAX_ROWS`] rows (older
//! ones are deleted as new ones come, and SQLite reuses their pages), so that a client that
//! asks, or fails its handshake, in a loop cannot fill the disk (issue 15, kind 3: every log
//! is bounded).

use std::{
    path::Path,
    sync::mpsc,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use rusqlite::{Connection, params};
use tokio::sync::oneshot;

#[derive(Clone, Debug, Default)]
pub struct Entry {
    /// The connection's address.
    pub conn: String,
    pub call: &'static str,
    pub requester: String,
    pub target: String,
    pub user: String,
    /// "signed" or "refused".
    pub decision: &'static str,
    pub detail: String,
}

#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<(Entry, i64, oneshot::Sender<()>)>,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    conn TEXT NOT NULL,
    call TEXT NOT NULL,
    requester TEXT NOT NULL,
    target TEXT NOT NULL,
    user TEXT NOT NULL,
    decision TEXT NOT NULL,
    detail TEXT NOT NULL)";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Rows the audit table keeps (about 150 bytes each: some 30 MB).
pub const MAX_ROWS: i64 = 200_000;

impl Audit {
    /// Open (or create) the audit database at `path`, keeping the newest [`MAX_ROWS`] rows.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_bounded(path, MAX_ROWS)
    }

    /// As [`Audit::open`], keeping the newest `max_rows` rows.
    pub fn open_bounded(path: &Path, max_rows: i64) -> anyhow::Result<Self> {
        let mut db = Connection::open(path).with_context(|| format!("{}", path.display()))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.execute(SCHEMA, [])?;
        let (tx, rx) = mpsc::channel::<(Entry, i64, oneshot::Sender<()>)>();
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < 4096 {
                        match rx.try_recv() {
                            Ok(e) => batch.push(e),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = write_batch(&mut db, &batch, max_rows) {
                        // The callers see a dropped acknowledgement and refuse.
                        tracing::error!("audit log: {e}");
                        continue;
                    }
                    for (_, _, ack) in batch {
                        let _ = ack.send(());
                    }
                }
            })?;
        Ok(Self { tx })
    }

    /// Record `entry`; true once it is committed.
    pub async fn record(&self, entry: Entry) -> bool {
        let (ack, done) = oneshot::channel();
        if self.tx.send((entry, now_ms(), ack)).is_err() {
            return false;
        }
        done.await.is_ok()
    }
}

/// Insert `batch` and delete what falls out of the newest `max_rows`, in one transaction.
fn write_batch(
    db: &mut Connection,
    batch: &[(Entry, i64, oneshot::Sender<()>)],
    max_rows: i64,
) -> rusqlite::Result<()> {
    let tx = db.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO audit (at_ms, conn, call, requester, target, user, decision, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for (e, at, _) in batch {
            stmt.execute(params![
                at,
                e.conn,
                e.call,
                e.requester,
                e.target,
                e.user,
                e.decision,
                e.detail
            ])?;
        }
    }
    // Ids only grow (INTEGER PRIMARY KEY takes the largest plus one), so the newest rows are
    // those within `max_rows` of the largest id.
    tx.execute(
        "DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - ?1",
        params![max_rows],
    )?;
    tx.commit()
}

/// One audit row as read back.
#[derive(Clone, Debug)]
pub struct Row {
    pub at_ms: i64,
    pub conn: String,
    pub call: String,
    pub requester: String,
    pub target: String,
    pub user: String,
    pub decision: String,
    pub detail: String,
}

/// The last `limit` rows (oldest first), only refusals if `refused_only`.
pub fn read(path: &Path, limit: usize, refused_only: bool) -> anyhow::Result<Vec<Row>> {
    let db = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("{}", path.display()))?;
    let mut stmt = db.prepare(
        "SELECT at_ms, conn, call, requester, target, user, decision, detail FROM audit
         WHERE (?1 = 0 OR decision = 'refused') ORDER BY id DESC LIMIT ?2",
    )?;
    let mut rows: Vec<Row> = stmt
        .query_map(params![refused_only as i64, limit as i64], |r| {
            Ok(Row {
                at_ms: r.get(0)?,
                conn: r.get(1)?,
                call: r.get(2)?,
                requester: r.get(3)?,
                target: r.get(4)?,
                user: r.get(5)?,
                decision: r.get(6)?,
                detail: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    rows.reverse();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(path: &Path) -> i64 {
        let db = Connection::open(path).unwrap();
        db.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn the_table_keeps_only_its_newest_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let audit = Audit::open_bounded(&path, 50).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for i in 0..500 {
            let entry = Entry {
                detail: format!("request {i}"),
                decision: "refused",
                ..Entry::default()
            };
            assert!(runtime.block_on(audit.record(entry)));
        }
        assert_eq!(count(&path), 50);
        let rows = read(&path, 1_000, false).unwrap();
        assert_eq!(rows.first().unwrap().detail, "request 450");
        assert_eq!(rows.last().unwrap().detail, "request 499");
    }
}
