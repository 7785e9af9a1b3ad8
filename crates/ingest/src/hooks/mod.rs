//! Feedback webhooks from sending providers: proving a request really came
//! from the provider, then turning its payload into provider-neutral
//! [`FeedbackEvent`]s.
//!
//! Everything here is a pure function over bytes the HTTP layer hands in
//! (body, a header or two, configured secrets, the current time), so the
//! routes stay thin and every check is unit-tested with real cryptography.
//! Nothing panics on input: each failure is a [`HookError`], and the two
//! variants map straight onto the status code to answer with.
//!
//! - [`mailgun`]: HMAC-SHA256 over timestamp and token, with replay memory.
//! - [`sendgrid`]: ECDSA P-256 Signed Event Webhook.
//! - [`postmark`]: HTTP Basic credentials on the webhook URL.
//! - [`sns`]: Amazon SES notifications carried by SNS (RSA-signed envelopes).

pub mod mailgun;
pub mod postmark;
pub mod sendgrid;
pub mod sns;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Why a hook request was refused. Unauthorized → HTTP 401 (forged, replayed, stale, wrong credentials);
/// BadRequest → 400 (authentic or not, cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookError {
    Unauthorized(String),
    BadRequest(String),
}

impl std::fmt::Display for HookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookError::Unauthorized(why) => write!(f, "unauthorized webhook: {why}"),
            HookError::BadRequest(why) => write!(f, "unreadable webhook: {why}"),
        }
    }
}

impl std::error::Error for HookError {}

impl HookError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HookError::Unauthorized(_) => 401,
            HookError::BadRequest(_) => 400,
        }
    }
}

pub(crate) fn unauthorized(why: impl Into<String>) -> HookError {
    HookError::Unauthorized(why.into())
}

pub(crate) fn bad_request(why: impl Into<String>) -> HookError {
    HookError::BadRequest(why.into())
}

/// How to find our message: providers echo our Message-ID header (without angle brackets,
/// e.g. "01jabc...@shop.example") and/or custom data we attach ("epistle_id" = "msg_01j...").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageRef {
    HeaderMessageId(String),
    EpistleId(String),
}

impl MessageRef {
    /// Our message id (`msg_…`): the ULID local part of a Message-ID we
    /// wrote, or the id we attached. `None` for anything else.
    pub fn our_id(&self) -> Option<String> {
        match self {
            MessageRef::EpistleId(id) => epistle_core::MessageId::parse(id).map(|m| m.to_string()),
            MessageRef::HeaderMessageId(h) => {
                let local = h.trim().trim_matches(['<', '>']).split('@').next()?;
                let u = ulid::Ulid::from_string(local).ok()?;
                Some(format!("msg_{}", u.to_string().to_lowercase()))
            }
        }
    }
}

/// What happened to one recipient of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackKind {
    Delivered,
    Deferred,
    Bounced {
        hard: bool,
    },
    Complained,
    /// A report that is not the recipient objecting (`not-spam`,
    /// `auth-failure`; see [`epistle_mail::bounce::is_complaint`]).
    Feedback {
        feedback_type: String,
    },
    Opened,
    Clicked {
        url: String,
    },
    Unsubscribed,
}

/// One provider report about one recipient, in a provider-neutral shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackEvent {
    /// "ses", "mailgun", "sendgrid" or "postmark".
    pub provider: &'static str,
    /// None when the payload names none.
    pub message: Option<MessageRef>,
    /// Lower-case address.
    pub recipient: String,
    pub kind: FeedbackKind,
    /// Diagnostic / SMTP response / reason; may be empty.
    pub detail: String,
    /// Unix milliseconds, when the provider says.
    pub at: Option<i64>,
}

/// How far a signed timestamp may be from our clock, either way.
pub const TIMESTAMP_TOLERANCE_MS: i64 = 5 * 60 * 1000;

/// Whether a provider timestamp in Unix seconds lies within
/// [`TIMESTAMP_TOLERANCE_MS`] of `now_ms`.
pub(crate) fn unix_seconds_fresh(ts_s: i64, now_ms: i64) -> bool {
    let Some(ts_ms) = ts_s.checked_mul(1000) else { return false };
    ts_ms.checked_sub(now_ms).is_some_and(|d| d.abs() <= TIMESTAMP_TOLERANCE_MS)
}

