//! `smon-console wait`: poll the cluster until it reaches a goal. A goal that is already met
//! ends at once, one that can never be met is refused at once, and each way of ending has its
//! own exit code ([`exit_code`]), documented in `wait --help` and the README.

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use smon_proto::{MachineId, Version};

use crate::{
    cluster_dir::ClusterDir,
    connect,
    fan_out::{self, Asked},
    summary::Summary,
};

/// The exit codes of `wait` (kept in step with `wait --help` and the README).
pub mod exit_code {
    /// The goal was reached (or was already met).
    pub const REACHED: i32 = 0;
    /// Any other error: the cluster directory cannot be read, and the like.
    pub const ERROR: i32 = 1;
    /// The arguments are wrong (clap's usage errors).
    pub const USAGE: i32 = 2;
    /// The goal can never be met: refused at once, with a code of its own (issue 15, kind 8).
    pub const REFUSED: i32 = 6;
    /// No peer of the cluster answered until the timeout.
    pub const UNREACHABLE: i32 = 3;
    /// Peers answered, but the goal was not reached by the timeout.
    pub const TIMED_OUT: i32 = 4;
    /// `--version V`: V is marked bad (it was rolled back on a machine), so peers never
    /// take it: said at once.
    pub const MARKED_BAD: i32 = 5;
}

/// What `wait` waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Goal {
    /// At least N machines run a peer (`None`: every machine of the membership).
    Deployed(Option<usize>),
    /// Every machine runs this release.
    Version(Version),
    Disabled,
    Enabled,
}

/// Why `wait` ended without reaching its goal.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The goal can never be met by this cluster: said at once, not after the timeout.
    #[error("refused: {0}")]
    Refused(String),
    #[error("timed out after {after}: no peer answered ({last})")]
    Unreachable { after: String, last: String },
    #[error("timed out after {after}: {last}")]
    TimedOut { after: String, last: String },
    /// The release waited for was rolled back on a machine: it will never spread.
    #[error("{0}")]
    MarkedBad(String),
}

impl WaitError {
    /// This ending's exit code (see [`exit_code`]).
    pub const fn exit_code(&self) -> i32 {
        match self {
            WaitError::Refused(_) => exit_code::REFUSED,
            WaitError::Unreachable { .. } => exit_code::UNREACHABLE,
            WaitError::TimedOut { .. } => exit_code::TIMED_OUT,
            WaitError::MarkedBad(_) => exit_code::MARKED_BAD,
        }
    }
}

/// The exit code for an error of any command: a [`WaitError`]'s own, else [`exit_code::ERROR`].
pub fn exit_code_of(error: &anyhow::Error) -> i32 {
    error
        .downcast_ref::<WaitError>()
        .map_or(exit_code::ERROR, WaitError::exit_code)
}

/// Where the cluster stands towards a goal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Reached(String),
    /// It can never be met: why.
    Refused(String),
    /// The version waited for is marked bad: where and why.
    MarkedBad(String),
    /// Not yet: `done` of `total`, described.
    Pending {
        done: usize,
        total: usize,
        text: String,
    },
}

impl Goal {
    /// A goal met by any cluster, whatever it answers (`--deployed 0`): why, if so.
    pub fn trivially_met(&self) -> Option<String> {
        (*self == Goal::Deployed(Some(0)))
            .then(|| "--deployed 0: met by any cluster, nothing to wait for".to_string())
    }

