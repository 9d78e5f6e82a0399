//! Probe, deploy and restart a machine: the same steps for every kind of machine, as shell
//! scripts run through a [`Remote`] session.

use std::time::Duration;

use rand::RngExt;
use smon_core::{OtherInstall, Probe};
use smon_proto::{ClusterConfig, InstallSeed, MachineId, Reason, Version};

use crate::{Error, Login, Session, error::io_err, installed_cluster::InstalledCluster, layout};

const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// A deployer's claim on a machine is honoured while the claim, or a file of its upload, is
/// younger than this: a live deployment writes all the time (the upload, then gzip -d), and
/// the installer's longest quiet step, the start of the peer, waits at most 10 s. A deployer
/// that died blocks the machine this long after its last write, no longer.
const CLAIM_LIVE_SECS: u32 = 30;

/// Shell (with `R` set to the machine's root): sets `live=1` when a deployer's claim on the
/// machine is alive: the claim, or a file of an upload, is younger than [`CLAIM_LIVE_SECS`].
fn live_claim() -> String {
    format!(
        r#"live=0; now=$(date +%s)
for f in "$R"/incoming/claim-* "$R"/incoming/*/*; do
  m=$(stat -c %Y "$f" 2>/dev/null) || continue
  if [ $((now - m)) -lt {CLAIM_LIVE_SECS} ]; then live=1; break; fi
done"#
    )
}

/// Shell (with `R` set): sets `r=1` when a process holds the flock on `$R/peer.lock`, as the
/// running peer does for its whole life (`/proc/locks`, confirmed by the holder's open
/// descriptor; as [`smon_proto::lock_holder`] does). Not `peer.pid`: once the peer died, the
/// kernel may give its pid to another process, even another machine's peer.
const RUNNING: &str = r#"r=0
if i=$(stat -c %i "$R/peer.lock" 2>/dev/null) && l=$(readlink -f "$R/peer.lock"); then
  for p in $(awk -v s=":$i" '$2 == "FLOCK" && substr($6, length($6) - length(s) + 1) == s { print $5 }' /proc/locks); do
    for f in /proc/"$p"/fd/*; do if [ "$(readlink "$f")" = "$l" ]; then r=1; fi; done
    if [ "$r" = 1 ]; then echo "pid=$p"; break; fi
  done
fi"#;

/// Log in and look: is a peer installed, running, being installed, and is its install this
/// cluster's (the `cluster` file, [`InstalledCluster`])? Also counts the login.
pub async fn probe(login: &Login, machine: &MachineId) -> Result<Probe, Error> {
    let mut session = login.open(machine).await?;
    probe_in(&mut session, login.config(), true).await
}

/// [`probe`] over an open session, judging the install against `config`'s cluster; the
/// login is counted (`logins`) when `count`.
async fn probe_in(
    session: &mut Session,
    config: &ClusterConfig,
    count: bool,
) -> Result<Probe, Error> {
    let script = format!(
        r#"R={root}
mkdir -p "$R/incoming" || exit 3
{count}
echo "root=$R"
v=none
if [ -x "$R/current/smon-peer" ]; then v=$(readlink "$R/current"); v=${{v##*/}}; fi
echo "installed=$v"
if [ -f "$R/cluster" ]; then sed 's/^/cluster_/' "$R/cluster"; fi
{running}
echo "running=$r"
{live}
echo "installing=$live"
"#,
        root = session.root(),
        count = if count {
            r#"printf x >> "$R/logins""#
        } else {
            ""
        },
        running = RUNNING,
        live = live_claim(),
    );
    let out = session.exec(&script, STEP_TIMEOUT).await?;
    let (mut probe, found) = parse_probe(&out)?;
    probe.key_epoch = found.cluster.as_ref().and_then(|c| c.key_epoch);
    // Another cluster's install, running or not: said, and never acted on as ours.
    if let Some(cluster) = found.cluster
        && (probe.installed.is_some() || probe.running)
        && !cluster.is_ours(config)
    {
        let pid = probe.pid.filter(|_| probe.running).map(i64::from);
        probe.other_cluster = Some(OtherInstall {
            brief: Reason::new(&cluster.brief(pid)),
            message: cluster.describe(&found.root, pid),
        });
    }
    Ok(probe)
}

/// What the probe's output says besides the [`Probe`] itself.
#[derive(Default)]
struct Found {
    /// The machine's smon directory, expanded.
    root: String,
    /// The `cluster` file, when there is one.
    cluster: Option<InstalledCluster>,
}

