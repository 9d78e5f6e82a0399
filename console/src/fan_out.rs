//! Asking many peers at once without running out of file descriptors, and without taking
//! our own failure to ask for a peer's silence.
//!
//! Invariant: a peer is only ever counted as "not answering" when a connection to it was
//! really tried. When this process could not even open one (`EMFILE`, `ENFILE`, ...), the
//! peer is [`Asked::NotAsked`], and every caller reports it as such (issue 15, kind 4: under
//! `ulimit -n 12`, ten of twelve peers were never asked and `wait --disabled` still said
//! "2 of 2 running peers disabled").

use std::future::Future;

use futures::stream::{self, StreamExt};
use smon_proto::ProtoError;

/// The most connections one fan-out opens at a time, whatever the descriptor limit.
const MAX_IN_FLIGHT: usize = 64;
/// Descriptors left for everything else the console holds while a fan-out runs (the runtime,
/// files it reads, a TUI's terminal).
const RESERVE: u64 = 6;

/// What asking one peer directly gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Asked<T> {
    Answered(T),
    /// A connection was tried and failed, or the call timed out: the peer is taken as not
    /// running. The reason is the error.
    NoAnswer(String),
    /// This process could not open a connection (descriptors or memory exhausted here):
    /// nothing is known of the peer.
    NotAsked(String),
}

impl<T> Asked<T> {
    /// The answer made into another, the failures kept as they are.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Asked<U> {
        match self {
            Asked::Answered(t) => Asked::Answered(f(t)),
            Asked::NoAnswer(why) => Asked::NoAnswer(why),
            Asked::NotAsked(why) => Asked::NotAsked(why),
        }
    }

    /// Sort a transport error: our own resource exhaustion is `NotAsked`, anything else says
    /// the peer did not answer.
    pub fn from_error(e: &ProtoError) -> Self {
        if e.is_local_exhaustion() {
            Asked::NotAsked(e.to_string())
        } else {
            Asked::NoAnswer(e.to_string())
        }
    }
}

/// Raise this process's soft descriptor limit to its hard limit, as Go's runtime does at
/// start: the soft default (often 1,024) is a relic of `select(2)`. Silent on failure: the
/// bounded fan-out copes with whatever limit there is.
pub fn raise_descriptor_limit() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

/// The fewest descriptors the console starts with: its runtime, signal handling and one
/// connection at a time need about this many (below, tokio panics where it cannot open its
/// signal pipe).
pub const MIN_DESCRIPTORS: u64 = 10;

/// Refuse to start, with one line, under a soft descriptor limit below [`MIN_DESCRIPTORS`].
pub fn check_descriptor_floor() -> Result<(), String> {
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) if soft < MIN_DESCRIPTORS => Err(format!(
            "needs at least {MIN_DESCRIPTORS} open files, and ulimit -n is {soft}: Too many \
             open files; raise it (ulimit -n 1024)"
        )),
        _ => Ok(()),
    }
}

/// "ulimit -n is 8": the soft descriptor limit, for messages about running out of them.
pub fn descriptor_limit_text() -> String {
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) => format!("ulimit -n is {soft}"),
        Err(e) => format!("the descriptor limit is unknown: {e}"),
    }
}

/// How many connections a fan-out may open at once: what the soft limit leaves beside the
/// descriptors already open, within `1..=MAX_IN_FLIGHT`.
pub fn in_flight_limit() -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1_024, |(soft, _)| soft);
    let open = std::fs::read_dir("/proc/self/fd").map_or(16, |d| d.count() as u64);
    let free = soft.saturating_sub(open + RESERVE);
    usize::try_from(free)
        .unwrap_or(usize::MAX)
        .clamp(1, MAX_IN_FLIGHT)
}

