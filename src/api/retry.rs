//! Retries of transient failures: bounded in attempts *and* in total time, with jittered
//! exponential backoff, and `Retry-After` honoured when the server sends it.
//!
//! The hard part is deciding what may be retried, which is the caller's job: an attempt reports a
//! [`Failure`] that says whether a retry may help (429, 5xx, connection errors, timeouts, resets,
//! bodies shorter than announced) and the delay the server asked for. Every Media API call may be
//! repeated safely: list and get read, delete of a missing name succeeds, and put overwrites
//! (idempotent), so a put whose answer was lost is simply sent again.
//!
//! Timing: before retry `n` (1-based) we wait `base/2 + rand(0..=base/2)` with
//! `base = min(max_backoff, initial_backoff * 2^(n-1))` ("equal jitter": always some wait, never
//! more than the cap, and clients that failed together spread out). A `Retry-After` replaces that
//! wait. The time bound governs, not the number of attempts: retries go on while `max_total` has
//! not passed since the first attempt, so an outage shorter than that is never seen by the
//! caller. Each attempt is handed a deadline ([`Attempt::deadline`]): its own limit, and never
//! later than `max_total` plus that limit after the call began. Everything an attempt does (the
//! token request included) must end by it, so a whole call, however the server fails (errors,
//! stalls, trickling bodies), lasts at most `max_total` plus one attempt's limit.

use std::time::{Duration, Instant, SystemTime};

use rand::Rng;

use super::ApiError;

/// How hard to try before giving up on a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry); by default unbounded, so that
    /// `max_total` alone decides.
    pub max_attempts: u32,
    /// The wait before the first retry (before jitter); doubles each retry.
    pub initial_backoff: Duration,
    /// The largest wait between two attempts (before jitter; `Retry-After` may ask for more).
    pub max_backoff: Duration,
    /// No retry starts later than this after the first attempt began.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: u32::MAX,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_total: Duration::from_secs(30),
        }
    }
}

/// One attempt of a call: its 1-based number and when it must be over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub number: u32,
    pub deadline: Instant,
}

impl Attempt {
    /// What remains of this attempt's time (at least a millisecond, so it can be a timeout).
    pub fn remaining(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The un-jittered wait before retry number `retry` (1 for the first retry).
    pub fn base_backoff(&self, retry: u32) -> Duration {
        let shift = retry.saturating_sub(1).min(31);
        self.initial_backoff
            .checked_mul(1u32 << shift)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }

    /// The jittered wait before retry number `retry`: between half the base and the base.
    pub fn backoff(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let base = self.base_backoff(retry);
        let half = base / 2;
        let spread = (base - half).as_nanos().min(u64::MAX as u128) as u64;
        half + Duration::from_nanos(rng.random_range(0..=spread))
    }
}

/// Why one attempt failed, and whether another may succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub error: ApiError,
    /// A retry may succeed (429, 5xx, network failures, short bodies).
    pub retryable: bool,
    /// The wait the server asked for (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure no retry can fix.
    pub fn fatal(error: ApiError) -> Self {
        Failure {
            error,
            retryable: false,
            retry_after: None,
        }
    }

    /// A failure worth another attempt.
    pub fn transient(error: ApiError) -> Self {
        Failure {
            error,
            retryable: true,
            retry_after: None,
        }
    }
}

impl From<ApiError> for Failure {
    /// Retryable exactly when [`ApiError::is_transient`] says so.
    fn from(error: ApiError) -> Self {
        Failure {
            retryable: error.is_transient(),
            error,
            retry_after: None,
        }
    }
}

/// The value of a `Retry-After` header: delay-seconds, or an HTTP date (a date in the past is
/// zero). `None` when it is neither.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    parse_retry_after_at(value, SystemTime::now())
}

