//! A log file with a bound: [`RotatingLog`] writes a file and rotates it by a
//! [`crate::LogBound`], so that it and its backups never take more than the bound's total.
//! Used for every log smon writes on a machine: an application's `app.log` (written by the
//! peer's log writer from the application's pipe) and the peer's own `peer.log`.
//!
//! Only writers of this kind rename a log, and each reopens its path when the file there is
//! no longer the one it holds (removed by hand, or rotated by another writer, such as a short
//! `smon-peer install` next to the running peer): a removed log never goes on growing unseen,
//! and no process is left writing a renamed file.

use std::{
    fs::{self, File},
    io::{self, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use crate::LogBound;

/// The name of the `n`th backup of `log` (`app.log.1` is the newest backup).
pub fn backup_path(log: &Path, n: u32) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// A log and its backups, newest first: `log`, `log.1`, … `log.{backups}` (whether they
/// exist or not): what a reader of the whole log opens, in order.
pub fn log_files(log: &Path, bound: LogBound) -> Vec<PathBuf> {
    std::iter::once(log.to_owned())
        .chain((1..=bound.backups).map(|n| backup_path(log, n)))
        .collect()
}

/// An append-only log file rotated at `bound.max_bytes`.
pub struct RotatingLog {
    path: PathBuf,
    bound: LogBound,
    file: Option<File>,
}

impl RotatingLog {
    /// Open (create) `path` for appending. Errors: the file cannot be created.
    pub fn open(path: &Path, bound: LogBound) -> io::Result<Self> {
        let mut log = Self {
            path: path.to_owned(),
            bound,
            file: None,
        };
        log.reopen()?;
        Ok(log)
    }

    /// The live file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn reopen(&mut self) -> io::Result<&mut File> {
        self.file = None;
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        Ok(self.file.insert(file))
    }

    /// Whether the path still names the file held open.
    fn holds_path(&self) -> bool {
        match (&self.file, fs::metadata(&self.path)) {
            (Some(file), Ok(at_path)) => file
                .metadata()
                .is_ok_and(|held| held.ino() == at_path.ino() && held.dev() == at_path.dev()),
            _ => false,
        }
    }

    /// The open file, reopened first if the path no longer names it.
    fn current(&mut self) -> io::Result<&mut File> {
        if self.holds_path() {
            Ok(self.file.as_mut().expect("checked above"))
        } else {
            self.reopen()
        }
    }

    /// Shift the backups by one (the oldest is dropped), make the live file the first backup
    /// and open a new live file. With no backups, the live file is cut to nothing. The live
    /// file stays open (and so locked, under [`RotatingLog::append`]) until it is renamed:
    /// another writer cannot rotate it a second time meanwhile.
    fn rotate(&mut self) -> io::Result<()> {
        if self.bound.backups == 0 {
            return match &self.file {
                Some(file) => file.set_len(0),
                None => fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&self.path)
                    .map(drop),
            };
        }
        for n in (1..self.bound.backups).rev() {
            let _ = fs::rename(backup_path(&self.path, n), backup_path(&self.path, n + 1));
        }
        fs::rename(&self.path, backup_path(&self.path, 1))?;
        self.reopen().map(drop)
    }

    /// Append `data`, rotating first if it would take the live file past the bound. A chunk
    /// larger than the bound is written in parts. Each part is checked and written under the
    /// live file's lock (`flock`), so that writers in several processes (a short `smon-peer
    /// install` beside the running peer) never both take the last room of the file.
    pub fn append(&mut self, mut data: &[u8]) -> io::Result<()> {
        let max = self.bound.max_bytes.max(1);
        while !data.is_empty() {
            self.current()?.lock()?;
            let step = self.append_locked(&mut data, max);
            // After a rotation the locked file is closed already, which released its lock.
            if let Some(file) = &self.file {
                let _ = file.unlock();
            }
            step?;
        }
        Ok(())
    }

    /// One step of [`RotatingLog::append`], with the live file locked: take the file another
    /// writer rotated in meanwhile, or rotate, or write what fits.
    fn append_locked(&mut self, data: &mut &[u8], max: u64) -> io::Result<()> {
        if !self.holds_path() {
            self.reopen()?;
            return Ok(());
        }
        let file = self.file.as_mut().expect("held");
        // The file's real size, not a count of our own writes: another writer may append.
        let len = file.metadata()?.len();
        if len >= max || (len > 0 && len + data.len() as u64 > max) {
            return self.rotate();
        }
        let room = (max - len).min(data.len() as u64) as usize;
        file.write_all(&data[..room])?;
        *data = &data[room..];
        Ok(())
    }
}

