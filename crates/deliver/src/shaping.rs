//! Message-rate limits per transport ("300/m"): a token bucket per node.
//! A send waits for a token rather than fail, so a provider's limit is
//! respected without deferring mail.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// A rate such as `300/m`: `count` messages per `per`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a rate such as 300/m, 10/s or 5000/h");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86400),
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(format!("`{s}`: a rate of zero would never send; remove the limit or raise it"));
        }
        Ok(Self { count, per })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            3600 => "h",
            _ => "d",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// Token bucket: up to `count` tokens, refilled evenly over `per`. Starts
/// with a small burst (a tenth of the count, at least one) so a fresh start
/// does not fire a whole minute's worth at once.
pub struct RateLimiter {
    pub rate: Rate,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(rate: Rate) -> Self {
        let start = (rate.count as f64 / 10.0).max(1.0);
        Self { rate, state: Mutex::new((start, Instant::now())) }
    }

    fn per_sec(&self) -> f64 {
        self.rate.count as f64 / self.rate.per.as_secs_f64()
    }

    /// Waits until `n` messages may go.
    pub async fn acquire(&self, n: u32) {
        let n = n as f64;
        let wait = {
            let mut s = self.state.lock().await;
            let now = Instant::now();
            let refill = now.duration_since(s.1).as_secs_f64() * self.per_sec();
            s.0 = (s.0 + refill).min(self.rate.count as f64);
            s.1 = now;
            s.0 -= n;
            if s.0 >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-s.0 / self.per_sec()) }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        assert_eq!("300/m".parse::<Rate>().unwrap(), Rate { count: 300, per: Duration::from_secs(60) });
        assert_eq!("10/s".parse::<Rate>().unwrap().to_string(), "10/s");
        assert!("fast".parse::<Rate>().is_err());
        assert!("0/m".parse::<Rate>().is_err());
        assert!("10/week".parse::<Rate>().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn holds_the_rate() {
        // Virtual time: sleeps advance the clock, nothing waits for real.
        let l = RateLimiter::new("60/m".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..66 {
            l.acquire(1).await;
        }
        let took = t0.elapsed();
        // 6 tokens at start, then one a second: 60 more take 60 s.
        assert!(took >= Duration::from_secs(59) && took <= Duration::from_secs(61), "{took:?}");
    }
}