fn parse_retry_after_at(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long numbers saturate; the caller caps the wait by what remains anyway.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Time, so that tests can run the retry loop without sleeping.
pub(crate) trait Clock {
    fn now(&mut self) -> Instant;
    fn sleep(&mut self, d: Duration);
}

/// The real clock.
pub(crate) struct RealClock;

impl Clock for RealClock {
    fn now(&mut self) -> Instant {
        Instant::now()
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// Run `attempt` until it succeeds, fails for good, or the policy is spent. Each attempt may take
/// `attempt_limit` (its [`Attempt::deadline`] says until when). `what` names the call in logs
/// ("get a/b.png"). The final error says how many attempts were made when there was more than one.
pub fn run<T>(
    policy: &RetryPolicy,
    what: &str,
    attempt_limit: Duration,
    attempt: impl FnMut(Attempt) -> Result<T, Failure>,
) -> Result<T, ApiError> {
    run_with(
        policy,
        what,
        attempt_limit,
        attempt,
        &mut RealClock,
        &mut rand::rng(),
    )
}

pub(crate) fn run_with<T>(
    policy: &RetryPolicy,
    what: &str,
    attempt_limit: Duration,
    mut attempt: impl FnMut(Attempt) -> Result<T, Failure>,
    clock: &mut impl Clock,
    rng: &mut impl Rng,
) -> Result<T, ApiError> {
    let start = clock.now();
    let last_deadline = start + policy.max_total + attempt_limit;
    let max_attempts = policy.max_attempts.max(1);
    let mut n = 1;
    loop {
        let deadline = (clock.now() + attempt_limit).min(last_deadline);
        let failure = match attempt(Attempt {
            number: n,
            deadline,
        }) {
            Ok(v) => return Ok(v),
            Err(f) => f,
        };
        if !failure.retryable {
            return Err(failure.error);
        }
        if n >= max_attempts {
            log::debug!(
                "{what}: attempt {n} failed ({}); no attempts left; giving up",
                failure.error
            );
            return Err(gave_up(failure.error, n));
        }
        let elapsed = clock.now().saturating_duration_since(start);
        let remaining = policy.max_total.saturating_sub(elapsed);
        if remaining.is_zero() {
            log::debug!(
                "{what}: attempt {n} failed ({}); no time left of {:?}; giving up",
                failure.error,
                policy.max_total
            );
            return Err(gave_up(failure.error, n));
        }
        let wanted = match failure.retry_after {
            Some(after) => after,
            None => policy.backoff(n, rng),
        };
        let delay = wanted.min(remaining);
        log::debug!(
            "{what}: attempt {n} failed ({}); retrying in {delay:?}{}",
            failure.error,
            if failure.retry_after.is_some() {
                " as Retry-After asked"
            } else {
                ""
            }
        );
        clock.sleep(delay);
        n += 1;
    }
}

/// `error`, saying that it is the last of `tries` attempts.
fn gave_up(error: ApiError, tries: u32) -> ApiError {
    if tries <= 1 {
        return error;
    }
    let note = format!("gave up after {tries} tries");
    match error {
        ApiError::Transport(m) => ApiError::Transport(format!("{m} ({note})")),
        ApiError::Malformed(m) => ApiError::Malformed(format!("{m} ({note})")),
        ApiError::Status {
            status,
            kind,
            description,
        } => ApiError::Status {
            status,
            kind,
            description: Some(match description {
                Some(d) => format!("{d} ({note})"),
                None => note,
            }),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// A clock that only moves when slept on, recording each sleep.
    struct FakeClock {
        now: Instant,
        slept: Vec<Duration>,
    }

    impl FakeClock {
        fn new() -> Self {
            FakeClock {
                now: Instant::now(),
                slept: Vec::new(),
            }
        }
    }

    impl Clock for FakeClock {
        fn now(&mut self) -> Instant {
            self.now
        }
        fn sleep(&mut self, d: Duration) {
            self.slept.push(d);
            self.now += d;
        }
    }

    /// The time one attempt may take in these tests.
    const LIMIT: Duration = Duration::from_secs(3);

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_total: Duration::from_secs(30),
        }
    }

    fn unavailable() -> ApiError {
        ApiError::Status {
            status: 503,
            kind: None,
            description: None,
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts, u32::MAX, "the time bound governs");
        assert_eq!(p.initial_backoff, Duration::from_millis(100));
        assert_eq!(p.max_backoff, Duration::from_secs(2));
        assert_eq!(p.max_total, Duration::from_secs(30));
        assert_eq!(RetryPolicy::none().max_attempts, 1);
    }

    #[test]
    fn base_backoff_doubles_then_caps() {
        let p = policy();
        let ms = |n| p.base_backoff(n).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5), ms(6)],
            [100, 200, 400, 800, 1000, 1000]
        );
        // No overflow however many retries.
        assert_eq!(p.base_backoff(u32::MAX), Duration::from_secs(1));
        let huge = RetryPolicy {
            initial_backoff: Duration::from_secs(u64::MAX / 4),
            max_backoff: Duration::from_secs(7),
            ..p
        };
        assert_eq!(huge.base_backoff(40), Duration::from_secs(7));
    }

    #[test]
    fn jitter_stays_between_half_and_full_base_and_varies() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(7);
        for n in 1..=8 {
            let base = p.base_backoff(n);
            let mut seen = std::collections::HashSet::new();
            for _ in 0..200 {
                let d = p.backoff(n, &mut rng);
                assert!(
                    d >= base / 2 && d <= base,
                    "retry {n}: {d:?} vs base {base:?}"
                );
                seen.insert(d);
            }
            assert!(seen.len() > 10, "jitter should spread the waits");
        }
        let zero = RetryPolicy {
            initial_backoff: Duration::ZERO,
            ..p
        };
        assert_eq!(zero.backoff(3, &mut rng), Duration::ZERO);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", " ", "-1", "1.5", "abc", "1s", "+3", "Tomorrow"] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
        }
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after_at("Wed, 21 Oct 2015 07:28:05 GMT", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_retry_after_at("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn succeeds_after_transient_failures_with_growing_waits() {
        let mut clock = FakeClock::new();
        let mut rng = StdRng::seed_from_u64(1);
        let mut calls = Vec::new();
        let r = run_with(
            &policy(),
            "get x",
            LIMIT,
            |a| {
                let n = a.number;
                calls.push(n);
                if n < 4 {
                    Err(Failure::from(unavailable()))
                } else {
                    Ok(n)
                }
            },
            &mut clock,
            &mut rng,
        );
        assert_eq!(r, Ok(4));
        assert_eq!(calls, [1, 2, 3, 4]);
        assert_eq!(clock.slept.len(), 3);
        for (i, d) in clock.slept.iter().enumerate() {
            let base = policy().base_backoff(i as u32 + 1);
            assert!(*d >= base / 2 && *d <= base);
        }
    }

    #[test]
    fn fatal_failures_are_not_retried() {
        let mut clock = FakeClock::new();
        let mut calls = 0;
        let r: Result<(), _> = run_with(
            &policy(),
            "get x",
            LIMIT,
            |_| {
                calls += 1;
                Err(Failure::from(ApiError::NotFound))
            },
            &mut clock,
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(r, Err(ApiError::NotFound));
        assert_eq!(calls, 1);
        assert!(clock.slept.is_empty());
    }

    #[test]
    fn attempts_are_bounded_and_the_error_says_how_many() {
        let mut clock = FakeClock::new();
        let mut calls = 0;
        let r: Result<(), _> = run_with(
            &policy(),
            "put x",
            LIMIT,
            |_| {
                calls += 1;
                Err(Failure::from(unavailable()))
            },
            &mut clock,
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(calls, 6);
        assert_eq!(clock.slept.len(), 5);
        let err = r.unwrap_err();
        assert!(matches!(err, ApiError::Status { status: 503, .. }));
        assert!(err.to_string().contains("gave up after 6 tries"), "{err}");

        let r: Result<(), _> = run_with(
            &policy(),
            "list",
            LIMIT,
            |_| Err(Failure::transient(ApiError::Transport("reset".into()))),
            &mut FakeClock::new(),
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(
            r,
            Err(ApiError::Transport("reset (gave up after 6 tries)".into()))
        );
    }

    #[test]
    fn total_time_is_bounded() {
        let p = RetryPolicy {
            max_attempts: 1000,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(4),
            max_total: Duration::from_secs(10),
        };
        let mut clock = FakeClock::new();
        let start = clock.now;
        let mut calls = 0;
        let r: Result<(), _> = run_with(
            &p,
            "get x",
            LIMIT,
            |_| {
                calls += 1;
                Err(Failure::from(unavailable()))
            },
            &mut clock,
            &mut StdRng::seed_from_u64(3),
        );
        assert!(r.is_err());
        assert!(calls < 20, "{calls} attempts");
        assert_eq!(clock.now - start, Duration::from_secs(10));
    }

    #[test]
    fn retry_after_replaces_the_backoff_and_is_capped_by_what_remains() {
        let p = RetryPolicy {
            max_total: Duration::from_secs(5),
            ..policy()
        };
        let mut clock = FakeClock::new();
        let r = run_with(
            &p,
            "list",
            LIMIT,
            |a| match a.number {
                1 => Err(Failure {
                    error: unavailable(),
                    retryable: true,
                    retry_after: Some(Duration::from_secs(2)),
                }),
                2 => Err(Failure {
                    error: unavailable(),
                    retryable: true,
                    retry_after: Some(Duration::from_secs(60)),
                }),
                _ => Ok(a.number),
            },
            &mut clock,
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(r, Ok(3));
        assert_eq!(
            clock.slept,
            [Duration::from_secs(2), Duration::from_secs(3)]
        );
    }

    #[test]
    fn a_single_attempt_policy_reports_the_bare_error() {
        let r: Result<(), _> = run_with(
            &RetryPolicy::none(),
            "get x",
            LIMIT,
            |_| Err(Failure::from(unavailable())),
            &mut FakeClock::new(),
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(r, Err(unavailable()));
    }

    #[test]
    fn the_default_policy_retries_until_the_time_is_spent() {
        // An outage of 5 s with 120 s to spend: the call succeeds once the server is back.
        let p = RetryPolicy {
            max_total: Duration::from_secs(120),
            ..RetryPolicy::default()
        };
        let mut clock = FakeClock::new();
        let start = clock.now;
        let r = run_with(
            &p,
            "put x",
            LIMIT,
            |a| {
                if a.deadline.saturating_duration_since(start) < Duration::from_secs(5) + LIMIT {
                    Err(Failure::from(unavailable()))
                } else {
                    Ok(a.number)
                }
            },
            &mut clock,
            &mut StdRng::seed_from_u64(5),
        );
        assert!(r.is_ok(), "{r:?}");
        assert!(clock.slept.iter().all(|d| *d <= Duration::from_secs(2)));
    }

    #[test]
    fn attempts_that_stall_end_within_the_total_plus_one_attempt() {
        // Every attempt uses all of its time (a server that never answers).
        let p = RetryPolicy {
            max_total: Duration::from_secs(4),
            ..RetryPolicy::default()
        };
        let clock = std::cell::RefCell::new(FakeClock::new());
        let start = clock.borrow().now;
        let mut deadlines = Vec::new();
        let r: Result<(), _> = run_with(
            &p,
            "get x",
            LIMIT,
            |a| {
                deadlines.push(a.deadline);
                let mut c = clock.borrow_mut();
                let now = c.now;
                c.now = now.max(a.deadline);
                Err(Failure::transient(ApiError::Transport("timed out".into())))
            },
            &mut Shared(&clock),
            &mut StdRng::seed_from_u64(9),
        );
        assert!(r.is_err());
        let end = clock.borrow().now;
        assert!(
            end - start <= Duration::from_secs(4) + LIMIT,
            "{:?}",
            end - start
        );
        assert!(deadlines.len() >= 2, "it was retried");
        assert!(deadlines
            .iter()
            .all(|d| *d - start <= Duration::from_secs(4) + LIMIT));
    }

    /// A [`FakeClock`] that the attempts can move too.
    struct Shared<'a>(&'a std::cell::RefCell<FakeClock>);

    impl Clock for Shared<'_> {
        fn now(&mut self) -> Instant {
            self.0.borrow_mut().now()
        }
        fn sleep(&mut self, d: Duration) {
            self.0.borrow_mut().sleep(d)
        }
    }
}