fn parse_probe(out: &str) -> Result<(Probe, Found), Error> {
    let mut probe = Probe::default();
    let mut found = Found::default();
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
            "pid" => probe.pid = value.parse().ok(),
            "root" => found.root = value.to_owned(),
            _ => {
                if let Some(key) = key.strip_prefix("cluster_") {
                    found
                        .cluster
                        .get_or_insert_with(InstalledCluster::default)
                        .take_line(key, value);
                }
            }
        }
    }
    if seen != 3 {
        return Err(Error::ProbeOutput(out.to_owned()));
    }
    Ok((probe, found))
}

/// Refuse to act on `machine`'s install when the probe finds another cluster's there.
async fn ensure_ours(session: &mut Session, config: &ClusterConfig) -> Result<(), Error> {
    match probe_in(session, config, false).await?.other_cluster {
        Some(found) => Err(Error::OtherCluster(found.message)),
        None => Ok(()),
    }
}

/// What a deployment may find on the machine when it claims it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The probe found no peer installed: deploy only while that still holds. Between the
    /// probe and the claim (a round trip through the deployer, seconds under load) another
    /// deployer may have installed one; its work is then not repeated.
    Empty,
    /// Install whatever is there (the operator's `deploy`; the installer is idempotent).
    Anything,
}

/// How a deployment ended, short of an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deployed {
    /// The package was copied and the installer ran: its one-line report.
    Installed(String),
    /// Another deployer got there first (its claim is alive, or with [`Expect::Empty`] a peer
    /// is installed since the probe): nothing was copied. Why, in words.
    Overtaken(String),
}

/// Shell (with `R` set): claim the machine for the upload directory `dir` and claim file
/// `claim`, or print `overtaken=WHY` and stop (exit 0) when another deployer got there first.
/// Checking and claiming happen under a mutex (an atomic `mkdir`; one left by a deployer that
/// died within those few milliseconds is broken after 10 s), so that of two deployers
/// claiming at once exactly one goes on.
fn claim_script(expect: Expect, dir: &str, claim: &str) -> String {
    let installed = match expect {
        Expect::Empty => {
            r#"if [ -x "$R/current/smon-peer" ]; then why="a peer was installed here since the probe"; fi"#
        }
        Expect::Anything => "",
    };
    format!(
        r#"M="$R/incoming/.claiming"; mkdir -p "$R/incoming" || exit 3; i=0
until mkdir "$M" 2>/dev/null; do
  m=$(stat -c %Y "$M" 2>/dev/null) && [ $(($(date +%s) - m)) -ge 10 ] && rmdir "$M" 2>/dev/null
  i=$((i+1)); if [ $i -ge 200 ]; then echo "$M stays taken" >&2; exit 3; fi; sleep 0.05
done
why=
{live}
if [ "$live" = 1 ]; then why="another deployer is installing here"; fi
{installed}
if [ -z "$why" ]; then mkdir -p "$R/{dir}" && : > "$R/incoming/{claim}" || {{ rmdir "$M"; exit 3; }}; fi
rmdir "$M"
if [ -n "$why" ]; then echo "overtaken=$why"; fi"#,
        live = live_claim(),
    )
}

/// Copy the package and the seed into a directory of their own and start the installer,
/// unless another deployer got there first (see [`Expect`], [`Deployed::Overtaken`]).
pub async fn deploy(
    login: &Login,
    machine: &MachineId,
    package: &std::path::Path,
    seed: &InstallSeed,
    expect: Expect,
) -> Result<Deployed, Error> {
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
    let claim = format!("claim-{nonce:016x}");
    // Claim first: a later deployer's probe sees the claim and does not copy a second package.
    let script = format!(
        "R={root}\n{body}",
        root = session.root(),
        body = claim_script(expect, &dir, &claim)
    );
    let said = session.exec(&script, STEP_TIMEOUT).await?;
    if let Some(why) = said.lines().find_map(|l| l.strip_prefix("overtaken=")) {
        return Ok(Deployed::Overtaken(format!("{why}; nothing copied")));
    }
    let result = copy_and_install(&mut session, &dir, package, seed).await;
    if result.is_err() {
        // Release the claim at once: nobody need wait out an attempt that failed.
        let release = format!(
            r#"R={root}; rm -rf "$R/{dir}" "$R/incoming/{claim}""#,
            root = session.root()
        );
        let _ = session.exec(&release, STEP_TIMEOUT).await;
    }
    result.map(Deployed::Installed)
}

