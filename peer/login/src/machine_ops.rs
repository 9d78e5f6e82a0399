//! Probe, deploy and restart a machine: the same steps for every kind of machine, as shell
//! scripts run through a [`Remote`] session.

use std::time::Duration;

use rand::RngExt;
use smon_core::Probe;
use smon_proto::{InstallSeed, MachineId, Version};

use crate::{Error, Login, Session, error::io_err};

const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// A deployer's claim on a machine is honoured this long (minutes, for `find -mmin`).
const CLAIM_MINUTES: u32 = 2;

/// Log in and look: is a peer installed, running, being installed? Also counts the login.
pub async fn probe(login: &Login, machine: &MachineId) -> Result<Probe, Error> {
    let mut session = login.open(machine).await?;
    let script = format!(
        r#"R={root}
mkdir -p "$R/incoming" || exit 3
printf x >> "$R/logins"
v=none
if [ -x "$R/current/smon-peer" ]; then v=$(readlink "$R/current"); v=${{v##*/}}; fi
echo "installed=$v"
r=0
if [ -f "$R/peer.pid" ]; then p=$(cat "$R/peer.pid"); if kill -0 "$p" 2>/dev/null && grep -q smon-peer "/proc/$p/cmdline" 2>/dev/null; then r=1; fi; fi
echo "running=$r"
i=0
if [ -n "$(find "$R/incoming" -maxdepth 1 -name 'claim-*' -mmin -{CLAIM_MINUTES} 2>/dev/null)" ]; then i=1; fi
echo "installing=$i"
"#,
        root = session.root()
    );
    let out = session.exec(&script, STEP_TIMEOUT).await?;
    parse_probe(&out)
}

fn parse_probe(out: &str) -> Result<Probe, Error> {
    let mut probe = Probe::default();
    let mut seen = 0;
    for line in out.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "installed" => {
                seen += 1;
                probe.installed = if value == "none" {
                    None
                } else {
                    value.parse::<Version>().ok()
                };
            }
            "running" => {
                seen += 1;
                probe.running = value == "1";
            }
            "installing" => {
                seen += 1;
                probe.install_in_progress = value == "1";
            }
            _ => {}
        }
    }
    if seen != 3 {
        return Err(Error::ProbeOutput(out.to_owned()));
    }
    Ok(probe)
}

/// Copy the package and the seed into a directory of their own and start the installer.
pub async fn deploy(
    login: &Login,
    machine: &MachineId,
    package: &std::path::Path,
    seed: &InstallSeed,
) -> Result<String, Error> {
    let mut session = login.open(machine).await?;
    let nonce: u64 = rand::rng().random();
    let deployer: String = seed
        .deployer
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = format!("incoming/{deployer}-{nonce:016x}");
    // Claim first: a later deployer's probe sees the claim and does not copy a second package.
    let claim = format!(
        r#"R={root}; mkdir -p "$R/{dir}" && : > "$R/incoming/claim-{nonce:016x}""#,
        root = session.root()
    );
    session.exec(&claim, STEP_TIMEOUT).await?;
    // The package travels gzip-compressed (about 40% of its size); every Linux has gzip.
    let compressed = compressed_package(package).await?;
    session
        .upload_file(&format!("{dir}/package.gz"), &compressed, 0o644)
        .await?;
    session
        .upload(&format!("{dir}/seed.json"), &seed.to_json(), 0o600)
        .await?;
    run_installer(&mut session, &dir).await
}

/// The gzip form of a package file, made once next to it (`<file>.gz`) and reused.
pub async fn compressed_package(package: &std::path::Path) -> Result<std::path::PathBuf, Error> {
    let gz = package.with_extension("gz");
    let fresh = match (
        tokio::fs::metadata(package).await,
        tokio::fs::metadata(&gz).await,
    ) {
        (Ok(p), Ok(g)) => g.modified().ok() >= p.modified().ok(),
        _ => false,
    };
    if fresh {
        return Ok(gz);
    }
    let (src, dest) = (package.to_owned(), gz.clone());
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let tmp = dest.with_extension(format!("gz.tmp-{}", std::process::id()));
        let mut input = std::io::BufReader::new(std::fs::File::open(&src)?);
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(&tmp)?,
            flate2::Compression::default(),
        );
        std::io::copy(&mut input, &mut encoder)?;
        encoder.finish()?.sync_all()?;
        std::fs::rename(&tmp, &dest)
    })
    .await
    .map_err(|e| io_err(package)(std::io::Error::other(e)))?
    .map_err(io_err(package))?;
    Ok(gz)
}

async fn run_installer(session: &mut Session, dir: &str) -> Result<String, Error> {
    let script = format!(
        r#"R={root}; gzip -dc "$R/{dir}/package.gz" > "$R/{dir}/package" && rm -f "$R/{dir}/package.gz" && chmod 755 "$R/{dir}/package" && "$R/{dir}/package" install --root "$R" --incoming "$R/{dir}""#,
        root = session.root()
    );
    session.exec(&script, STEP_TIMEOUT).await
}

/// Start the installed peer; if the current version cannot start, roll back to the previous.
pub async fn restart(login: &Login, machine: &MachineId) -> Result<String, Error> {
    let mut session = login.open(machine).await?;
    let script = format!(
        r#"R={root}
"$R/current/smon-peer" start --root "$R" && exit 0
if [ -x "$R/previous/smon-peer" ]; then exec "$R/previous/smon-peer" start --root "$R" --rollback; fi
exit 1
"#,
        root = session.root()
    );
    session.exec(&script, STEP_TIMEOUT).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_probe_output() {
        let p = parse_probe("installed=1.2.0\nrunning=1\ninstalling=0\n").unwrap();
        assert_eq!(p.installed, Some(Version::new(1, 2, 0)));
        assert!(p.running && !p.install_in_progress);
        let p = parse_probe("installed=none\nrunning=0\ninstalling=1\n").unwrap();
        assert!(p.installed.is_none() && p.install_in_progress);
        assert!(parse_probe("garbage").is_err());
    }
}
