//! `smon-console init DIR --machines FILE`: a new cluster directory.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use rand::RngExt;
use smon_proto::{
    ClusterConfig, ClusterFiles, ClusterKey, Membership, OperatorKey, ReleasePrivateKey, Version,
    release,
};

use crate::{
    cluster_dir::{ClusterDir, write_atomic},
    cmd_agent::AgentKey,
    host_keys::{self, PinPolicy},
};

/// The settings `init` takes besides the machines.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub interval: Duration,
    pub disabled_exit_after: Option<Duration>,
    pub removed_exit_after: Option<Duration>,
    /// The agent's key, which is then the release key too (None: a release key of its own).
    pub agent_key: Option<AgentKey>,
    /// An OpenSSH known_hosts file with the SSH machines' host keys (copied to DIR/known_hosts).
    pub known_hosts: Option<PathBuf>,
    /// What to do about SSH machines it does not pin.
    pub pins: PinPolicy,
    /// `host:port` where peers reach the agent, which listens there (port 0: a free port,
    /// chosen when the agent starts). None: a free port on 127.0.0.1 (local machines only).
    pub agent_address: Option<String>,
    /// Peers serve `/metrics` there (None: they do not).
    pub metrics: Option<smon_proto::MetricsSetting>,
    /// Machines holding another cluster's install are taken over (`--take-over`).
    pub take_over: bool,
    /// A peer process that exists but does not answer pings is killed and restarted after
    /// this much silence (None: 12 rounds).
    pub unresponsive_grace: Option<Duration>,
}

impl InitOptions {
    pub fn with_interval(interval: Duration) -> Self {
        Self {
            interval,
            disabled_exit_after: None,
            removed_exit_after: None,
            agent_key: None,
            known_hosts: None,
            pins: PinPolicy::default(),
            agent_address: None,
            metrics: None,
            take_over: false,
            unresponsive_grace: None,
        }
    }
}

/// Make the cluster directory `dir`; what to tell the operator (where it is, what next).
pub async fn init(
    dir: &Path,
    machines_file: &Path,
    options: &InitOptions,
    peer_binary: &Path,
) -> anyhow::Result<String> {
    let (membership, text) = check_inputs(dir, machines_file, options)?;
    // The release key: the agent's (read now, so that a wrong key file fails here), or one of
    // the directory's own.
    let release_key = match &options.agent_key {
        Some(key) => ReleaseSigner::Agent(key.public_key().await?),
        None => ReleaseSigner::Own(Box::new(release::generate_release_key())),
    };
    let binary = std::fs::read(peer_binary).with_context(|| {
        format!(
            "the peer binary {} (pass --peer-binary)",
            peer_binary.display()
        )
    })?;

    // Build everything in a sibling directory, then rename: never a half-written cluster dir.
    let dir = std::path::absolute(dir)?;
    let staging = staging_dir(&dir)?;
    let machines = membership.len();
    let result = async {
        std::fs::create_dir_all(&staging)?;
        let known_hosts = ClusterFiles::new(&staging).known_hosts();
        if let Some(file) = &options.known_hosts {
            let text = host_keys::check_known_hosts(file)
                .with_context(|| format!("--known-hosts {}", file.display()))?;
            write_atomic(&known_hosts, text.as_bytes(), 0o644)?;
        }
        let how = "give their keys with --known-hosts FILE (ssh-keyscan output), allow \
                   --ssh-trust-on-first-use";
        let membership = host_keys::pin(&known_hosts, membership, options.pins, how).await?;
        build(
            &staging,
            &dir,
            &membership,
            &text,
            options,
            &release_key,
            &binary,
        )
    }
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    if dir.exists() {
        std::fs::remove_dir(&dir).with_context(|| format!("{}", dir.display()))?;
    }
    std::fs::rename(&staging, &dir).with_context(|| format!("{}", dir.display()))?;
    let next = if options.agent_key.is_some() {
        "agent start, then deploy"
    } else {
        "deploy"
    };
    Ok(format!(
        "initialised {} with {machines} machines; next: smon-console -C {} {next}",
        dir.display(),
        dir.display()
    ))
}

/// The operator's inputs, checked before anything is written: the membership list and the
/// machines file's text.
fn check_inputs(
    dir: &Path,
    machines_file: &Path,
    options: &InitOptions,
) -> anyhow::Result<(Membership, String)> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!("{}: already exists and is not empty", dir.display());
    }
    let text = smon_proto::read_text(machines_file)?;
    let membership = Membership::parse(&machines_file.display().to_string(), &text, 1)?;
    if membership.is_empty() {
        bail!("{}: no machines listed", machines_file.display());
    }
    if let Some(addr) = &options.agent_address {
        crate::cmd_agent::check_address(addr).context("--agent")?;
    }
    if let Some(grace) = options.unresponsive_grace
        && grace < options.interval
    {
        bail!(
            "--unresponsive-grace {}: at least one round (--interval {})",
            humantime::format_duration(grace),
            humantime::format_duration(options.interval)
        );
    }
    if options.interval < Duration::from_millis(200) {
        bail!(
            "--interval {}: at least 200ms",
            humantime::format_duration(options.interval)
        );
    }
    Ok((membership, text))
}

