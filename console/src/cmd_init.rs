//! `smon-console init DIR --machines FILE`: a new cluster directory.

use std::{net::TcpListener, path::Path, time::Duration};

use anyhow::{Context, bail};
use rand::RngExt;
use smon_proto::{ClusterConfig, ClusterKey, Membership, Version, release};

use crate::cluster_dir::{ClusterDir, write_atomic};

/// The settings `init` takes besides the machines.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub interval: Duration,
    pub disabled_exit_after: Option<Duration>,
    pub removed_exit_after: Option<Duration>,
}

impl InitOptions {
    pub fn with_interval(interval: Duration) -> Self {
        Self {
            interval,
            disabled_exit_after: None,
            removed_exit_after: None,
        }
    }
}

pub fn init(
    dir: &Path,
    machines_file: &Path,
    options: &InitOptions,
    peer_binary: &Path,
) -> anyhow::Result<()> {
    let interval = options.interval;
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!("{}: already exists and is not empty", dir.display());
    }
    let text = std::fs::read_to_string(machines_file)
        .with_context(|| format!("{}", machines_file.display()))?;
    let membership = Membership::parse(&machines_file.display().to_string(), &text, 1)?;
    if membership.is_empty() {
        bail!("{}: no machines listed", machines_file.display());
    }
    if interval < Duration::from_millis(200) {
        bail!(
            "--interval {}: at least 200ms",
            humantime::format_duration(interval)
        );
    }
    let binary = std::fs::read(peer_binary).with_context(|| {
        format!(
            "the peer binary {} (pass --peer-binary)",
            peer_binary.display()
        )
    })?;

    // Build everything in a sibling directory, then rename: never a half-written cluster dir.
    let dir = std::path::absolute(dir)?;
    let parent = dir
        .parent()
        .context("the cluster directory needs a parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("{}", parent.display()))?;
    let staging = parent.join(format!(
        ".{}.init-{}",
        dir.file_name()
            .context("bad directory name")?
            .to_string_lossy(),
        std::process::id()
    ));
    let result = build(&staging, &dir, &membership, &text, options, &binary);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
        return result;
    }
    if dir.exists() {
        std::fs::remove_dir(&dir).with_context(|| format!("{}", dir.display()))?;
    }
    std::fs::rename(&staging, &dir).with_context(|| format!("{}", dir.display()))?;
    println!(
        "initialised {} with {} machines; next: smon-console -C {} deploy",
        dir.display(),
        membership.len(),
        dir.display()
    );
    Ok(())
}

fn build(
    staging: &Path,
    final_dir: &Path,
    membership: &Membership,
    text: &str,
    options: &InitOptions,
    binary: &[u8],
) -> anyhow::Result<()> {
    let interval = options.interval;
    std::fs::create_dir_all(staging)?;
    ClusterKey::create(&staging.join("cluster.key"))?;
    let release_key = release::generate_release_key();
    let pem = release_key.to_openssh(smon_proto::release::LineEnding::LF)?;
    write_atomic(&staging.join("release.key"), pem.as_bytes(), 0o600)?;
    let public = release_key.public_key().to_openssh()?;
    write_atomic(
        &staging.join("release.pub"),
        format!("{public}\n").as_bytes(),
        0o644,
    )?;

    let interval_ms = interval.as_millis() as u64;
    let mut rng = rand::rng();
    let mut config = ClusterConfig {
        port: 0,
        local_salt: rng.random(),
        local_root: final_dir.join("machines.d"),
        interval_ms,
        ping_timeout_ms: (interval_ms * 2 / 5).clamp(200, 2_000),
        release_key: public,
        agent: None,
        removed_exit_after_ms: options
            .removed_exit_after
            .map_or(12 * interval_ms, |d| d.as_millis() as u64),
        disabled_exit_after_ms: options.disabled_exit_after.map(|d| d.as_millis() as u64),
        rejoin_within_ms: 20 * interval_ms,
    };
    if let Some((a, b)) = config.address_collision(membership.machines()) {
        bail!("local machines {a} and {b} would share a loopback address: rename one");
    }
    config.port = free_port(&config, membership)?;
    let json = serde_json::to_vec_pretty(&config)?;
    write_atomic(&staging.join("cluster.json"), &json, 0o644)?;
    write_atomic(&staging.join("machines"), text.as_bytes(), 0o644)?;
    write_atomic(
        &staging.join("membership.blob"),
        &membership.encode(),
        0o644,
    )?;

    let mut manifest =
        release::package_manifest(binary, env!("CARGO_PKG_VERSION").parse::<Version>()?);
    release::sign_manifest(&mut manifest, &release_key)?;
    write_atomic(
        &staging.join("package"),
        &release::encode_package(binary, &manifest),
        0o755,
    )?;

    let staged_config = ClusterConfig {
        local_root: staging.join("machines.d"),
        ..config
    };
    ClusterDir::make_local_dirs(&staged_config, membership)
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