/// Ask every item with `ask`, at most [`in_flight_limit`] at a time; those that could not
/// be asked for want of descriptors are asked again one at a time once the rest are done,
/// a few times with growing pauses (under a second in all per item).
/// Results come in the order of `items`.
pub async fn ask_all<K, T, F, Fut>(items: Vec<K>, ask: F) -> Vec<(K, Asked<T>)>
where
    K: Clone,
    F: Fn(K) -> Fut,
    Fut: Future<Output = Asked<T>>,
{
    let ask = &ask;
    let mut results: Vec<(usize, Asked<T>)> = stream::iter(items.iter().cloned().enumerate())
        .map(|(i, item)| async move { (i, ask(item).await) })
        .buffer_unordered(in_flight_limit())
        .collect()
        .await;
    for (i, asked) in results.iter_mut() {
        if matches!(asked, Asked::NotAsked(_)) {
            *asked = retrying(
                || ask(items[*i].clone()),
                |a| matches!(a, Asked::NotAsked(_)),
            )
            .await;
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results
        .into_iter()
        .map(|(i, asked)| (items[i].clone(), asked))
        .collect()
}

/// Run `attempt` until `exhausted` no longer holds of its result, at most a few times with
/// growing pauses (under a second in all): connections just dropped close in their own tasks,
/// so descriptors come back soon. The last result.
pub async fn retrying<T, Fut>(mut attempt: impl FnMut() -> Fut, exhausted: impl Fn(&T) -> bool) -> T
where
    Fut: Future<Output = T>,
{
    let mut result = attempt().await;
    for pause_ms in [10, 20, 50, 100, 200, 400] {
        if !exhausted(&result) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
        result = attempt().await;
    }
    result
}

/// "8 peers not asked (local:m03, local:m04, ...): too many open files": the one line that
/// says how many peers this process failed to reach on its own account, or `None`.
pub fn not_asked_line<K: std::fmt::Display, T>(results: &[(K, Asked<T>)]) -> Option<String> {
    let not_asked: Vec<_> = results
        .iter()
        .filter_map(|(k, a)| match a {
            Asked::NotAsked(why) => Some((k, why)),
            _ => None,
        })
        .collect();
    let (_, why) = not_asked.first()?;
    let names: Vec<String> = not_asked
        .iter()
        .take(4)
        .map(|(k, _)| k.to_string())
        .collect();
    let more = if not_asked.len() > 4 { ", ..." } else { "" };
    let peers = if not_asked.len() == 1 {
        "peer"
    } else {
        "peers"
    };
    Some(format!(
        "{} {peers} not asked ({}{more}): {why}",
        not_asked.len(),
        names.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> ProtoError {
        ProtoError::Io(std::io::Error::from_raw_os_error(libc::EMFILE))
    }

    #[test]
    fn running_out_of_descriptors_is_not_the_peers_silence() {
        assert!(matches!(
            Asked::<()>::from_error(&emfile()),
            Asked::NotAsked(_)
        ));
        let refused = ProtoError::Io(std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert!(matches!(
            Asked::<()>::from_error(&refused),
            Asked::NoAnswer(_)
        ));
    }

    #[test]
    fn the_not_asked_are_asked_again_one_at_a_time_and_order_is_kept() {
        let in_flight = std::sync::atomic::AtomicUsize::new(0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let results = rt.block_on(ask_all((0..10).collect(), |i: u32| {
            let in_flight = &in_flight;
            async move {
                // More than one at once fails, as a descriptor limit would.
                let now = in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
                in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                if now > 0 {
                    Asked::from_error(&emfile())
                } else {
                    Asked::Answered(i * 2)
                }
            }
        }));
        let expected: Vec<_> = (0..10).map(|i| (i, Asked::Answered(i * 2))).collect();
        assert_eq!(results, expected);
    }

    #[test]
    fn the_line_names_how_many_were_not_asked_and_why() {
        let results = vec![
            ("a", Asked::Answered(())),
            ("b", Asked::from_error(&emfile())),
            ("c", Asked::NoAnswer("refused".into())),
        ];
        let line = not_asked_line(&results).unwrap();
        assert!(line.starts_with("1 peer not asked (b): "), "{line}");
        assert!(
            line.to_lowercase().contains("too many open files"),
            "{line}"
        );
        assert_eq!(not_asked_line(&results[..1]), None);
    }

    #[test]
    fn the_limit_is_at_least_one_and_bounded() {
        let n = in_flight_limit();
        assert!((1..=MAX_IN_FLIGHT).contains(&n));
    }
}
