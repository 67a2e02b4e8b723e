//! A circuit breaker over CRM calls: after `failures` consecutive failed calls it opens and
//! calls are skipped for `cooldown`; then exactly one trial call may go (half-open). Its
//! success closes the breaker, its failure opens it for another cooldown.
//!
//! Pure state: the caller passes the current time in, so tests never sleep.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial call is in flight since `since`.
    HalfOpen {
        since: Instant,
    },
}

#[derive(Debug, Clone)]
pub struct Breaker {
    failures_to_open: u32,
    cooldown: Duration,
    state: State,
}

impl Breaker {
    pub fn new(failures_to_open: u32, cooldown: Duration) -> Self {
        Self { failures_to_open: failures_to_open.max(1), cooldown, state: State::Closed { failures: 0 } }
    }

    /// Whether a call may go now. Admitting the trial call of a half-open breaker takes it.
    pub fn admit(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed { .. } => true,
            State::Open { until } if now >= until => self.start_trial(now),
            State::Open { .. } => false,
            // NB: a trial whose caller was cancelled never reports; after a cooldown without
            // news another trial may go, so the breaker cannot stay half-open forever.
            State::HalfOpen { since } if now >= since + self.cooldown => self.start_trial(now),
            State::HalfOpen { .. } => false,
        }
    }

    fn start_trial(&mut self, now: Instant) -> bool {
        self.state = State::HalfOpen { since: now };
        true
    }

    /// The CRM answered: whatever state, the breaker closes. True when it was open (to log).
    pub fn succeeded(&mut self) -> bool {
        let was_open = self.is_open();
        self.state = State::Closed { failures: 0 };
        was_open
    }

    /// A call failed (retries exhausted). True when this failure opened the breaker (to log).
    pub fn failed(&mut self, now: Instant) -> bool {
        let was_open = matches!(self.state, State::Open { .. });
        self.state = match self.state {
            State::Closed { failures } if failures + 1 < self.failures_to_open => {
                State::Closed { failures: failures + 1 }
            }
            // A late failure of a call admitted before the breaker opened keeps the cooldown.
            State::Open { until } => State::Open { until },
            State::Closed { .. } | State::HalfOpen { .. } => State::Open { until: now + self.cooldown },
        };
        !was_open && self.is_open()
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(30);

    fn failed_times(breaker: &mut Breaker, n: u32, now: Instant) {
        for _ in 0..n {
            assert!(breaker.admit(now));
            breaker.failed(now);
        }
    }

    #[test]
    fn the_breaker_stays_closed_below_the_failure_threshold() {
        let (mut breaker, now) = (Breaker::new(3, COOLDOWN), Instant::now());
        failed_times(&mut breaker, 2, now);
        assert!(breaker.admit(now) && !breaker.is_open());
    }

    #[test]
    fn a_success_resets_the_count_of_consecutive_failures() {
        let (mut breaker, now) = (Breaker::new(3, COOLDOWN), Instant::now());
        failed_times(&mut breaker, 2, now);
        breaker.succeeded();
        failed_times(&mut breaker, 2, now);
        assert!(breaker.admit(now));
    }

    #[test]
    fn the_nth_consecutive_failure_opens_the_breaker_and_calls_are_skipped() {
        let (mut breaker, now) = (Breaker::new(3, COOLDOWN), Instant::now());
        failed_times(&mut breaker, 2, now);
        assert!(breaker.admit(now) && breaker.failed(now), "the third failure opens it");
        assert!(breaker.is_open());
        assert!(!breaker.admit(now + COOLDOWN - Duration::from_millis(1)));
    }

    #[test]
    fn after_the_cooldown_exactly_one_trial_call_is_admitted() {
        let (mut breaker, now) = (Breaker::new(1, COOLDOWN), Instant::now());
        failed_times(&mut breaker, 1, now);
        let later = now + COOLDOWN;
        assert!(breaker.admit(later));
        assert!(!breaker.admit(later));
        assert!(!breaker.admit(later + Duration::from_secs(1)));
    }

    #[test]
    fn a_successful_trial_closes_the_breaker() {
        let (mut breaker, now) = (Breaker::new(1, COOLDOWN), Instant::now());
        failed_times(&mut breaker, 1, now);
        assert!(breaker.admit(now + COOLDOWN));
        breaker.succeeded();
        assert!(breaker.admit(now + COOLDOWN) && breaker.admit(now + COOLDOWN));
    }

    #[test]
    fn a_failed_trial_reopens_the_breaker_for_another_cooldown() {
        let (mut breaker, now) = (Breaker::new(1, COOLDOWN), Instant::now());
        failed_times(&mut breaker, 1, now);
        let trial = now + COOLDOWN;
        assert!(breaker.admit(trial));
        breaker.failed(trial);
        assert!(!breaker.admit(trial + COOLDOWN - Duration::from_millis(1)));
        assert!(breaker.admit(trial + COOLDOWN));
    }

    #[test]
    fn a_trial_that_never_reports_is_replaced_after_a_cooldown() {
        let (mut breaker, now) = (Breaker::new(1, COOLDOWN), Instant::now());
        failed_times(&mut breaker, 1, now);
        assert!(breaker.admit(now + COOLDOWN));
        assert!(breaker.admit(now + COOLDOWN * 2));
    }

    #[test]
    fn a_late_failure_does_not_extend_an_open_breaker() {
        let (mut breaker, now) = (Breaker::new(1, COOLDOWN), Instant::now());
        failed_times(&mut breaker, 1, now);
        breaker.failed(now + Duration::from_secs(10));
        assert!(breaker.admit(now + COOLDOWN));
    }
}
