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
        cluster_key: dir.key.get().encode(),
        membership: membership.encode(),
        spread_origin: Some((index, membership.version)),
    };
    let login = crate::cmd_agent::login(dir, &membership)?;
    let message = match machine_ops::deploy(
        &login,
        &machine,
        &package,
        &seed,
        machine_ops::Expect::Anything,
    )
    .await
    .with_context(|| format!("deploying to {machine}"))?
    {
        machine_ops::Deployed::Installed(message) => message,
        machine_ops::Deployed::Overtaken(why) => why,
    };
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
    summary.set_stale_after(dir.config.interval_ms);
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
    // A conflict row says whose peer answers at its address (issue 15 kind 5): asked there
    // now, since the record says only that somebody else did.
    summary
        .find_answerers(|m| async move { connect::who_answers_at(dir, &m).await })
        .await;
    // Once the cluster has rotated its key: where the rotation stands.
    let rekey = crate::rekey_status::rekey_status(dir).await;
    if json {
        let mut value = serde_json::to_value(&summary)?;
        if let (Some(rekey), Some(fields)) = (rekey, value.as_object_mut()) {
            fields.insert("rekey".into(), serde_json::to_value(rekey)?);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", summary.human());
        if let Some(rekey) = rekey {
            print!("{}", rekey.human());
        }
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
    let answer = send_livetag(dir, enabled).await?;
    println!("{answer}");
    Ok(())
}

/// Set the livetag through any peer, signed with the cluster's release key, at a version
/// above that peer's own tag (which it took signed) and at least this console's clock in ms,
/// as application settings are. The versions other machines' records *claim* are not used:
/// they are unsigned, so a holder of the cluster key could claim `u64::MAX` and leave no
/// version above it for the operator. The peer refuses the tag unless the signature
/// verifies: that refusal is the error.
pub async fn send_livetag(dir: &ClusterDir, enabled: bool) -> anyhow::Result<String> {
    let (machine, client) = connect::any_peer(dir).await?;
    let view = client
        .cluster_view(connect::ctx(Duration::from_secs(10)), 0)
        .await
        .map_err(|e| anyhow::anyhow!("{machine}: {e}"))?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let tag = smon_proto::LiveTag {
        enabled,
        version: view.livetag.version.saturating_add(1).max(now_ms),
    };
    let tag = crate::signing::signed_livetag(dir, tag).await?;
    connect::control_one(&machine, &client, ControlAction::SetLiveTag { tag }).await
}

pub async fn set_membership(
    dir: &ClusterDir,
    file: &Path,
    scan_host_keys: bool,
) -> anyhow::Result<()> {
    let text = smon_proto::read_text(file)?;
    // The file is checked before the cluster is asked anything: a bad list is refused
    // whether or not a peer answers.
    let mut membership = Membership::parse(&file.display().to_string(), &text, 0)?;
    let view = connect::view(dir).await?;
    membership.version = view.membership_version.max(dir.membership.version) + 1;
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
    // Signed as a whole: peers refuse a list the release key did not sign.
    crate::signing::sign_membership(dir, &mut membership).await?;
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
/// Polls a machine must go unanswered, once no answering peer is enabled, before `shutdown`
/// logs in to look for a silent peer process there.
const SILENT_POLLS: u32 = 2;

/// Rounds of: make sure every answering peer is disabled (an enabled one would restart the
/// stopped), then tell every answering peer to stop; until no peer answers and no local
/// machine has a live peer process. A machine that leaves [`SILENT_POLLS`] polls unanswered
/// is looked at over a login, and a peer process found there, which runs but does not
/// answer, is killed (issue 15, kind 1). What to tell the operator, naming every kill.
pub async fn shutdown(
    dir: &ClusterDir,
    timeout: Duration,
    stop_apps: bool,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    let poll = Duration::from_millis((dir.config.interval_ms / 2).clamp(100, 1_000));
    let mut silent = SilentWatch::default();
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
            let mut report = format!("all peers of {} stopped {apps}", dir.path.display());
            for line in &silent.said {
                report += &format!("\n{line}");
            }
            return Ok(report);
        }
        if Instant::now() > deadline {
            kill_left(dir, &local_left, stop_apps).await;
            let unknown = not_asked.map(|l| format!("; {l}")).unwrap_or_default();
            bail!(
                "timed out after {}: {} peers still answered{unknown}",
                humantime::format_duration(timeout),
                answering.len()
            );
        }
        if answering.iter().any(|(_, t)| t.enabled) {
            if let Err(e) = send_livetag(dir, false).await {
                eprintln!("disabling: {}", crate::error_line::one_line(&e));
            }
            tokio::time::sleep(poll).await;
            continue;
        }
        // Nobody answering restarts peers now: a silent one is looked at and killed.
        silent.note(&tags);
        silent.kill_due(dir, stop_apps).await;
        tell_each_to_stop(
            dir,
            answering.into_iter().map(|(m, _)| m).collect(),
            stop_apps,
        )
        .await;
        tokio::time::sleep(poll).await;
    }
}

