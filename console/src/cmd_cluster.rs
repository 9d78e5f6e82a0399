//! The batch commands that act on a running cluster.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use smon_login::{layout, machine_ops};
use smon_proto::{ControlAction, InstallSeed, MachineId, Membership, Version, release};

use crate::{
    cluster_dir::{ClusterDir, write_atomic},
    connect,
    fan_out::{self, Asked},
    summary::Summary,
    zone_records,
};

/// Start the first peer (by default on the first machine of the list); what to tell the
/// operator.
pub async fn deploy(dir: &ClusterDir, machine: Option<MachineId>) -> anyhow::Result<String> {
    let machine = match machine {
        Some(m) => m,
        None => dir
            .membership
            .machines()
            .first()
            .cloned()
            .context("the membership list is empty")?,
    };
    let index = dir.membership.index_of(&machine).with_context(|| {
        format!(
            "{machine} is not in the membership list of {}",
            dir.path.display()
        )
    })?;
    let package = crate::signing::signed_package(dir).await?;
    let membership = crate::signing::signed_membership(dir).await?;
    let seed = InstallSeed {
        me: machine.clone(),
        deployer: "console".into(),
        config: dir.config.clone(),
        cluster_key: dir.key.bytes().to_vec(),
        membership: membership.encode(),
        spread_origin: Some((index, membership.version)),
    };
    let login = crate::cmd_agent::login(dir, &membership)?;
    let message = machine_ops::deploy(&login, &machine, &package, &seed)
        .await
        .with_context(|| format!("deploying to {machine}"))?;
    let mut report = format!("{machine}: {}", message.trim());
    // A cluster that was shut down keeps livetag off: say how to resume.
    if let Ok(view) = connect::view(dir).await
        && !view.livetag.enabled
    {
        report += "\nnote: self-management is disabled in this cluster; `smon-console enable` \
                   resumes it";
    }
    Ok(report)
}

pub async fn status(dir: &ClusterDir, json: bool) -> anyhow::Result<()> {
    let view = connect::view(dir).await?;
    let mut summary = Summary::new(&view);
    // Every zone's machines, asked of the zones' own peers; with --via only that peer is
    // talked to, and its own zone's machines are listed.
    if dir.via.is_none() {
        let (records, unanswered) = zone_records::all_records(dir, &view).await;
        summary.set_records(&records);
        summary.unanswered_zones = unanswered;
    }
    if let Some(listed) = zone_records::listed_machines(dir, &view, dir.via.is_some()).await {
        summary.fill_unknown(&listed);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.human());
    }
    Ok(())
}

/// A signed package of this cluster's peer binary labelled `version`.
pub async fn package(
    dir: &ClusterDir,
    version: Version,
    out: &Path,
    binary: Option<&Path>,
) -> anyhow::Result<()> {
    let current = match binary {
        Some(path) => std::fs::read(path).with_context(|| format!("{}", path.display()))?,
        None => std::fs::read(dir.package_path())
            .with_context(|| format!("{}", dir.package_path().display()))?,
    };
    // A package file or a bare binary: either way, the binary part.
    let binary = release::split_package(&current).map_or(&current[..], |(b, _)| b);
    let mut manifest = release::package_manifest(binary, version);
    crate::signing::sign(dir, &mut manifest).await?;
    write_atomic(out, &release::encode_package(binary, &manifest), 0o755)?;
    println!("{}: smon-peer {version}, signed", out.display());
    Ok(())
}

pub async fn set_livetag(dir: &ClusterDir, enabled: bool) -> anyhow::Result<()> {
    let answer = connect::control(dir, ControlAction::SetLiveTag { enabled }).await?;
    println!("{answer}");
    Ok(())
}

