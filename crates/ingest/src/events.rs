//! Business events as they arrive: the JSON of `POST /v1/events`, which is
//! also the body of a message consumed from NATS JetStream or RabbitMQ.
//!
//! ```json
//! {"type": "order.placed", "key": "order-1042", "data": {…}, "occurred_at": "2027-01-15T08:00:00Z"}
//! ```
//!
//! `type` and `key` identify the event: the same pair again is a
//! duplicate. `entity` (default: `key`) names what the event is about, so
//! that `appointment.cancelled` finds the reminders of
//! `appointment.booked` with the same entity.

use epistle_core::timefmt;
use epistle_store::NewBusinessEvent;
use serde::Deserialize;
use serde_json::Value;

/// Largest accepted event body (a consumed message or an API request).
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn {
    #[serde(rename = "type")]
    event_type: String,
    key: String,
    #[serde(default)]
    entity: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    occurred_at: Option<String>,
}

/// Why an event body cannot be used: the field (empty for the whole body)
/// and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    pub field: String,
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> EventError {
    EventError { field: field.into(), message: message.into() }
}

fn check_id(field: &str, v: &str, max: usize) -> Result<(), EventError> {
    if v.is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(err(field, format!("`{field}` must be 1 to {max} characters, without control characters")));
    }
    Ok(())
}

/// Reads an event body for `tenant_id`.
pub fn parse_event(body: &[u8], tenant_id: &str, source: &str, now: i64) -> Result<NewBusinessEvent, EventError> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(err("", format!("the event is {} bytes; at most {MAX_EVENT_BYTES}", body.len())));
    }
    let e: EventIn = serde_json::from_slice(body).map_err(|e| {
        err(
            "",
            format!("not an event: {e}; send {{\"type\": \"order.placed\", \"key\": \"order-1042\", \"data\": {{…}}}}"),
        )
    })?;
    let type_ok = !e.event_type.is_empty()
        && e.event_type.len() <= 100
        && e.event_type.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !type_ok {
        return Err(err("type", "`type` must be letters, digits, `.`, `_` and `-` (at most 100), like `order.placed`"));
    }
    check_id("key", &e.key, 200)?;
    let entity = e.entity.unwrap_or_else(|| e.key.clone());
    check_id("entity", &entity, 200)?;
    let data = match e.data {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(err("data", "`data` must be a JSON object")),
    };
    let occurred_at = match e.occurred_at {
        Some(t) => timefmt::parse_rfc3339(&t).map_err(|e| err("occurred_at", format!("`occurred_at`: {e}")))?,
        None => now,
    };
    Ok(NewBusinessEvent {
        tenant_id: tenant_id.into(),
        event_type: e.event_type,
        key: e.key,
        entity,
        data,
        occurred_at,
        source: source.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_events() {
        let e = parse_event(
            br#"{"type": "order.placed", "key": "order-1042", "data": {"total": 12}, "occurred_at": "2027-01-15T08:00:00Z"}"#,
            "t",
            "http",
            5,
        )
        .unwrap();
        assert_eq!(
            (e.event_type.as_str(), e.key.as_str(), e.entity.as_str()),
            ("order.placed", "order-1042", "order-1042")
        );
        assert_eq!(e.occurred_at, 1_800_000_000_000);
        let e = parse_event(br#"{"type": "appointment.rescheduled", "key": "a-1#2", "entity": "a-1"}"#, "t", "http", 5)
            .unwrap();
        assert_eq!((e.entity.as_str(), e.occurred_at, e.data.is_object()), ("a-1", 5, true));
    }

    #[test]
    fn bad_events_say_which_field() {
        let field = |b: &[u8]| parse_event(b, "t", "http", 0).unwrap_err().field;
        assert_eq!(field(b"not json"), "");
        assert_eq!(field(b"[]"), "");
        assert_eq!(field(br#"{"type": "x", "key": "k", "colour": 1}"#), "", "unknown fields are refused");
        assert_eq!(field(br#"{"key": "k"}"#), "");
        assert_eq!(field(br#"{"type": "order placed", "key": "k"}"#), "type");
        assert_eq!(field(br#"{"type": "x", "key": ""}"#), "key");
        assert_eq!(field(br#"{"type": "x", "key": "k", "data": [1]}"#), "data");
        assert_eq!(field(br#"{"type": "x", "key": "k", "occurred_at": "yesterday"}"#), "occurred_at");
        assert_eq!(field(&vec![b' '; MAX_EVENT_BYTES + 1]), "");
    }
}
