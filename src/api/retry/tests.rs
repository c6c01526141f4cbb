//! The retry loop under a fake clock: waits, bounds, Retry-After.

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

#[test]
fn bounds_too_large_for_the_clock_do_not_overflow() {
    let p = RetryPolicy {
        max_total: Duration::MAX,
        ..RetryPolicy::none()
    };
    let r: Result<(), _> = run_with(
        &p,
        "get x",
        Duration::MAX,
        |_| Err(Failure::from(unavailable())),
        &mut FakeClock::new(),
        &mut StdRng::seed_from_u64(1),
    );
    assert!(r.is_err());
}
