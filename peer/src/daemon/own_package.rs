//! The package this peer runs, which it serves to peers that upgrade from it.

use smon_proto::PackageManifest;

/// This peer's own package, served to peers that upgrade from it. Read from disk when
/// needed rather than held in memory: an idle peer stays small.
pub struct OwnPackage {
    pub path: std::path::PathBuf,
    pub len: u64,
    pub manifest: PackageManifest,
}

impl OwnPackage {
    /// `len` bytes at `offset` of the package file. Errors: the file's (gone, shorter).
    pub fn read_at(&self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len as usize];
        std::fs::File::open(&self.path)?.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}