/// Memory of recently seen one-time tokens (Mailgun's `token`), so a
/// captured, validly signed request cannot be played again while its
/// timestamp is still fresh. Entries expire after the retention window,
/// which is longer than the timestamp tolerance, and the oldest are dropped
/// once the bound is reached so a flood cannot exhaust memory.
#[derive(Debug)]
pub struct ReplayGuard {
    retain_ms: i64,
    capacity: usize,
    inner: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// token → when it was first seen.
    at: HashMap<String, i64>,
    /// Insertion order, for expiry and eviction.
    order: VecDeque<(i64, String)>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayGuard {
    /// Ten minutes of memory (twice the timestamp tolerance), 100 000 tokens at most.
    pub fn new() -> Self {
        Self::with_limits(10 * 60 * 1000, 100_000)
    }

    pub fn with_limits(retain_ms: i64, capacity: usize) -> Self {
        Self { retain_ms, capacity: capacity.max(1), inner: Mutex::new(Seen::default()) }
    }

    /// True when `token` was not seen within the retention window (and
    /// remembers it now); false for a replay.
    pub fn check_and_remember(&self, token: &str, now_ms: i64) -> bool {
        // A panic elsewhere while holding the lock leaves the maps consistent
        // (every mutation below is complete before anything can panic), so a
        // poisoned lock is still safe to use.
        let mut seen = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Seen { at, order } = &mut *seen;
        let horizon = now_ms.saturating_sub(self.retain_ms);
        while let Some((t, _)) = order.front() {
            if *t >= horizon && order.len() < self.capacity {
                break;
            }
            if let Some((t, old)) = order.pop_front() {
                // Only forget the token if this queue entry is its current one.
                if at.get(&old) == Some(&t) {
                    at.remove(&old);
                }
            }
        }
        if let Some(first) = at.get(token)
            && *first >= horizon
        {
            return false;
        }
        at.insert(token.to_owned(), now_ms);
        order.push_back((now_ms, token.to_owned()));
        true
    }

    /// Number of tokens currently remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|s| s.at.len()).unwrap_or_else(|p| p.into_inner().at.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Equality of two secrets without an early exit, so response timing does
/// not tell an attacker how much of a guess was right. Both sides are hashed
/// first so their lengths do not matter either.
pub(crate) fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter().zip(y.iter()).fold(0u8, |acc, (p, q)| acc | (p ^ q)) == 0
}

/// Parses a request body as JSON.
pub(crate) fn json(body: &[u8]) -> Result<Value, HookError> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("body is not JSON: {e}")))
}

/// A string field, if present and a non-empty string.
pub(crate) fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A Message-ID as the header carries it, without surrounding `<>` or blanks.
pub(crate) fn strip_angles(id: &str) -> String {
    let id = id.trim();
    let id = id.strip_prefix('<').unwrap_or(id);
    let id = id.strip_suffix('>').unwrap_or(id);
    id.trim().to_owned()
}

/// Normalises a recipient: the bare address of `Name <addr>` forms, trimmed
/// and lower-cased.
pub(crate) fn normalize_address(raw: &str) -> String {
    let raw = raw.trim();
    let bare = match (raw.rfind('<'), raw.rfind('>')) {
        (Some(open), Some(close)) if open < close => &raw[open + 1..close],
        _ => raw,
    };
    bare.trim().to_lowercase()
}

/// RFC 3339 timestamp → Unix milliseconds.
pub(crate) fn rfc3339_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Unix seconds (integer, float, or a string of either) → Unix milliseconds.
pub(crate) fn unix_seconds_ms(v: &Value) -> Option<i64> {
    let secs = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    let ms = (secs * 1000.0).round();
    // Reject NaN/inf and anything outside a sane range before the cast.
    (ms.is_finite() && ms.abs() < 1e15).then_some(ms as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_guard_refuses_second_use() {
        let g = ReplayGuard::new();
        assert!(g.check_and_remember("a", 1_000));
        assert!(!g.check_and_remember("a", 2_000));
        assert!(g.check_and_remember("b", 2_000));
    }

    #[test]
    fn replay_guard_forgets_after_retention() {
        let g = ReplayGuard::with_limits(10_000, 100);
        assert!(g.check_and_remember("a", 0));
        assert!(!g.check_and_remember("a", 10_000));
        assert!(g.check_and_remember("a", 10_001));
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn replay_guard_is_bounded() {
        let g = ReplayGuard::with_limits(1_000_000, 3);
        for (i, t) in ["a", "b", "c", "d"].iter().enumerate() {
            assert!(g.check_and_remember(t, i as i64));
        }
        assert!(g.len() <= 3);
        // The oldest was dropped; the newest are still remembered.
        assert!(!g.check_and_remember("d", 10));
        assert!(!g.check_and_remember("c", 10));
        assert!(g.check_and_remember("a", 10));
    }

    #[test]
    fn helpers() {
        assert!(secret_eq(b"abc", b"abc"));
        assert!(!secret_eq(b"abc", b"abd"));
        assert!(!secret_eq(b"abc", b"abcd"));
        assert_eq!(strip_angles(" <x@y> "), "x@y");
        assert_eq!(normalize_address("Bob <Bob@Example.COM>"), "bob@example.com");
        assert_eq!(normalize_address(" A@B.c "), "a@b.c");
        assert_eq!(rfc3339_ms("2026-11-20T10:00:01.500Z"), Some(1_795_168_801_500));
        assert_eq!(rfc3339_ms("2019-11-05T16:33:54.9070259Z"), Some(1_572_971_634_907));
        assert_eq!(rfc3339_ms("yesterday"), None);
        assert_eq!(unix_seconds_ms(&serde_json::json!(1521472262.908181)), Some(1_521_472_262_908));
        assert_eq!(unix_seconds_ms(&serde_json::json!("1521472262")), Some(1_521_472_262_000));
        assert_eq!(unix_seconds_ms(&serde_json::json!(1e300)), None);
        assert!(unix_seconds_fresh(1000, 1_000_000 + TIMESTAMP_TOLERANCE_MS));
        assert!(!unix_seconds_fresh(1000, 1_000_001 + TIMESTAMP_TOLERANCE_MS));
        assert!(!unix_seconds_fresh(i64::MAX, 0));
    }
}
