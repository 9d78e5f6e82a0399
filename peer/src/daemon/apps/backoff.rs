//! Crash-loop protection, as in systemd and Kubernetes: exponential backoff with a cap, reset
//! after a healthy run, and `failed` after N quick deaths in a row.

use smon_proto::BackoffPolicy;

/// What to do after the application died by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Start it again after this many milliseconds.
    RestartAfter(u64),
    /// Too many quick deaths in a row: leave it stopped until the operator acts.
    Fail,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    policy: BackoffPolicy,
    quick_deaths: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy, quick_deaths: u32) -> Self {
        Self {
            policy,
            quick_deaths,
        }
    }

    pub fn quick_deaths(&self) -> u32 {
        self.quick_deaths
    }

    /// The application died after running `ran_ms`. A run of at least `reset_after` was
    /// healthy: the count starts over and it is restarted at once. Otherwise the k-th quick
    /// death in a row waits `initial × 2^(k-1)` (at most `max`), and the `fail_after`-th fails.
    pub fn on_death(&mut self, ran_ms: u64) -> Verdict {
        if ran_ms >= self.policy.reset_after_ms {
            self.quick_deaths = 0;
            return Verdict::RestartAfter(0);
        }
        self.quick_deaths += 1;
        if self.quick_deaths >= self.policy.fail_after {
            return Verdict::Fail;
        }
        let shift = (self.quick_deaths - 1).min(40);
        let delay = self.policy.initial_ms.saturating_mul(1 << shift);
        Verdict::RestartAfter(delay.min(self.policy.max_ms))
    }

    /// The operator acted (a new desired state or version): start over.
    pub fn reset(&mut self) {
        self.quick_deaths = 0;
    }

    pub fn set_policy(&mut self, policy: BackoffPolicy) {
        self.policy = policy;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial_ms: 1_000,
            max_ms: 5_000,
            reset_after_ms: 30_000,
            fail_after: 6,
        }
    }

    #[test]
    fn doubles_up_to_the_cap_then_fails() {
        let mut b = Backoff::new(policy(), 0);
        let verdicts: Vec<_> = (0..6).map(|_| b.on_death(100)).collect();
        assert_eq!(
            verdicts,
            vec![
                Verdict::RestartAfter(1_000),
                Verdict::RestartAfter(2_000),
                Verdict::RestartAfter(4_000),
                Verdict::RestartAfter(5_000),
                Verdict::RestartAfter(5_000),
                Verdict::Fail,
            ]
        );
    }

    #[test]
    fn a_healthy_run_resets_the_count() {
        let mut b = Backoff::new(policy(), 0);
        assert_eq!(b.on_death(10), Verdict::RestartAfter(1_000));
        assert_eq!(b.on_death(10), Verdict::RestartAfter(2_000));
        assert_eq!(b.on_death(30_000), Verdict::RestartAfter(0));
        assert_eq!(b.quick_deaths(), 0);
        assert_eq!(b.on_death(10), Verdict::RestartAfter(1_000));
        b.reset();
        assert_eq!(b.on_death(10), Verdict::RestartAfter(1_000));
    }

    #[test]
    fn fail_after_one_fails_at_the_first_quick_death_and_huge_counts_do_not_overflow() {
        let mut b = Backoff::new(
            BackoffPolicy {
                fail_after: 1,
                ..policy()
            },
            0,
        );
        assert_eq!(b.on_death(10), Verdict::Fail);
        let mut b = Backoff::new(
            BackoffPolicy {
                fail_after: 1000,
                max_ms: u64::MAX,
                ..policy()
            },
            0,
        );
        for _ in 0..100 {
            assert!(matches!(b.on_death(1), Verdict::RestartAfter(_)));
        }
    }
}
