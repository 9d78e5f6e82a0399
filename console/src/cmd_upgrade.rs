//! `smon-console upgrade FILE [--watch DURATION]`: push a release to one peer, then watch what
//! happens for a while and say it (issue 16): the release spreads (its first peer rejoined and
//! another peer follows), or it was marked bad on a machine (where, why, when; exit 5, as
//! `wait --version`), or neither yet (what to watch). Never claims what it did not see.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context;
use smon_proto::{Version, chunked, release};

use crate::{cluster_dir::ClusterDir, cmd_wait::WaitError, connect, summary::Summary};

/// What the watch of an upgrade saw in one view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// At least `on` machines run the release (with `of` machines listed).
    Spreading { on: usize, of: usize },
    /// Marked bad: the words of each mark.
    MarkedBad(Vec<String>),
    /// Neither yet.
    Pending { on: usize },
}

/// Judge one summary: bad first (a mark is final), then spreading once a second machine runs
/// the release (the first one rejoined: another peer took it from it), or a lone machine runs it.
pub fn judge(s: &Summary, version: Version) -> Outcome {
    let v = version.to_string();
    let bad: Vec<_> = (s.bad_versions.iter())
        .filter(|b| b.version == v)
        .map(|b| b.text())
        .collect();
    if !bad.is_empty() {
        return Outcome::MarkedBad(bad);
    }
    let on = s.versions.get(&v).copied().unwrap_or(0);
    let of = s.machines as usize;
    if on >= 2.min(of.max(1)) && on > 0 {
        Outcome::Spreading { on, of }
    } else {
        Outcome::Pending { on }
    }
}

/// Push the release in `file` to one peer, then watch for up to `watch` (see the module).
pub async fn upgrade(dir: &ClusterDir, file: &Path, watch: Duration) -> anyhow::Result<()> {
    let package = std::fs::read(file).with_context(|| format!("{}", file.display()))?;
    let trusted = dir.trusted_release_key()?;
    let (_, manifest) = release::verify_package(&package, &trusted)
        .with_context(|| format!("{}", file.display()))?;
    let version = manifest.version;
    let (machine, client) = connect::any_peer(dir).await?;
    let answer = chunked::push(chunked::Kind::Release, &package, |action| {
        connect::control_one(&machine, &client, action)
    })
    .await?;
    println!("{answer}");
    let follow = format!(
        "`smon-console -C {} wait --version {version}` waits for every machine, and fails at \
         once (exit 5) if the release is marked bad",
        dir.path.display()
    );
    if watch.is_zero() {
        println!("not watched (--watch 0): {follow}");
        return Ok(());
    }
    let deadline = Instant::now() + watch;
    let every = Duration::from_millis((dir.config.interval_ms / 2).clamp(100, 1_000));
    let mut last = Outcome::Pending { on: 0 };
    while Instant::now() < deadline {
        tokio::time::sleep(every).await;
        // A peer restarting into the release may not answer for a moment: ask again.
        let Ok(view) = connect::view(dir).await else {
            continue;
        };
        last = judge(&Summary::new(&view), version);
        match &last {
            Outcome::Spreading { on, of } => {
                println!(
                    "{version} runs on {on} of {of} machines; the other peers follow. {follow}"
                );
                return Ok(());
            }
            Outcome::MarkedBad(marks) => {
                return Err(WaitError::MarkedBad(format!(
                    "{}; no peer takes it: package the fix as a newer version",
                    marks.join("; ")
                ))
                .into());
            }
            Outcome::Pending { .. } => {}
        }
    }
    let on = match last {
        Outcome::Pending { on } => on,
        _ => 0,
    };
    println!(
        "after {}: {version} runs on {on} machine(s), and no machine marked it bad yet. {follow}",
        humantime::format_duration(watch)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(machines: u32, versions: &[(&str, usize)]) -> Summary {
        let mut s = Summary::new(&smon_proto::ClusterView::empty("local:a".parse().unwrap()));
        s.machines = machines;
        s.versions = versions.iter().map(|(v, n)| (v.to_string(), *n)).collect();
        s
    }

    #[test]
    fn an_upgrade_is_judged_bad_spreading_or_pending() {
        let v: Version = "0.5.0".parse().unwrap();
        assert_eq!(
            judge(&summary(6, &[("0.1.0", 5), ("0.5.0", 1)]), v),
            Outcome::Pending { on: 1 }
        );
        assert_eq!(
            judge(&summary(6, &[("0.1.0", 4), ("0.5.0", 2)]), v),
            Outcome::Spreading { on: 2, of: 6 }
        );
        assert_eq!(
            judge(&summary(1, &[("0.5.0", 1)]), v),
            Outcome::Spreading { on: 1, of: 1 }
        );
        let mut bad = summary(6, &[("0.1.0", 6)]);
        bad.bad_versions = vec![crate::bad_versions::BadVersionRow::example("0.5.0")];
        assert!(matches!(judge(&bad, v), Outcome::MarkedBad(m) if m[0].contains("local:m1")));
    }
}
