//! Routes: which transports, in failover order, take a message. Each
//! transport is a [`Hop`] with its circuit breaker, rate limit and price;
//! hops are shared by every route that names them.

use std::sync::Arc;

use epistle_core::clock::SharedClock;

use crate::circuit::CircuitBreaker;
use crate::shaping::RateLimiter;
use crate::transport::{Delivery, Envelope, SessionError, Transport};

/// One transport with what Epistle keeps about it.
pub struct Hop {
    pub transport: Arc<dyn Transport>,
    /// `smtp`, `capture`, … (for `GET /v1/transports`).
    pub kind: String,
    pub circuit: CircuitBreaker,
    pub limiter: Option<RateLimiter>,
    /// Price per recipient handed over, in millionths of a US dollar.
    pub cost_micros: i64,
    pub connections: usize,
}

impl Hop {
    pub fn new(transport: Arc<dyn Transport>, kind: &str, threshold: u32, cooldown_ms: i64) -> Self {
        Self {
            transport,
            kind: kind.into(),
            circuit: CircuitBreaker::new(threshold, cooldown_ms),
            limiter: None,
            cost_micros: 0,
            connections: 0,
        }
    }

    pub fn name(&self) -> &str {
        self.transport.name()
    }
}

pub struct Route {
    hops: Vec<Arc<Hop>>,
    clock: SharedClock,
}

/// What the route did with a message.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The transport that took the session (or the last one tried).
    pub transport: String,
    pub deliveries: Vec<Delivery>,
    /// Price per recipient of the transport that took it (micro-USD).
    pub cost_micros: i64,
}

impl Route {
    pub fn from_hops(hops: Vec<Arc<Hop>>, clock: SharedClock) -> Self {
        Self { hops, clock }
    }

    /// A route over fresh hops: `threshold` session failures in a row open
    /// a transport's circuit for `cooldown_ms`.
    pub fn new(transports: Vec<Arc<dyn Transport>>, threshold: u32, cooldown_ms: i64, clock: SharedClock) -> Self {
        let hops = transports.into_iter().map(|t| Arc::new(Hop::new(t, "custom", threshold, cooldown_ms))).collect();
        Self { hops, clock }
    }

    /// Tries each transport in order until one takes the session. When none
    /// can, every recipient gets a transient outcome naming why.
    pub async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Routed {
        let mut reasons = Vec::new();
        for hop in &self.hops {
            if !hop.circuit.allow(self.clock.now_ms()) {
                reasons.push(format!("{}: circuit open after repeated failures", hop.name()));
                continue;
            }
            if let Some(l) = &hop.limiter {
                l.acquire(envelope.rcpts.len().max(1) as u32).await;
            }
            match hop.transport.send(envelope, raw).await {
                Ok(mut deliveries) => {
                    hop.circuit.success();
                    if !reasons.is_empty() {
                        // Keep why the earlier transports were passed over.
                        let note = format!(" [failed over: {}]", reasons.join("; "));
                        for d in &mut deliveries {
                            match d {
                                Delivery::Sent(r) | Delivery::Transient(r) | Delivery::Permanent(r) => {
                                    r.push_str(&note)
                                }
                            }
                        }
                    }
                    return Routed { transport: hop.name().to_string(), deliveries, cost_micros: hop.cost_micros };
                }
                Err(SessionError(why)) => {
                    tracing::warn!(transport = hop.name(), error = %why, "transport unavailable, failing over");
                    hop.circuit.failure(self.clock.now_ms());
                    reasons.push(why);
                }
            }
        }
        let why = format!("no transport could take the message: {}", reasons.join("; "));
        let last = self.hops.last().map(|h| h.name().to_string()).unwrap_or_else(|| "none".into());
        Routed {
            transport: last,
            deliveries: envelope.rcpts.iter().map(|_| Delivery::Transient(why.clone())).collect(),
            cost_micros: 0,
        }
    }
}

/// What a route may match on; every given field must match.
#[derive(Debug, Clone, Default)]
pub struct RouteMatch {
    pub stream: Option<String>,
    pub sender_domain: Option<String>,
    pub tag: Option<String>,
}

impl RouteMatch {
    fn matches(&self, stream: &str, sender_domain: &str, tags: &[String]) -> bool {
        self.stream.as_deref().is_none_or(|s| s == stream)
            && self.sender_domain.as_deref().is_none_or(|d| d.eq_ignore_ascii_case(sender_domain))
            && self.tag.as_deref().is_none_or(|t| tags.iter().any(|x| x == t))
    }
}

/// The routes of the configuration: the first that matches wins; with
/// none matching, the default route (every transport, in order).
pub struct Router {
    pub hops: Vec<Arc<Hop>>,
    rules: Vec<(RouteMatch, Arc<Route>)>,
    default: Arc<Route>,
}

impl Router {
    pub fn new(hops: Vec<Arc<Hop>>, rules: Vec<(RouteMatch, Vec<Arc<Hop>>)>, clock: SharedClock) -> Self {
        let default = Arc::new(Route::from_hops(hops.clone(), clock.clone()));
        let rules = rules.into_iter().map(|(m, h)| (m, Arc::new(Route::from_hops(h, clock.clone())))).collect();
        Self { hops, rules, default }
    }

    /// One route for everything (tests, simple setups).
    pub fn single(route: Route) -> Self {
        let hops = route.hops.clone();
        Self { hops, rules: Vec::new(), default: Arc::new(route) }
    }

    pub fn select(&self, stream: &str, sender_domain: &str, tags: &[String]) -> &Arc<Route> {
        self.rules.iter().find(|(m, _)| m.matches(stream, sender_domain, tags)).map(|(_, r)| r).unwrap_or(&self.default)
    }

    pub fn transport_names(&self) -> Vec<String> {
        self.hops.iter().map(|h| h.name().to_string()).collect()
    }

    /// Circuit state per transport (for metrics).
    pub fn circuits(&self) -> Vec<(String, bool)> {
        self.hops.iter().map(|h| (h.name().to_string(), h.circuit.is_open())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_wins() {
        let m = |stream: Option<&str>, dom: Option<&str>, tag: Option<&str>| RouteMatch {
            stream: stream.map(Into::into),
            sender_domain: dom.map(Into::into),
            tag: tag.map(Into::into),
        };
        assert!(m(Some("broadcast"), None, None).matches("broadcast", "x.example", &[]));
        assert!(!m(Some("broadcast"), None, None).matches("transactional", "x.example", &[]));
        assert!(m(None, Some("Shop.Example"), None).matches("transactional", "shop.example", &[]));
        assert!(m(None, None, Some("invoice")).matches("transactional", "a.example", &["invoice".into()]));
        assert!(!m(Some("transactional"), None, Some("invoice")).matches("transactional", "a.example", &[]));
        assert!(m(None, None, None).matches("anything", "any.example", &[]));
    }
}
