//! When to try again: exponential backoff with jitter, up to a maximum age.
//!
//! Defaults: first retry after about 30 s, doubling each time (with jitter
//! between half and all of the delay) up to 30 min between tries, for at
//! most 24 h after the message was accepted; then the recipient is
//! `failed`.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max_delay: Duration,
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            max_delay: Duration::from_secs(30 * 60),
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The time of the next try after `attempts` failed tries (this one
    /// included), or `None` when the message is too old to go on.
    pub fn next_retry(&self, attempts: i64, now: i64, created_at: i64, rng: &mut impl Rng) -> Option<i64> {
        let deadline = created_at + self.max_age.as_millis() as i64;
        if now >= deadline {
            return None;
        }
        let exp = attempts.clamp(1, 30) - 1;
        let full =
            (self.base.as_millis() as i64).saturating_mul(1i64 << exp).min(self.max_delay.as_millis() as i64).max(1);
        let delay = rng.gen_range(full / 2..=full);
        Some((now + delay).min(deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let p = RetryPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let d1 = p.next_retry(1, 0, 0, &mut rng).unwrap();
        assert!((15_000..=30_000).contains(&d1), "{d1}");
        let d3 = p.next_retry(3, 0, 0, &mut rng).unwrap();
        assert!((60_000..=120_000).contains(&d3), "{d3}");
        let d20 = p.next_retry(20, 0, 0, &mut rng).unwrap();
        assert!((900_000..=1_800_000).contains(&d20), "{d20}");
        let spread: std::collections::HashSet<i64> =
            (0..20).map(|_| p.next_retry(2, 0, 0, &mut rng).unwrap()).collect();
        assert!(spread.len() > 5, "jitter spreads retries");
    }

    #[test]
    fn gives_up_at_max_age_and_never_schedules_past_it() {
        let p = RetryPolicy {
            base: Duration::from_secs(60),
            max_delay: Duration::from_secs(3600),
            max_age: Duration::from_secs(100),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(p.next_retry(5, 90_000, 0, &mut rng), Some(100_000));
        assert_eq!(p.next_retry(6, 100_000, 0, &mut rng), None);
    }
}
