//! A circuit breaker per transport: after `threshold` session failures in a
//! row the transport is skipped for `cooldown`, then one probe is let
//! through; success closes the circuit, failure opens it again.

use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: i64,
    },
    /// One probe is in flight.
    HalfOpen,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    state: Mutex<State>,
    threshold: u32,
    cooldown_ms: i64,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown_ms: i64) -> Self {
        Self { state: Mutex::new(State::Closed { failures: 0 }), threshold: threshold.max(1), cooldown_ms }
    }

    /// May a session be tried now? In the open state after the cooldown,
    /// exactly one caller gets `true` (the probe).
    pub fn allow(&self, now: i64) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *s {
            State::Closed { .. } => true,
            State::Open { until } if now >= until => {
                *s = State::HalfOpen;
                true
            }
            State::Open { .. } | State::HalfOpen => false,
        }
    }

    pub fn success(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = State::Closed { failures: 0 };
    }

    pub fn failure(&self, now: i64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = match *s {
            State::Closed { failures } if failures + 1 < self.threshold => State::Closed { failures: failures + 1 },
            _ => State::Open { until: now + self.cooldown_ms },
        };
    }

    pub fn is_open(&self) -> bool {
        !matches!(*self.state.lock().unwrap_or_else(|e| e.into_inner()), State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_once() {
        let cb = CircuitBreaker::new(3, 1000);
        cb.failure(0);
        cb.failure(0);
        assert!(cb.allow(0), "still closed after two failures");
        cb.failure(0);
        assert!(!cb.allow(10), "open after the third");
        assert!(!cb.allow(999));
        assert!(cb.allow(1000), "the probe");
        assert!(!cb.allow(1001), "only one probe at a time");
        cb.failure(1001);
        assert!(!cb.allow(1500));
        assert!(cb.allow(2001));
        cb.success();
        assert!(cb.allow(2002) && cb.allow(2003));
        assert!(!cb.is_open());
    }
}