    /// Judge a goal on machine counts (deployed, version) against a summary of the view.
    pub fn judge_view(&self, s: &Summary) -> Verdict {
        let machines = s.machines as usize;
        match self {
            Goal::Deployed(n) => {
                let want = n.unwrap_or(machines);
                if want > machines {
                    return Verdict::Refused(too_many(want, machines, "the cluster's membership"));
                }
                let text = format!("{} of {want} deployed", s.deployed);
                pending_or_reached(s.deployed.min(want), want, text)
            }
            Goal::Version(v) => {
                let bad: Vec<_> = (s.bad_versions.iter())
                    .filter(|b| b.version == v.to_string())
                    .map(|b| b.text())
                    .collect();
                if !bad.is_empty() {
                    return Verdict::MarkedBad(format!(
                        "{}; peers never upgrade to it: package the fix as a newer version",
                        bad.join("; ")
                    ));
                }
                let on = s.versions.get(&v.to_string()).copied().unwrap_or(0);
                let mut running = s.versions.keys().filter_map(|k| k.parse::<Version>().ok());
                // Peers only ever move to a newer release (a rollback returns a machine to
                // the version it ran before, which is then still listed), so an older
                // version that no machine runs will never come back.
                if on == 0 && s.deployed > 0 && running.all(|r| r > *v) {
                    return Verdict::Refused(format!(
                        "--version {v}: every deployed machine runs a newer release \
                         (versions: {}), and peers never move to an older one",
                        versions_text(s)
                    ));
                }
                let text = format!("{on} of {machines} on {v} (versions: {})", versions_text(s));
                pending_or_reached(on, machines, text)
            }
            // Normally judged on each peer's own livetag; here on the answering peer's.
            Goal::Disabled | Goal::Enabled => {
                let want = matches!(self, Goal::Enabled);
                let done = usize::from(s.livetag.enabled == want);
                pending_or_reached(done, 1, format!("livetag enabled: {}", s.livetag.enabled))
            }
        }
    }

    /// Judge `--disabled` / `--enabled` on each machine's own livetag, asked directly. Met
    /// when every peer that answers agrees and every peer was asked: a peer this process
    /// could not ask (descriptors exhausted) is never taken for a stopped one. `None` when
    /// no peer answers and none was left unasked.
    pub fn judge_livetags(&self, tags: &[(MachineId, Asked<bool>)]) -> Option<Verdict> {
        let want = matches!(self, Goal::Enabled);
        let answers = || {
            tags.iter().filter_map(|(_, a)| match a {
                Asked::Answered(on) => Some(*on),
                _ => None,
            })
        };
        let answering = answers().count();
        let not_asked = fan_out::not_asked_line(tags);
        if answering == 0 && not_asked.is_none() {
            return None;
        }
        let agreeing = answers().filter(|&on| on == want).count();
        let word = if want { "enabled" } else { "disabled" };
        let mut text = format!("{agreeing} of {answering} running peers {word}");
        let Some(line) = not_asked else {
            return Some(pending_or_reached(agreeing, answering, text));
        };
        text.push_str("; ");
        text.push_str(&line);
        let unasked = tags
            .iter()
            .filter(|(_, a)| matches!(a, Asked::NotAsked(_)))
            .count();
        Some(Verdict::Pending {
            done: agreeing,
            total: answering + unasked,
            text,
        })
    }

    /// Judge a goal on the cluster directory alone, when no peer answers: only what its own
    /// membership list rules out.
    fn judge_offline(&self, dir: &ClusterDir) -> Option<Verdict> {
        let machines = dir.membership.len();
        match self {
            Goal::Deployed(Some(n)) if *n > machines => Some(Verdict::Refused(too_many(
                *n,
                machines,
                &format!("the membership list of {}", dir.path.display()),
            ))),
            _ => None,
        }
    }
}

fn too_many(want: usize, machines: usize, list: &str) -> String {
    format!("--deployed {want}: {list} has only {machines} machines")
}

fn versions_text(s: &Summary) -> String {
    if s.versions.is_empty() {
        return "none".into();
    }
    let list: Vec<_> = s
        .versions
        .iter()
        .map(|(v, n)| format!("{v} ×{n}"))
        .collect();
    list.join(", ")
}

fn pending_or_reached(done: usize, total: usize, text: String) -> Verdict {
    if done >= total {
        Verdict::Reached(text)
    } else {
        Verdict::Pending { done, total, text }
    }
}

