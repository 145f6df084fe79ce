//! When to renew and when to retry, as pure functions of the time so tests can move it.

use std::time::{Duration, SystemTime};

/// The time source of the ACME manager (tests inject their own).
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Without renewal information from the CA: when a third of the lifetime remains.
pub fn default_renewal(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    not_after - lifetime / 3
}

/// A time inside the CA's suggested window (RFC 9773 §4.2), spread by `unit` in [0, 1) so many
/// edges renewing the same certificate do not all come at once. A window in the past means now.
pub fn in_window(start: SystemTime, end: SystemTime, unit: f64, now: SystemTime) -> SystemTime {
    let width = end.duration_since(start).unwrap_or_default();
    let chosen = start + width.mul_f64(unit.clamp(0.0, 1.0));
    chosen.max(now).min(end.max(now))
}

/// The wait after the `failures`-th consecutive failure: `initial` doubled per failure, at most
/// `max`, less up to a fifth at random (`unit` in [0, 1)) so retries spread out.
pub fn backoff(failures: u32, initial: Duration, max: Duration, unit: f64) -> Duration {
    let doubled = initial.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let capped = doubled.min(max);
    capped - capped.mul_f64(0.2 * unit.clamp(0.0, 1.0))
}

/// A CA that says when to come back (rate limits) is not asked again before then.
pub fn retry_after_problem(detail: &str, now: SystemTime) -> Option<SystemTime> {
    // Let's Encrypt: "... retry after 2025-01-01 12:00:00 UTC: see https://..."
    let at = detail.find("retry after ")? + "retry after ".len();
    let stamp = detail.get(at..at + 19)?;
    let parsed = humantime::parse_rfc3339_weak(stamp).ok()?;
    (parsed > now).then_some(parsed)
}

/// A uniform number in [0, 1) from the operating system's generator.
pub fn random_unit() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn renewal_falls_due_with_a_third_of_the_lifetime_left() {
        // 90 days: due at day 60.
        let day = 86_400;
        assert_eq!(default_renewal(at(0), at(90 * day)), at(60 * day));
        assert_eq!(default_renewal(at(100), at(130)), at(120));
        // A broken certificate (ends before it starts) is due at its end.
        assert_eq!(default_renewal(at(50), at(10)), at(10));
    }

    #[test]
    fn the_suggested_window_is_honoured_and_spread() {
        let now = at(1_000);
        assert_eq!(in_window(at(2_000), at(3_000), 0.0, now), at(2_000));
        assert_eq!(in_window(at(2_000), at(3_000), 0.5, now), at(2_500));
        // A window already open or passed: now.
        assert_eq!(in_window(at(500), at(900), 0.3, now), now);
        assert_eq!(in_window(at(900), at(1_100), 0.0, now), now);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_below() {
        let (i, m) = (Duration::from_secs(60), Duration::from_secs(3_600));
        assert_eq!(backoff(1, i, m, 0.0), Duration::from_secs(60));
        assert_eq!(backoff(2, i, m, 0.0), Duration::from_secs(120));
        assert_eq!(backoff(4, i, m, 0.0), Duration::from_secs(480));
        assert_eq!(backoff(7, i, m, 0.0), Duration::from_secs(3_600));
        assert_eq!(backoff(500, i, m, 0.0), Duration::from_secs(3_600));
        assert_eq!(backoff(1, i, m, 0.5), Duration::from_secs(54));
        assert!(backoff(3, i, m, 0.999) > Duration::from_secs(192));
    }

    #[test]
    fn rate_limit_problems_name_when_to_come_back() {
        let now = at(1_700_000_000);
        let d = "too many certificates (5) already issued for this exact set of identifiers in \
                 the last 168h0m0s, retry after 2030-01-02 03:04:05 UTC: see https://x";
        assert_eq!(
            retry_after_problem(d, now),
            Some(humantime::parse_rfc3339("2030-01-02T03:04:05Z").unwrap())
        );
        assert_eq!(
            retry_after_problem("retry after 2001-01-01 00:00:00 UTC", now),
            None
        );
        assert_eq!(retry_after_problem("no date here", now), None);
    }

    #[test]
    fn random_units_stay_in_range() {
        for _ in 0..100 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
