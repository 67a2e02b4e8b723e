//! A circuit breaker over CRM calls: after `failures` consecutive failed calls it opens and
//! calls are skipped for `cooldown`; then exactly one trial call may go (half-open). Its
//! success closes the breaker, its failure opens it for another cooldown.
//!
//! While closed, it also counts the calls it admitted that have not reported yet, and admits
//! another only while consecutive failures plus calls in flight stay below `failures`;
//! otherwise the caller waits until one reports. NB: without that bound, concurrent lookups
//! against a dead CRM all start before the first failure is counted, every one of them pays
//! the whole retry budget and fails, and the breaker opens only once the damage is done. With
//! it, calls whose outcome is unknown can never outnumber the failures still needed to open,
//! so the breaker opens after exactly `failures` failed calls and the calls waiting behind them
//! are skipped. The price: a healthy CRM gets at most `failures` calls at once (fewer while
//! failures accumulate), whatever the concurrency limit allows.
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

/// What a caller may do now.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Make the call, then report how it went with the ticket.
    Call(Ticket),
    /// Closed, but the calls in flight could open the breaker if they fail: ask again once
    /// one of them reported.
    Wait,
    /// Open, or its trial call is under way: skip the call.
    Skip,
}

/// An admitted call. Reporting it ([`Breaker::succeeded`], [`Breaker::failed`],
/// [`Breaker::abandoned`]) consumes it, so every admitted call reports exactly once.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub struct Ticket(());

#[derive(Debug, Clone)]
pub struct Breaker {
    failures_to_open: u32,
    cooldown: Duration,
    state: State,
    /// Admitted calls that have not reported yet, whichever state admitted them.
    in_flight: u32,
}

impl Breaker {
    pub fn new(failures_to_open: u32, cooldown: Duration) -> Self {
        Self {
            failures_to_open: failures_to_open.max(1),
            cooldown,
            state: State::Closed { failures: 0 },
            in_flight: 0,
        }
    }

