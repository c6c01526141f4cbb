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

/// A deadline no call reaches (a hundred years), for bounds too large to add to a clock.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// One attempt of a call: its 1-based number and when it must be over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// When everything the attempt does must be over.
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
    /// What went wrong.
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
    // Bounds a user may set to centuries: saturate instead of overflowing the clock.
    let later = |t: Instant, d: Duration| t.checked_add(d).unwrap_or(t + FAR_FUTURE);
    let last_deadline = later(later(start, policy.max_total), attempt_limit);
    let max_attempts = policy.max_attempts.max(1);
    let mut n = 1;
    loop {
        let deadline = later(clock.now(), attempt_limit).min(last_deadline);
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
mod tests;