/// Copy the package and the seed into the claimed directory `dir` and run the installer.
///
/// Over the network the package travels gzip-compressed (about 40% of its size; every Linux
/// has gzip). A local machine shares this host's disks: there, decompressing would be half of
/// an install's CPU and save no bytes (BENCHMARKS.md, issue 17), so it gets the file as is.
async fn copy_and_install(
    session: &mut Session,
    dir: &str,
    package: &std::path::Path,
    seed: &InstallSeed,
) -> Result<String, Error> {
    let gzip = !session.is_local();
    if gzip {
        let compressed = compressed_package(package).await?;
        session
            .upload_file(&format!("{dir}/package.gz"), &compressed, 0o644)
            .await?;
    } else {
        session
            .upload_file(&format!("{dir}/package"), package, 0o755)
            .await?;
    }
    session
        .upload(&format!("{dir}/seed.json"), &seed.to_json(), 0o600)
        .await?;
    run_installer(session, dir, gzip).await
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

/// Run the installer of the package uploaded to `dir` (gunzipped first if it came as `package.gz`).
async fn run_installer(session: &mut Session, dir: &str, gzip: bool) -> Result<String, Error> {
    let unpack = if gzip {
        format!(
            r#"gzip -dc "$R/{dir}/package.gz" > "$R/{dir}/package" && rm -f "$R/{dir}/package.gz" && chmod 755 "$R/{dir}/package" && "#
        )
    } else {
        String::new()
    };
    let script = format!(
        r#"R={root}; {unpack}"$R/{dir}/package" install --root "$R" --incoming "$R/{dir}""#,
        root = session.root()
    );
    session.exec(&script, STEP_TIMEOUT).await
}

/// Start the installed peer; if the current version cannot start, roll back to the previous,
/// telling it how the current one's start ended (its exit code, see
/// [`layout::ROLLBACK_EXIT_ENV`]).
///
/// Errors with [`Error::OtherCluster`], starting nothing, when the install there is another
/// cluster's (issue 15, kind 11).
pub async fn restart(login: &Login, machine: &MachineId) -> Result<String, Error> {
    let mut session = login.open(machine).await?;
    ensure_ours(&mut session, login.config()).await?;
    let script = format!(
        r#"R={root}
"$R/current/smon-peer" start --root "$R" && exit 0
rc=$?
if [ -x "$R/previous/smon-peer" ]; then {env}=$rc exec "$R/previous/smon-peer" start --root "$R" --rollback; fi
exit 1
"#,
        root = session.root(),
        env = layout::ROLLBACK_EXIT_ENV,
    );
    session.exec(&script, STEP_TIMEOUT).await
}

/// Kill (SIGKILL) the peer process `pid` of `machine`, found as [`probe`] finds it: only
/// while `pid` still holds the machine's peer lock, so that a peer restarted since (another
/// pid), or a process that got the pid since, is never touched. Waits up to 5 s for it to be gone.
/// Returns what it did, in words; errors when the process is still there, and with
/// [`Error::OtherCluster`], killing nothing, when the install there is another cluster's.
pub async fn kill_peer(login: &Login, machine: &MachineId, pid: u32) -> Result<String, Error> {
    let mut session = login.open(machine).await?;
    ensure_ours(&mut session, login.config()).await?;
    let script = format!(
        r#"R={root}; want={pid}
{running}
if [ "$r" != 1 ] || [ "$p" != "$want" ]; then echo "no peer process $want any more"; exit 0; fi
alive() {{ grep -q smon-peer "/proc/$p/cmdline" 2>/dev/null; }}
kill -KILL "$p" || exit 1
i=0; while alive && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
if alive; then echo "peer process $p still there after SIGKILL" >&2; exit 1; fi
echo "killed peer process $p"
"#,
        root = session.root(),
        running = RUNNING,
    );
    session.exec(&script, STEP_TIMEOUT).await
}

/// End every application process of `machine` by its `SMON_APP_DIR` marker (under the
/// machine's `apps/`): SIGTERM, then SIGKILL to what is left after [`END_APPS_GRACE_S`]. For a
/// machine whose peer was killed because it did not answer: nobody else would stop its
/// applications (issue 15, kind 11: `shutdown` stops them). Their `stop` commands are not
/// run (that needs the peer). Returns what it did, in words; errors when processes are still
/// there after SIGKILL, and with [`Error::OtherCluster`], touching nothing, when the install
/// is another cluster's.
pub async fn end_apps(login: &Login, machine: &MachineId) -> Result<String, Error> {
    let mut session = login.open(machine).await?;
    ensure_ours(&mut session, login.config()).await?;
    let script = format!(
        r#"R={root}
pids() {{ grep -laF -- "SMON_APP_DIR=$R/apps/" /proc/[0-9]*/environ 2>/dev/null | sed -n 's#^/proc/\([0-9]*\)/environ$#\1#p' | grep -vx "$$"; }}
all=$(pids); n=$(echo "$all" | grep -c .)
if [ "$n" -eq 0 ]; then echo "no application processes"; exit 0; fi
kill -TERM $all 2>/dev/null
i=0; while [ -n "$(pids)" ] && [ $i -lt {tenths} ]; do sleep 0.1; i=$((i+1)); done
left=$(pids); if [ -n "$left" ]; then kill -KILL $left 2>/dev/null; fi
i=0; while [ -n "$(pids)" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
left=$(pids); if [ -n "$left" ]; then echo "application processes still there after SIGKILL:" $left >&2; exit 1; fi
echo "ended $n application processes"
"#,
        root = session.root(),
        tenths = END_APPS_GRACE_S * 10,
    );
    session.exec(&script, STEP_TIMEOUT).await
}

/// Seconds [`end_apps`] waits after SIGTERM (an application's default `stop_timeout`).
pub const END_APPS_GRACE_S: u32 = 10;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn parses_probe_output() {
        let (p, _) = parse_probe("installed=1.2.0\npid=4242\nrunning=1\ninstalling=0\n").unwrap();
        assert_eq!(p.installed, Some(Version::new(1, 2, 0)));
        assert_eq!(p.pid, Some(4242));
        assert!(p.running && !p.install_in_progress);
        let (p, _) = parse_probe("installed=none\nrunning=0\ninstalling=1\n").unwrap();
        assert!(p.installed.is_none() && p.install_in_progress);
        assert!(parse_probe("garbage").is_err());
    }

    /// A cluster's settings for tests, its local machines under `dir`.
    pub(crate) fn config(dir: &std::path::Path) -> smon_proto::ClusterConfig {
        smon_proto::ClusterConfig {
            port: 1,
            local_salt: 1,
            local_root: dir.to_owned(),
            interval_ms: 1_000,
            ping_timeout_ms: 1_000,
            release_key: String::new(),
            agent: None,
            removed_exit_after_ms: 60_000,
            disabled_exit_after_ms: None,
            rejoin_within_ms: 60_000,
            ssh_trust_on_first_use: false,
            metrics: None,
            take_over: false,
            unresponsive_grace_ms: None,
        }
    }

    fn local_machine(dir: &std::path::Path) -> (Login, MachineId) {
        let config = config(dir);
        let ssh = crate::SshContext {
            key: smon_proto::KeyringHandle::new(smon_proto::ClusterKey::from_bytes([7; 32]).into()),
            requester: MachineId::local("m0"),
            known_hosts: dir.join("known_hosts"),
        };
        (Login::new(config, ssh), MachineId::local("m1"))
    }

    fn age(path: &std::path::Path, secs: u64) {
        let then = std::time::SystemTime::now() - Duration::from_secs(secs);
        std::fs::File::options()
            .append(true)
            .open(path)
            .unwrap()
            .set_modified(then)
            .unwrap();
    }

    #[tokio::test]
    async fn a_claim_blocks_only_while_its_deployment_shows_life() {
        let tmp = tempfile::tempdir().unwrap();
        let (login, machine) = local_machine(tmp.path());
        let incoming = tmp.path().join("m1/incoming");
        std::fs::create_dir_all(incoming.join("peer-1")).unwrap();
        let installing = || async { probe(&login, &machine).await.unwrap().install_in_progress };
        assert!(!installing().await, "no claim");
        let claim = incoming.join("claim-1");
        std::fs::write(&claim, b"").unwrap();
        assert!(installing().await, "a fresh claim");
        // The deployer died long ago: its claim no longer blocks the machine.
        age(&claim, u64::from(CLAIM_LIVE_SECS) + 10);
        assert!(!installing().await, "a stale claim");
        // An old claim whose upload is still being written is alive.
        std::fs::write(incoming.join("peer-1/package.gz"), b"partial").unwrap();
        assert!(installing().await, "an upload in progress");
        age(
            &incoming.join("peer-1/package.gz"),
            u64::from(CLAIM_LIVE_SECS) + 10,
        );
        assert!(!installing().await, "an upload abandoned");
    }

    #[tokio::test]
    async fn a_failed_deployment_releases_its_claim() {
        let tmp = tempfile::tempdir().unwrap();
        let (login, machine) = local_machine(tmp.path());
        let seed = InstallSeed {
            me: machine.clone(),
            deployer: "local:m0".into(),
            config: login.config().clone(),
            cluster_key: vec![7; 32],
            membership: Vec::new(),
            spread_origin: None,
        };
        let missing = tmp.path().join("no-such-package");
        let err = deploy(&login, &machine, &missing, &seed, Expect::Empty)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no-such-package"), "{err}");
        let left: Vec<_> = std::fs::read_dir(tmp.path().join("m1/incoming"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        assert!(!probe(&login, &machine).await.unwrap().install_in_progress);

        // Somebody else claimed the machine since the probe: no second copy, their claim stays.
        let theirs = tmp.path().join("m1/incoming/claim-theirs");
        std::fs::write(&theirs, b"").unwrap();
        let got = deploy(&login, &machine, &missing, &seed, Expect::Anything).await;
        match got {
            Ok(Deployed::Overtaken(why)) => assert!(why.contains("another deployer"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(theirs.exists());
    }

    fn seed_for(login: &Login, machine: &MachineId) -> InstallSeed {
        InstallSeed {
            me: machine.clone(),
            deployer: "local:m0".into(),
            config: login.config().clone(),
            cluster_key: vec![7; 32],
            membership: Vec::new(),
            spread_origin: None,
        }
    }

    #[tokio::test]
    async fn a_peer_installed_since_the_probe_is_not_deployed_again() {
        // Field case (demo under load): the probe found the machine empty; before this
        // deployer claimed it, another one installed a peer and released its claim. The
        // second copy used to run the installer again (two arrivals for one machine).
        let tmp = tempfile::tempdir().unwrap();
        let (login, machine) = local_machine(tmp.path());
        assert!(probe(&login, &machine).await.unwrap().installed.is_none());
        let current = tmp.path().join("m1/current");
        std::fs::create_dir_all(&current).unwrap();
        let peer = current.join("smon-peer");
        std::fs::write(&peer, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&peer, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let seed = seed_for(&login, &machine);
        let missing = tmp.path().join("no-such-package");
        match deploy(&login, &machine, &missing, &seed, Expect::Empty).await {
            Ok(Deployed::Overtaken(why)) => assert!(why.contains("since the probe"), "{why}"),
            other => panic!("{other:?}"),
        }
        let incoming: Vec<_> = std::fs::read_dir(tmp.path().join("m1/incoming"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(incoming.is_empty(), "claimed anyway: {incoming:?}");
        // The operator's deploy installs whatever is there: it goes on (and here fails on
        // the missing package, which shows that it tried).
        let err = deploy(&login, &machine, &missing, &seed, Expect::Anything)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no-such-package"), "{err}");
    }

    #[tokio::test]
    async fn of_deployers_claiming_at_once_exactly_one_goes_on() {
        let tmp = tempfile::tempdir().unwrap();
        let (login, machine) = local_machine(tmp.path());
        let claims = (0..8).map(|i| {
            let (login, machine) = (login.clone(), machine.clone());
            tokio::spawn(async move {
                let mut session = login.open(&machine).await.unwrap();
                let body = claim_script(
                    Expect::Empty,
                    &format!("incoming/d{i}"),
                    &format!("claim-{i}"),
                );
                let script = format!("R={}\n{body}", session.root());
                session.exec(&script, STEP_TIMEOUT).await.unwrap()
            })
        });
        let mut went_on = 0;
        for claim in claims.collect::<Vec<_>>() {
            let said = claim.await.unwrap();
            if !said.contains("overtaken=") {
                went_on += 1;
            }
        }
        assert_eq!(went_on, 1);
        let left: Vec<_> = std::fs::read_dir(tmp.path().join("m1/incoming"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("claim-"))
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(!tmp.path().join("m1/incoming/.claiming").exists());
    }
}