/// A sibling of `dir` (absolute) to build the cluster directory in, its parent created.
fn staging_dir(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let parent = dir
        .parent()
        .context("the cluster directory needs a parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("{}", parent.display()))?;
    Ok(parent.join(format!(
        ".{}.init-{}",
        dir.file_name()
            .context("bad directory name")?
            .to_string_lossy(),
        std::process::id()
    )))
}

/// Who signs releases.
enum ReleaseSigner {
    /// The agent; its public key.
    Agent(String),
    /// A key kept in the cluster directory (release.key).
    Own(Box<ReleasePrivateKey>),
}

fn build(
    staging: &Path,
    final_dir: &Path,
    membership: &Membership,
    text: &str,
    options: &InitOptions,
    signer: &ReleaseSigner,
    binary: &[u8],
) -> anyhow::Result<()> {
    let files = ClusterFiles::new(staging);
    std::fs::create_dir_all(staging)?;
    ClusterKey::create(&files.cluster_key())?;
    OperatorKey::create(&files.operator_key())?;
    let public = write_release_key(&files, staging, options, signer)?;
    let config = cluster_config(final_dir, membership, options, public)?;
    config.save(staging)?;
    write_atomic(&files.machines(), text.as_bytes(), 0o644)?;
    // A list (and its pins) is believed only under the release key's signature: signed now
    // with the directory's key; with the agent's, when `deploy` first needs it.
    let mut membership = membership.clone();
    if let ReleaseSigner::Own(key) = signer {
        let signature = release::sign_bytes(
            smon_proto::MEMBERSHIP_NAMESPACE,
            &membership.signing_bytes(),
            key,
        )?;
        membership.set_signature(signature);
    }
    write_atomic(&files.membership_blob(), &membership.encode(), 0o644)?;

    // Signed now with the directory's key; with the agent's, the first time it is needed
    // (`deploy`), through the running agent.
    let mut manifest =
        release::package_manifest(binary, env!("CARGO_PKG_VERSION").parse::<Version>()?);
    if let ReleaseSigner::Own(key) = signer {
        release::sign_manifest(&mut manifest, key)?;
    }
    write_atomic(
        &files.package(),
        &release::encode_package(binary, &manifest),
        0o755,
    )?;

    let staged_config = ClusterConfig {
        local_root: files.local_root(),
        ..config
    };
    ClusterDir::make_local_dirs(&staged_config, &membership)
}

/// The release key's public half, written to release.pub (and the private half to
/// release.key, or the agent's key reference, as the signer is); the public key.
fn write_release_key(
    files: &ClusterFiles,
    staging: &Path,
    options: &InitOptions,
    signer: &ReleaseSigner,
) -> anyhow::Result<String> {
    let public = match signer {
        ReleaseSigner::Agent(public) => {
            options
                .agent_key
                .as_ref()
                .expect("an agent signer has a key")
                .save(staging)?;
            public.clone()
        }
        ReleaseSigner::Own(key) => {
            let pem = key.to_openssh(smon_proto::release::LineEnding::LF)?;
            write_atomic(&files.release_key(), pem.as_bytes(), 0o600)?;
            key.public_key().to_openssh()?
        }
    };
    write_atomic(
        &files.release_pub(),
        format!("{public}\n").as_bytes(),
        0o644,
    )?;
    Ok(public)
}

/// The cluster's settings: timing from `options`, a salt and a port of its own.
fn cluster_config(
    final_dir: &Path,
    membership: &Membership,
    options: &InitOptions,
    release_key: String,
) -> anyhow::Result<ClusterConfig> {
    let interval_ms = options.interval.as_millis() as u64;
    let mut rng = rand::rng();
    let mut config = ClusterConfig {
        port: 0,
        local_salt: rng.random(),
        local_root: ClusterFiles::new(final_dir).local_root(),
        interval_ms,
        ping_timeout_ms: (interval_ms * 2 / 5).clamp(200, 2_000),
        release_key,
        agent: options.agent_address.clone(),
        removed_exit_after_ms: options
            .removed_exit_after
            .map_or(12 * interval_ms, |d| d.as_millis() as u64),
        disabled_exit_after_ms: options.disabled_exit_after.map(|d| d.as_millis() as u64),
        rejoin_within_ms: 20 * interval_ms,
        ssh_trust_on_first_use: options.pins.trust_on_first_use,
        metrics: options.metrics,
        take_over: options.take_over,
        unresponsive_grace_ms: options.unresponsive_grace.map(|d| d.as_millis() as u64),
    };
    if let Some((a, b)) = config.address_collision(membership.machines()) {
        bail!("local machines {a} and {b} would share a loopback address: rename one");
    }
    config.port = free_port(&config, membership)?;
    Ok(config)
}

/// A port free on the first local machines' addresses (random, so clusters do not collide).
fn free_port(config: &ClusterConfig, membership: &Membership) -> anyhow::Result<u16> {
    let mut rng = rand::rng();
    let probes: Vec<_> = membership
        .machines()
        .iter()
        .filter_map(|m| match m {
            smon_proto::MachineId::Local { name } => Some(config.local_address(name)),
            _ => None,
        })
        .take(8)
        .collect();
    for _ in 0..50 {
        let port = rng.random_range(20_000..60_000u16);
        if probes
            .iter()
            .all(|ip| TcpListener::bind((*ip, port)).is_ok())
        {
            return Ok(port);
        }
    }
    bail!("no free port found for the cluster")
}