pub async fn set_membership(
    dir: &ClusterDir,
    file: &Path,
    scan_host_keys: bool,
) -> anyhow::Result<()> {
    let text = smon_proto::read_text(file)?;
    let view = connect::view(dir).await?;
    let version = view.membership_version.max(dir.membership.version) + 1;
    let membership = Membership::parse(&file.display().to_string(), &text, version)?;
    if membership.is_empty() {
        bail!("{}: no machines listed", file.display());
    }
    if let Some((a, b)) = dir.config.address_collision(membership.machines()) {
        bail!("local machines {a} and {b} would share a loopback address: rename one");
    }
    let policy = crate::host_keys::PinPolicy {
        scan: scan_host_keys,
        trust_on_first_use: dir.config.ssh_trust_on_first_use,
    };
    let known_hosts = dir.files().known_hosts();
    let how = format!("add their keys to {} (ssh-keyscan)", known_hosts.display());
    let mut membership = crate::host_keys::pin(&known_hosts, membership, policy, &how).await?;
    // The list the cluster runs already says this: no new version (issue 15, kind 6).
    if dir.membership.version == view.membership_version && membership.same_content(&dir.membership)
    {
        println!(
            "membership unchanged: version {} already lists these machines",
            view.membership_version
        );
        return Ok(());
    }
    if membership.has_pins() {
        crate::signing::sign_membership(dir, &mut membership).await?;
    }
    ClusterDir::make_local_dirs(&dir.config, &membership)?;
    let answer = connect::control(
        dir,
        ControlAction::SetMembership {
            blob: membership.encode(),
        },
    )
    .await?;
    dir.save_membership(&text, &membership)?;
    println!("{answer}");
    Ok(())
}

/// Disable self-management, then stop every peer; none is left behind.
///
/// Rounds of: make sure every answering peer is disabled (an enabled one would restart the
/// stopped), then tell every answering peer to stop; until no peer answers and no local
/// machine has a live peer process. What to tell the operator.
pub async fn shutdown(
    dir: &ClusterDir,
    timeout: Duration,
    stop_apps: bool,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    let poll = Duration::from_millis((dir.config.interval_ms / 2).clamp(100, 1_000));
    loop {
        let tags = connect::livetags(dir).await;
        let answering: Vec<_> = tags
            .iter()
            .filter_map(|(m, t)| match t {
                Asked::Answered(t) => Some((m.clone(), *t)),
                _ => None,
            })
            .collect();
        // Peers this process could not ask may still run: never "all stopped" over them.
        let not_asked = fan_out::not_asked_line(&tags);
        // A local peer holds its lock until it has stopped its applications and exits (its
        // pid file goes earlier, and may name a pid the kernel has given to another process).
        let local_left = local_pids(dir);
        if answering.is_empty() && local_left.is_empty() && not_asked.is_none() {
            let apps = if stop_apps {
                "and their applications"
            } else {
                "(their applications keep running, unsupervised)"
            };
            return Ok(format!(
                "all peers of {} stopped {apps}",
                dir.path.display()
            ));
        }
        if Instant::now() > deadline {
            for (machine, pid) in &local_left {
                eprintln!(
                    "{machine}: pid {pid} did not stop; killing it (applications it still ran \
                     are left running)"
                );
                // SAFETY: sending a signal to a pid is memory-safe.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            let unknown = not_asked.map(|l| format!("; {l}")).unwrap_or_default();
            bail!(
                "timed out after {}: {} peers still answered{unknown}",
                humantime::format_duration(timeout),
                answering.len()
            );
        }
        if answering.iter().any(|(_, t)| t.enabled) {
            let _ = connect::control(dir, ControlAction::SetLiveTag { enabled: false }).await;
            tokio::time::sleep(poll).await;
            continue;
        }
        tell_each_to_stop(
            dir,
            answering.into_iter().map(|(m, _)| m).collect(),
            stop_apps,
        )
        .await;
        tokio::time::sleep(poll).await;
    }
}

/// Send `Shutdown` to each of `machines`' peers directly, a bounded number at a time.
async fn tell_each_to_stop(dir: &ClusterDir, machines: Vec<MachineId>, stop_apps: bool) {
    let key = &dir.key;
    fan_out::ask_all(machines, |machine| async move {
        let addr = dir.peer_address(&machine);
        match connect::client_at(&addr, key).await {
            Ok(client) => {
                let action = ControlAction::Shutdown { stop_apps };
                match connect::control_one(&machine, &client, action).await {
                    Ok(_) => Asked::Answered(()),
                    Err(e) => Asked::NoAnswer(crate::error_line::one_line(&e)),
                }
            }
            Err(e) => Asked::from_error(&e),
        }
    })
    .await;
}

fn local_pids(dir: &ClusterDir) -> Vec<(MachineId, i32)> {
    dir.local_roots()
        .into_iter()
        .filter_map(|(m, root)| layout::running_pid(&root).map(|pid| (m, pid)))
        .collect()
}