    /// Whether a call may go now. Admitting the trial call of a half-open breaker takes it.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            State::Closed { failures } if failures + self.in_flight < self.failures_to_open => self.ticket(),
            State::Closed { .. } => Admission::Wait,
            State::Open { until } if now >= until => self.start_trial(now),
            State::Open { .. } => Admission::Skip,
            // NB: a trial whose caller vanished without reporting would hold the breaker
            // half-open forever; after a cooldown without news another trial may go.
            State::HalfOpen { since } if now >= since + self.cooldown => self.start_trial(now),
            State::HalfOpen { .. } => Admission::Skip,
        }
    }

    fn start_trial(&mut self, now: Instant) -> Admission {
        self.state = State::HalfOpen { since: now };
        self.ticket()
    }

    fn ticket(&mut self) -> Admission {
        self.in_flight += 1;
        Admission::Call(Ticket(()))
    }

    fn report(&mut self, _ticket: Ticket) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The CRM answered: whatever state, the breaker closes. True when it was open (to log).
    pub fn succeeded(&mut self, ticket: Ticket) -> bool {
        self.report(ticket);
        let was_open = self.is_open();
        self.state = State::Closed { failures: 0 };
        was_open
    }

    /// A call failed (retries exhausted). True when this failure opened the breaker (to log).
    pub fn failed(&mut self, ticket: Ticket, now: Instant) -> bool {
        self.report(ticket);
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

    /// A call ended without an outcome (its caller was cancelled): it no longer counts as in
    /// flight, and says nothing about the CRM.
    pub fn abandoned(&mut self, ticket: Ticket) {
        self.report(ticket);
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(30);

    fn call(breaker: &mut Breaker, now: Instant) -> Ticket {
        match breaker.admit(now) {
            Admission::Call(ticket) => ticket,
            other => panic!("expected a call, got {other:?}"),
        }
    }

    fn failed_times(breaker: &mut Breaker, n: u32, now: Instant) {
        for _ in 0..n {
            let ticket = call(breaker, now);
            breaker.failed(ticket, now);
        }
    }

    #[test]
    fn the_breaker_stays_closed_below_the_failure_threshold() {
        let (mut breaker, now) = (Breaker::new(3, COOLDOWN), Instant::now());
        failed_times(&mut breaker, 2, now);
        let _ticket = call(&mut breaker, now);
        assert!(!breaker.is_open());
    }

    #[test]
    fn a_success_resets_the_count_of_consecutive_failures() {
        let (mut breaker, now) = (Breaker::new(3, COOLDOWN), Instant::now());
        failed_times(&mut breaker, 2, now);
        let ticket = call(&mut breaker, now);
        breaker.succeeded(ticket);
        failed_times(&mut breaker, 2, now);
        let _ticket = call(&mut breaker, now);
    }

    #[test]
    fn the_nth_consecutive_failure_opens_the_breaker_and_calls_are_skipped() {
        let (mut breaker, now) = (Breaker::new(3, COOLDOWN), Instant::now());
        failed_times(&mut breaker, 2, now);
        let ticket = call(&mut breaker, now);
        assert!(breaker.failed(ticket, now), "the third failure opens it");
        assert!(breaker.is_open());
        assert_eq!(breaker.admit(now + COOLDOWN - Duration::from_millis(1)), Admission::Skip);
    }

    #[test]
    fn no_more_calls_are_in_flight_than_failures_could_open_the_breaker() {
        let (mut breaker, now) = (Breaker::new(3, COOLDOWN), Instant::now());
        let tickets: Vec<Ticket> = (0..3).map(|_| call(&mut breaker, now)).collect();
        assert_eq!(breaker.admit(now), Admission::Wait, "3 calls in flight could open it");
        let mut tickets = tickets.into_iter();
        breaker.failed(tickets.next().unwrap(), now);
        assert_eq!(breaker.admit(now), Admission::Wait, "1 failure + 2 in flight");
        breaker.failed(tickets.next().unwrap(), now);
        assert!(breaker.failed(tickets.next().unwrap(), now), "the third failure opens it");
        assert_eq!(breaker.admit(now), Admission::Skip, "the waiting calls are skipped");
    }

    #[test]
    fn fewer_calls_may_go_at_once_while_failures_accumulate() {
        let (mut breaker, now) = (Breaker::new(3, COOLDOWN), Instant::now());
        failed_times(&mut breaker, 2, now);
        let ticket = call(&mut breaker, now);
        assert_eq!(breaker.admit(now), Admission::Wait);
        breaker.succeeded(ticket);
        let _tickets: Vec<Ticket> = (0..3).map(|_| call(&mut breaker, now)).collect();
    }

    #[test]
    fn an_abandoned_call_frees_its_place_and_counts_as_no_failure() {
        let (mut breaker, now) = (Breaker::new(1, COOLDOWN), Instant::now());
        let ticket = call(&mut breaker, now);
        assert_eq!(breaker.admit(now), Admission::Wait);
        breaker.abandoned(ticket);
        let _ticket = call(&mut breaker, now);
        assert!(!breaker.is_open());
    }

    #[test]
    fn after_the_cooldown_exactly_one_trial_call_is_admitted() {
        let (mut breaker, now) = (Breaker::new(1, COOLDOWN), Instant::now());
        failed_times(&mut breaker, 1, now);
        let later = now + COOLDOWN;
        let _trial = call(&mut breaker, later);
        assert_eq!(breaker.admit(later), Admission::Skip);
        assert_eq!(breaker.admit(later + Duration::from_secs(1)), Admission::Skip);
    }

    #[test]
    fn a_successful_trial_closes_the_breaker() {
        let (mut breaker, now) = (Breaker::new(2, COOLDOWN), Instant::now());
        failed_times(&mut breaker, 2, now);
        let trial = call(&mut breaker, now + COOLDOWN);
        assert!(breaker.succeeded(trial), "it was open");
        let _tickets = [call(&mut breaker, now + COOLDOWN), call(&mut breaker, now + COOLDOWN)];
    }

    #[test]
    fn a_failed_trial_reopens_the_breaker_for_another_cooldown() {
        let (mut breaker, now) = (Breaker::new(1, COOLDOWN), Instant::now());
        failed_times(&mut breaker, 1, now);
        let trial = now + COOLDOWN;
        let ticket = call(&mut breaker, trial);
        breaker.failed(ticket, trial);
        assert_eq!(breaker.admit(trial + COOLDOWN - Duration::from_millis(1)), Admission::Skip);
        let _ticket = call(&mut breaker, trial + COOLDOWN);
    }

    #[test]
    fn a_trial_that_never_reports_is_replaced_after_a_cooldown() {
        let (mut breaker, now) = (Breaker::new(1, COOLDOWN), Instant::now());
        failed_times(&mut breaker, 1, now);
        let _lost = call(&mut breaker, now + COOLDOWN);
        let _replacement = call(&mut breaker, now + COOLDOWN * 2);
    }

    #[test]
    fn a_late_failure_does_not_extend_an_open_breaker() {
        let (mut breaker, now) = (Breaker::new(1, COOLDOWN), Instant::now());
        failed_times(&mut breaker, 1, now);
        let trial = call(&mut breaker, now + COOLDOWN);
        let replacement = call(&mut breaker, now + COOLDOWN * 2);
        breaker.failed(replacement, now + COOLDOWN * 2);
        breaker.failed(trial, now + COOLDOWN * 2 + Duration::from_secs(10));
        let _ticket = call(&mut breaker, now + COOLDOWN * 3);
    }
}
