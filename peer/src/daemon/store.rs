//! A peer's state on its machine: one SQLite file (WAL, synchronous=FULL), so that a kill -9
//! at any moment loses nothing that was committed.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Serialize, de::DeserializeOwned};

use super::DaemonError;

pub struct Store {
    conn: Connection,
}

pub mod keys {
    pub const ME: &str = "me";
    pub const CONFIG: &str = "config";
    pub const CLUSTER_KEY: &str = "cluster_key";
    /// The membership list, as its lz4 blob.
    pub const MEMBERSHIP: &str = "membership";
    pub const STATE: &str = "state";
    pub const FIRST_DEPLOYED: &str = "first_deployed_ms";
    pub const SPREAD_ORIGIN: &str = "spread_origin";
    /// A version on trial after a self-upgrade: (version, since ms).
    pub const TRIAL: &str = "trial";
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, DaemonError> {
        let err = |source| DaemonError::Store {
            what: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB NOT NULL)",
            [],
        )
        .map_err(err)?;
        Ok(Self { conn })
    }

    pub fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, DaemonError> {
        self.conn
            .query_row("SELECT v FROM kv WHERE k = ?1", params![key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|source| DaemonError::Store {
                what: format!("reading {key}"),
                source,
            })
    }

    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DaemonError> {
        match self.get_raw(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| DaemonError::decode(format!("state: {key} is corrupt"), e)),
        }
    }

    /// Write several values in one transaction: all or nothing.
    pub fn put_all(&mut self, entries: &[(&str, Vec<u8>)]) -> Result<(), DaemonError> {
        let err = |source| DaemonError::Store {
            what: "writing".into(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        for (key, value) in entries {
            tx.execute(
                "INSERT INTO kv (k, v) VALUES (?1, ?2) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                params![key, value],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    pub fn put<T: Serialize>(&mut self, key: &str, value: &T) -> Result<(), DaemonError> {
        self.put_all(&[(key, json(value))])
    }

    pub fn delete(&mut self, key: &str) -> Result<(), DaemonError> {
        self.conn
            .execute("DELETE FROM kv WHERE k = ?1", params![key])
            .map(|_| ())
            .map_err(|source| DaemonError::Store {
                what: format!("deleting {key}"),
                source,
            })
    }
}

pub fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("state serializes")
}
