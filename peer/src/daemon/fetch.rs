//! The chunked fetch client of the daemon: a release or an application package fetched from
//! another peer (the transfer itself is `smon_proto::chunked`), verified against the cluster's
//! release key, then stored or installed here.

use std::{path::PathBuf, time::Duration};

use smon_login::layout;
use smon_proto::{
    AppDecl, KeyringHandle, PeerServiceClient, ReleasePublicKey, Version, app_package,
    chunked::{self, Wanted},
    release, transport,
};

use super::{DaemonError, apps::install as app_install};

/// Each call of a fetch (and the connection) may take this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What a fetch task needs: the cluster key to connect, the release key to verify, the
/// machine's smon directory to store into.
#[derive(Clone)]
pub struct Fetcher {
    pub key: KeyringHandle,
    pub trusted: ReleasePublicKey,
    pub root: PathBuf,
}

impl Fetcher {
    async fn client(&self, addr: &str) -> Result<PeerServiceClient, DaemonError> {
        transport::peer_client(addr, &self.key, CALL_TIMEOUT)
            .await
            .map_err(DaemonError::Connect)
    }

    /// Fetch release `version` from the peer at `addr`, verify it and store it as
    /// `versions/<version>/` (not yet current). Errors change nothing: a package that does
    /// not verify, or is another version, is not stored.
    pub async fn release(
        &self,
        addr: &str,
        version: Version,
        session: u64,
    ) -> Result<(), DaemonError> {
        let client = self.client(addr).await?;
        let wanted = Wanted::Release(version);
        let package = chunked::fetch(&client, wanted, session, CALL_TIMEOUT).await?;
        let (_, manifest) = release::verify_package(&package, &self.trusted).map_err(|source| {
            DaemonError::Unverified {
                what: format!("release {version} from {addr}"),
                source,
            }
        })?;
        if manifest.version != version {
            return Err(DaemonError::WrongPackage {
                what: format!("release from {addr}"),
                why: format!("asked for {version}, got {}", manifest.version),
            });
        }
        Ok(layout::store_version(&self.root, version, &package)?)
    }

    /// Make sure application `app` is installed here: fetched from the peer at `addr`,
    /// verified and installed, unless it is already. Errors change nothing (an install is
    /// staged, then renamed into place).
    pub async fn app(&self, addr: &str, app: &AppDecl, session: u64) -> Result<(), DaemonError> {
        let (name, version) = (app.name.as_str(), app.version);
        if app_install::is_installed(&self.root, name, version) {
            return Ok(());
        }
        let client = self.client(addr).await?;
        let wanted = Wanted::App(name, version);
        let package = chunked::fetch(&client, wanted, session, CALL_TIMEOUT).await?;
        let verified =
            app_package::verify_app_package(&package, &self.trusted).map_err(|source| {
                DaemonError::Unverified {
                    what: format!("{name} {version} from {addr}"),
                    source,
                }
            })?;
        if verified.manifest.name != name || verified.manifest.version != version {
            return Err(DaemonError::WrongPackage {
                what: format!("application from {addr}"),
                why: format!(
                    "asked for {name} {version}, got {} {}",
                    verified.manifest.name, verified.manifest.version
                ),
            });
        }
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || app_install::install(&root, &verified, &package))
            .await
            .map_err(|e| layout::io_err(&self.root)(std::io::Error::other(e)))?
    }
}