/// Ask the cluster once: the verdict, or why no peer answered.
async fn poll(dir: &ClusterDir, goal: &Goal) -> Result<Verdict, String> {
    match goal {
        Goal::Deployed(_) | Goal::Version(_) => match connect::view(dir).await {
            Ok(view) => Ok(goal.judge_view(&Summary::new(&view))),
            Err(e) => Err(crate::error_line::one_line(&e)),
        },
        Goal::Disabled | Goal::Enabled => {
            let tags: Vec<_> = connect::livetags(dir)
                .await
                .into_iter()
                .map(|(m, asked)| (m, asked.map(|tag| tag.enabled)))
                .collect();
            goal.judge_livetags(&tags)
                .ok_or_else(|| format!("none of the {} machines' peers answers", tags.len()))
        }
    }
}

/// Poll until the cluster reaches `goal`: how far it got, or a [`WaitError`] (a refused goal
/// at once, an unreachable cluster or a goal not reached at the timeout).
pub async fn wait(dir: &ClusterDir, goal: Goal, timeout: Duration) -> anyhow::Result<String> {
    if let Some(why) = goal.trivially_met() {
        return Ok(why);
    }
    let deadline = Instant::now() + timeout;
    let poll_every = Duration::from_millis((dir.config.interval_ms / 2).clamp(100, 1_000));
    let bar = progress_bar();
    let after = || humantime::format_duration(timeout).to_string();
    loop {
        let answered = poll(dir, &goal).await;
        let verdict = match &answered {
            Ok(verdict) => Some(verdict.clone()),
            Err(_) => goal.judge_offline(dir),
        };
        match verdict {
            Some(Verdict::Reached(text)) => {
                bar.iter().for_each(|b| b.finish());
                return Ok(text);
            }
            Some(Verdict::Refused(why)) => {
                bar.iter().for_each(|b| b.abandon());
                return Err(WaitError::Refused(why).into());
            }
            Some(Verdict::MarkedBad(why)) => {
                bar.iter().for_each(|b| b.abandon());
                return Err(WaitError::MarkedBad(why).into());
            }
            Some(Verdict::Pending {
                done,
                total,
                ref text,
            }) => {
                if let Some(bar) = &bar {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                    bar.set_message(text.clone());
                }
            }
            None => {}
        }
        if Instant::now() >= deadline {
            bar.iter().for_each(|b| b.abandon());
            return Err(match answered {
                Err(last) => WaitError::Unreachable {
                    after: after(),
                    last,
                },
                Ok(v) => WaitError::TimedOut {
                    after: after(),
                    last: match v {
                        Verdict::Pending { text, .. } => text,
                        Verdict::Reached(t) | Verdict::Refused(t) | Verdict::MarkedBad(t) => t,
                    },
                },
            }
            .into());
        }
        tokio::time::sleep(poll_every).await;
    }
}