/// Copy a pipe to the log until every writer closed it: how a process that owns the pipe
/// of others' output bounds it (an application's, by the peer; the agent's own). A failed
/// write (a full disk, the directory gone) drops that chunk and retries with the next: the
/// writers must never block on their output.
pub fn copy_to_log(mut reader: impl io::Read, log: &Path, bound: LogBound) {
    let mut out = RotatingLog::open(log, bound).ok();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if out.is_none() {
            out = RotatingLog::open(log, bound).ok();
        }
        if let Some(o) = &mut out
            && o.append(&buf[..n]).is_err()
        {
            out = None;
        }
    }
}

impl Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.append(buf).map(|()| buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(max_bytes: u64, backups: u32) -> LogBound {
        LogBound { max_bytes, backups }
    }

    fn sizes(log: &Path, b: LogBound) -> Vec<u64> {
        log_files(log, b)
            .iter()
            .map(|p| fs::metadata(p).map_or(0, |m| m.len()))
            .collect()
    }

    #[test]
    fn rotates_at_the_bound_and_keeps_n_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let b = bound(1000, 2);
        let mut log = RotatingLog::open(&path, b).unwrap();
        for i in 0..100 {
            log.append(format!("line {i:03} ............................\n").as_bytes())
                .unwrap();
        }
        let s = sizes(&path, b);
        assert!(s.iter().all(|&n| n <= 1000), "{s:?}");
        assert!(s[1] > 900 && s[2] > 900, "{s:?}");
        assert!(!backup_path(&path, 3).exists());
        // Newest last line in the live file, older ones in the backups, in order.
        let live = fs::read_to_string(&path).unwrap();
        assert!(live.ends_with("line 099 ............................\n"));
        let first = fs::read_to_string(backup_path(&path, 1)).unwrap();
        let second = fs::read_to_string(backup_path(&path, 2)).unwrap();
        assert!(
            second.lines().last() < first.lines().next(),
            "backups out of order"
        );
        // A chunk bigger than the bound is split, not written whole.
        log.append(&[b'x'; 2500]).unwrap();
        assert!(sizes(&path, b).iter().all(|&n| n <= 1000));
    }

    #[test]
    fn without_backups_the_file_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer.log");
        let mut log = RotatingLog::open(&path, bound(100, 0)).unwrap();
        for _ in 0..50 {
            log.append(b"0123456789\n").unwrap();
        }
        assert!(fs::metadata(&path).unwrap().len() <= 100);
        assert!(!backup_path(&path, 1).exists());
    }

    #[test]
    fn a_removed_or_renamed_log_is_opened_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut log = RotatingLog::open(&path, bound(1 << 20, 1)).unwrap();
        log.append(b"before\n").unwrap();
        fs::remove_file(&path).unwrap();
        log.append(b"after rm\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "after rm\n");
        fs::rename(&path, dir.path().join("moved")).unwrap();
        log.append(b"after mv\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "after mv\n");
        assert_eq!(
            fs::read_to_string(dir.path().join("moved")).unwrap(),
            "after rm\n"
        );
    }

    /// Writers at once, each with its own open file (as processes have): none ever takes a
    /// file past the bound (a size check and the write after it are one step under the lock).
    #[test]
    fn concurrent_writers_never_take_a_file_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer.log");
        let b = bound(4096, 2);
        let line = [b'x'; 999];
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    let mut log = RotatingLog::open(&path, b).unwrap();
                    for _ in 0..400 {
                        log.append(&line).unwrap();
                        let s = sizes(&path, b);
                        assert!(s.iter().all(|&n| n <= 4096), "{s:?}");
                    }
                });
            }
        });
    }

    #[test]
    fn two_writers_of_one_log_stay_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let b = bound(500, 2);
        let mut one = RotatingLog::open(&path, b).unwrap();
        let mut two = RotatingLog::open(&path, b).unwrap();
        for i in 0..200 {
            let w = if i % 3 == 0 { &mut two } else { &mut one };
            w.append(b"0123456789abcdef\n").unwrap();
        }
        assert!(
            sizes(&path, b).iter().all(|&n| n <= 500),
            "{:?}",
            sizes(&path, b)
        );
    }
}
