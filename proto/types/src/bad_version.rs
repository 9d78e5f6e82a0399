//! A peer version found unable to run on a machine and rolled back there: the fact the
//! operator must see (issue 16, part 3). The machine's own record carries its marks
//! ([`crate::MachineRecord::bad_versions`]); zone aggregates count them per version and keep a
//! sample of them ([`crate::Aggregate::bad_versions`], [`crate::Aggregate::bad_sample`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Version;

/// Marks a record carries at most: the newest (older ones are dropped). A record with more is
/// not plausible and is ignored.
pub const MAX_BAD_VERSIONS: usize = 4;

/// Marks a zone's aggregate names at most (first in tree order).
pub const BAD_SAMPLE: usize = 4;

/// Why a version was marked bad on a machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BadReason {
    /// Its peer binary exited with this code as it was started.
    Exited { code: i32 },
    /// Its peer binary could not be started (killed by a signal, or no exit code known).
    NotStarted,
    /// It ran, but did not exchange with any other peer within `within_ms` milliseconds of
    /// the upgrade (the trial of a self-upgrade).
    NotRejoined { within_ms: u64 },
}

impl fmt::Display for BadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadReason::Exited { code } => write!(f, "exited with code {code} at start"),
            BadReason::NotStarted => write!(f, "could not be started"),
            BadReason::NotRejoined { within_ms } => write!(
                f,
                "did not rejoin the cluster within {}",
                humantime::format_duration(std::time::Duration::from_millis(*within_ms))
            ),
        }
    }
}

/// One version marked bad on one machine: which, why, and when (milliseconds since the Unix
/// epoch by that machine's clock; virtual in the simulator).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BadVersion {
    pub version: Version,
    pub reason: BadReason,
    pub at_ms: u64,
}

/// A mark as a zone's aggregate names it: on which machine (its index in the membership list
/// the gossip carrying it names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BadMark {
    pub machine: u32,
    pub bad: BadVersion,
}

/// Add `mark` to a machine's marks: a version is marked once (the newest mark wins), and only
/// the [`MAX_BAD_VERSIONS`] newest are kept. The list stays sorted by version.
pub fn note_bad(marks: &mut Vec<BadVersion>, mark: BadVersion) {
    marks.retain(|m| m.version != mark.version);
    marks.push(mark);
    if marks.len() > MAX_BAD_VERSIONS {
        marks.sort_by_key(|m| std::cmp::Reverse(m.at_ms));
        marks.truncate(MAX_BAD_VERSIONS);
    }
    marks.sort_by_key(|m| m.version);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(v: u32, at_ms: u64) -> BadVersion {
        BadVersion {
            version: Version::new(0, v, 0),
            reason: BadReason::Exited { code: 3 },
            at_ms,
        }
    }

    #[test]
    fn a_version_is_marked_once_and_only_the_newest_marks_stay() {
        let mut marks = Vec::new();
        note_bad(&mut marks, mark(5, 10));
        note_bad(&mut marks, mark(5, 20));
        assert_eq!(marks, [mark(5, 20)]);
        for v in 1..=5 {
            note_bad(&mut marks, mark(v, 100 + u64::from(v)));
        }
        assert_eq!(marks.len(), MAX_BAD_VERSIONS);
        let versions: Vec<_> = marks.iter().map(|m| m.version.minor).collect();
        assert_eq!(
            versions,
            [2, 3, 4, 5],
            "the oldest mark (0.1.0) was dropped"
        );
    }

    #[test]
    fn reasons_read_as_words() {
        assert_eq!(
            BadReason::Exited { code: 3 }.to_string(),
            "exited with code 3 at start"
        );
        assert_eq!(
            BadReason::NotRejoined { within_ms: 30_000 }.to_string(),
            "did not rejoin the cluster within 30s"
        );
    }
}
