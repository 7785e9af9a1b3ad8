//! A route: transports in failover order, each behind a circuit breaker.

use std::sync::Arc;

use epistle_core::clock::SharedClock;

use crate::circuit::CircuitBreaker;
use crate::transport::{Delivery, Envelope, SessionError, Transport};

pub struct Route {
    hops: Vec<(Arc<dyn Transport>, CircuitBreaker)>,
    clock: SharedClock,
}

/// What the route did with a message.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The transport that took the session (or the last one tried).
    pub transport: String,
    pub deliveries: Vec<Delivery>,
}

impl Route {
    /// `threshold` session failures in a row open a transport's circuit for
    /// `cooldown_ms`.
    pub fn new(transports: Vec<Arc<dyn Transport>>, threshold: u32, cooldown_ms: i64, clock: SharedClock) -> Self {
        let hops = transports.into_iter().map(|t| (t, CircuitBreaker::new(threshold, cooldown_ms))).collect();
        Self { hops, clock }
    }

    pub fn transport_names(&self) -> Vec<String> {
        self.hops.iter().map(|(t, _)| t.name().to_string()).collect()
    }

    /// Circuit state per transport (for metrics).
    pub fn circuits(&self) -> Vec<(String, bool)> {
        self.hops.iter().map(|(t, c)| (t.name().to_string(), c.is_open())).collect()
    }

    /// Tries each transport in order until one takes the session. When none
    /// can, every recipient gets a transient outcome naming why.
    pub async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Routed {
        let mut reasons = Vec::new();
        for (transport, circuit) in &self.hops {
            if !circuit.allow(self.clock.now_ms()) {
                reasons.push(format!("{}: circuit open after repeated failures", transport.name()));
                continue;
            }
            match transport.send(envelope, raw).await {
                Ok(deliveries) => {
                    circuit.success();
                    return Routed { transport: transport.name().to_string(), deliveries };
                }
                Err(SessionError(why)) => {
                    tracing::warn!(transport = transport.name(), error = %why, "transport unavailable, failing over");
                    circuit.failure(self.clock.now_ms());
                    reasons.push(why);
                }
            }
        }
        let why = format!("no transport could take the message: {}", reasons.join("; "));
        let last = self.hops.last().map(|(t, _)| t.name().to_string()).unwrap_or_else(|| "none".into());
        Routed {
            transport: last,
            deliveries: envelope.rcpts.iter().map(|_| Delivery::Transient(why.clone())).collect(),
        }
    }
}