/// A progress bar on a terminal's stderr (none when stderr is not a terminal).
fn progress_bar() -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(1);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:40}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(machines: u32, deployed: usize, versions: &[(&str, usize)]) -> Summary {
        let mut s = Summary::new(&smon_proto::ClusterView::empty("local:a".parse().unwrap()));
        s.machines = machines;
        s.deployed = deployed;
        s.versions = versions.iter().map(|(v, n)| (v.to_string(), *n)).collect();
        s
    }

    #[test]
    fn deployed_more_than_the_membership_is_refused() {
        let s = summary(12, 12, &[("0.1.0", 12)]);
        let v = Goal::Deployed(Some(50)).judge_view(&s);
        assert!(
            matches!(&v, Verdict::Refused(w) if w.contains("50") && w.contains("only 12")),
            "{v:?}"
        );
        assert!(matches!(
            Goal::Deployed(Some(12)).judge_view(&s),
            Verdict::Reached(_)
        ));
        assert!(matches!(
            Goal::Deployed(None).judge_view(&summary(12, 3, &[])),
            Verdict::Pending {
                done: 3,
                total: 12,
                ..
            }
        ));
    }

    #[test]
    fn deployed_zero_is_met_without_asking() {
        assert!(Goal::Deployed(Some(0)).trivially_met().is_some());
        assert!(Goal::Deployed(Some(1)).trivially_met().is_none());
        assert!(Goal::Deployed(None).trivially_met().is_none());
    }

    #[test]
    fn an_older_version_nobody_runs_is_refused() {
        let v = |s: &str| Goal::Version(s.parse().unwrap());
        let s = summary(4, 4, &[("0.2.0", 3), ("0.3.0", 1)]);
        assert!(matches!(v("0.1.0").judge_view(&s), Verdict::Refused(_)));
        // Still run by some, newer than all, or the one they run: not refused.
        assert!(matches!(v("0.2.0").judge_view(&s), Verdict::Pending { .. }));
        assert!(matches!(v("0.4.0").judge_view(&s), Verdict::Pending { .. }));
        let done = summary(4, 4, &[("0.3.0", 4)]);
        assert!(matches!(v("0.3.0").judge_view(&done), Verdict::Reached(_)));
        // Nothing deployed yet: any version may still come.
        assert!(matches!(
            v("0.1.0").judge_view(&summary(4, 0, &[])),
            Verdict::Pending { .. }
        ));
    }

    #[test]
    fn a_version_marked_bad_ends_the_wait_at_once_with_its_own_code() {
        let mut s = summary(6, 6, &[("0.1.0", 6)]);
        s.bad_versions = vec![crate::bad_versions::BadVersionRow::example("0.5.0")];
        let v = |s: &str| Goal::Version(s.parse().unwrap());
        let verdict = v("0.5.0").judge_view(&s);
        assert!(
            matches!(&verdict, Verdict::MarkedBad(w) if w.contains("local:m1") && w.contains("code 3")),
            "{verdict:?}"
        );
        assert!(matches!(v("0.6.0").judge_view(&s), Verdict::Pending { .. }));
        assert_eq!(
            exit_code_of(&WaitError::MarkedBad(String::new()).into()),
            exit_code::MARKED_BAD
        );
    }

    #[test]
    fn livetags_are_judged_on_the_peers_that_answer() {
        let tags = |asked: Vec<Asked<bool>>| -> Vec<(MachineId, Asked<bool>)> {
            let names = (0..).map(|i| MachineId::Local {
                name: format!("m{i}"),
            });
            names.zip(asked).collect()
        };
        let silent = || Asked::NoAnswer("connection refused".into());
        assert_eq!(
            Goal::Disabled.judge_livetags(&tags(vec![silent(), silent()])),
            None
        );
        assert!(matches!(
            Goal::Disabled.judge_livetags(&tags(vec![Asked::Answered(false), silent()])),
            Some(Verdict::Reached(_))
        ));
        assert!(matches!(
            Goal::Enabled
                .judge_livetags(&tags(vec![Asked::Answered(false), Asked::Answered(true)])),
            Some(Verdict::Pending {
                done: 1,
                total: 2,
                ..
            })
        ));
    }

    #[test]
    fn a_peer_not_asked_keeps_the_goal_pending_and_is_named() {
        let tags = vec![
            (
                MachineId::Local { name: "a".into() },
                Asked::Answered(false),
            ),
            (
                MachineId::Local { name: "b".into() },
                Asked::NotAsked("Too many open files".into()),
            ),
        ];
        let Some(Verdict::Pending { done, total, text }) = Goal::Disabled.judge_livetags(&tags)
        else {
            panic!("not pending");
        };
        assert_eq!((done, total), (1, 2));
        assert!(
            text.contains("1 peer not asked (local:b): Too many open files"),
            "{text}"
        );
        // Nobody answered, but somebody was not asked: still not "no peer answers".
        assert!(Goal::Disabled.judge_livetags(&tags[1..]).is_some());
    }

    #[test]
    fn each_ending_has_its_exit_code() {
        let code = |e: WaitError| exit_code_of(&e.into());
        assert_eq!(code(WaitError::Refused("x".into())), exit_code::REFUSED);
        let (after, last) = (String::new(), String::new());
        assert_eq!(
            code(WaitError::Unreachable {
                after: after.clone(),
                last: last.clone()
            }),
            exit_code::UNREACHABLE
        );
        assert_eq!(
            code(WaitError::TimedOut { after, last }),
            exit_code::TIMED_OUT
        );
        assert_eq!(exit_code_of(&anyhow::anyhow!("other")), exit_code::ERROR);
    }
}