/// Kill the local peers that did not stop in time, then (with `stop_apps`) end what their
/// applications left running: `shutdown` stops applications in every case.
async fn kill_left(dir: &ClusterDir, left: &[(MachineId, i32)], stop_apps: bool) {
    let login = crate::cmd_agent::login(dir, &dir.membership);
    for (machine, pid) in left {
        // SAFETY: sending a signal to a pid is memory-safe.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
        let apps = match &login {
            Ok(login) => crate::silent_peers::end_apps(login, machine, stop_apps).await,
            Err(e) => format!(
                "its applications could not be ended: {}",
                crate::error_line::one_line(e)
            ),
        };
        eprintln!("{machine}: pid {pid} did not stop; killed it; {apps}");
    }
}

/// The machines `shutdown` heard nothing from, poll after poll, and what it did about them.
#[derive(Default)]
struct SilentWatch {
    /// Unanswered polls in a row, per machine.
    polls: std::collections::BTreeMap<MachineId, u32>,
    /// Machines already looked at over a login (once each).
    looked: std::collections::BTreeSet<MachineId>,
    /// What was found and done, one line per machine with a silent peer.
    said: Vec<String>,
}

impl SilentWatch {
    fn note(&mut self, tags: &[(MachineId, Asked<smon_proto::LiveTag>)]) {
        for (machine, asked) in tags {
            match asked {
                Asked::NoAnswer(_) => *self.polls.entry(machine.clone()).or_default() += 1,
                _ => {
                    self.polls.remove(machine);
                }
            }
        }
    }

    /// Log in to each machine silent for [`SILENT_POLLS`] polls and not looked at yet, a
    /// bounded number at a time, and kill the peer process found there.
    async fn kill_due(&mut self, dir: &ClusterDir, stop_apps: bool) {
        let due: Vec<MachineId> = self
            .polls
            .iter()
            .filter(|(m, n)| **n >= SILENT_POLLS && !self.looked.contains(*m))
            .map(|(m, _)| m.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        self.looked.extend(due.iter().cloned());
        let login = match crate::cmd_agent::login(dir, &dir.membership) {
            Ok(login) => login,
            Err(e) => {
                let why = crate::error_line::one_line(&e);
                self.said
                    .push(format!("cannot log in to look at silent machines: {why}"));
                return;
            }
        };
        let login = &login;
        let found = fan_out::ask_all(due, |machine| async move {
            Asked::Answered(crate::silent_peers::kill_silent(login, &machine, stop_apps).await)
        })
        .await;
        for (machine, asked) in found {
            if let Asked::Answered(silent) = asked
                && let Some(line) = silent.line(&machine)
            {
                eprintln!("{line}");
                self.said.push(line);
            }
        }
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
