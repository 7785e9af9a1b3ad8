//! Provider transports over HTTP APIs: Amazon SES v2 and Mailgun take our
//! MIME as it is (so our DKIM signature and headers survive); SendGrid v3
//! and Postmark take structured JSON, built here from our MIME (they sign
//! with the domain key configured in their own dashboards).
//!
//! One mapping of answers for all of them: accepted → sent; throttling →
//! try again later; refused message → bounce; bad credentials, suspended
//! account or a provider that is down → a session error, so the route fails
//! over to the next transport and the circuit breaker backs off.

pub mod mailgun;
mod parts;
pub mod postmark;
pub mod sendgrid;
pub mod ses;
pub mod sigv4;

use std::time::Duration;

use crate::transport::{Delivery, SessionError};

pub use mailgun::Mailgun;
pub use postmark::Postmark;
pub use sendgrid::SendGrid;
pub use ses::Ses;

/// What a provider's answer means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Sent,
    Transient,
    Permanent,
    /// Fail over: credentials, account or provider trouble.
    Session,
}

/// The default reading of an HTTP status; providers refine it with their
/// error codes.
pub fn verdict_for_status(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Sent,
        408 | 429 => Verdict::Transient,
        401 | 403 => Verdict::Session,
        400..=499 => Verdict::Permanent,
        _ => Verdict::Session,
    }
}

/// Turns a verdict into one delivery per recipient (providers judge the
/// whole message), or a session error.
pub fn deliveries(
    provider: &str,
    verdict: Verdict,
    status: u16,
    detail: &str,
    n: usize,
) -> Result<Vec<Delivery>, SessionError> {
    let detail: String = detail.chars().filter(|c| !c.is_control()).take(500).collect();
    let text = format!("{status} {provider}: {detail}");
    let d = match verdict {
        Verdict::Sent => Delivery::Sent(text),
        Verdict::Transient => Delivery::Transient(text),
        Verdict::Permanent => Delivery::Permanent(text),
        Verdict::Session => return Err(SessionError(text)),
    };
    Ok(std::iter::repeat_n(d, n).collect())
}

/// One HTTP client per transport (connection reuse, rustls).
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("epistle/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with rustls builds")
}

/// A request that could not be made or answered: the provider cannot be
/// reached, so fail over.
pub fn unreachable(provider: &str, e: reqwest::Error) -> SessionError {
    let what = if e.is_timeout() { "timed out" } else { "cannot reach the API" };
    SessionError(format!("{provider}: {what}: {e}"))
}

pub fn trim_endpoint(endpoint: &str) -> String {
    endpoint.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_retry_bounce_or_failover() {
        assert_eq!(verdict_for_status(202), Verdict::Sent);
        assert_eq!(verdict_for_status(429), Verdict::Transient);
        assert_eq!(verdict_for_status(401), Verdict::Session);
        assert_eq!(verdict_for_status(400), Verdict::Permanent);
        assert_eq!(verdict_for_status(503), Verdict::Session);
        let d = deliveries("x", Verdict::Transient, 429, "slow\r\ndown", 2).unwrap();
        assert_eq!(d, vec![Delivery::Transient("429 x: slowdown".into()); 2]);
        assert!(deliveries("x", Verdict::Session, 401, "bad key", 1).is_err());
    }
}
