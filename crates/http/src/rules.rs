//! Rules: what mail a business event sends, and the engine that sends it.
//!
//! Events are stored first (`POST /v1/events`, or a NATS / AMQP consumer)
//! and acknowledged; this engine then claims them in the order they came,
//! evaluates the tenant's rules and commits, in one transaction, each
//! rule's run with the mail it queues and the event's `processed` mark. A
//! run is keyed by `(rule, event)`, so an event redelivered, reprocessed
//! after a crash or raced by two nodes still queues each mail once.
//!
//! A rule can send later (`at` + `offset`): the mail is queued as a
//! scheduled message. An event of a type in `cancelled_by` with the same
//! entity cancels what is still waiting; one in `rescheduled_by` moves it
//! to the time computed from the new event. Reminders whose time has
//! passed are skipped unless `send_late`.
//!
//! A rule with `batch` collects instead: the first matching event opens a
//! window per recipient, later ones join it, and when it closes one mail
//! lists them all. The batch is closed and its mail queued in one
//! transaction, so it is sent once.

use std::sync::Arc;
use std::time::Duration;

use epistle_core::timefmt;
use epistle_render::expr::Expressions;
use epistle_store::{BusinessEvent, DeadLetter, EventOutcome, RuleBatch, RuleRecord, RuleRun, RunOutput, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::SendRequest;

/// A rule as the API takes and shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    /// The event type that triggers it.
    pub on: String,
    /// A condition over the event (`data.total > 0`); absent is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// A stored or built-in template; the event's `data` is its data.
    pub template: String,
    /// Recipients (one template line; commas between several).
    pub to: String,
    /// The sender; a template line too.
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// When to send (a template line giving an RFC 3339 time); absent is now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Added to `at` (or to now): `-24h`, `-1h`, `30m`, `2d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
    /// Event types that cancel what this rule still has waiting for the
    /// same entity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancelled_by: Vec<String>,
    /// Event types that move it to the time computed from them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rescheduled_by: Vec<String>,
    /// Send even when the time has passed (default: skip).
    #[serde(default)]
    pub send_late: bool,
    /// Collect: the first matching event opens a window of this length
    /// (`15m`) per recipient; one mail then lists every event of the window
    /// (template data `events`, `count`, `first`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// Event types: letters, digits, `.`, `_`, `-`, up to 100.
pub fn check_event_type(field: &str, t: &str) -> Result<(), ApiError> {
    if t.is_empty() || t.len() > 100 || !t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err(ApiError::invalid(
            field,
            format!(
                "`{field}` must be an event type of letters, digits, `.`, `_` and `-` (at most 100), like `order.placed`"
            ),
        ));
    }
    Ok(())
}

/// `-24h`, `1h30m`, `2d`, `+15m`, `90s` in milliseconds.
pub fn parse_offset(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'-') => (-1, &t[1..]),
        Some(b'+') => (1, &t[1..]),
        _ => (1, t),
    };
    if rest.is_empty() {
        return Err(format!("`{s}` is not a duration; write e.g. -24h, 1h30m, 2d"));
    }
    let mut total: i64 = 0;
    let mut num = String::new();
    for c in rest.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400_000,
            'h' => 3_600_000,
            'm' => 60_000,
            's' => 1000,
            _ => return Err(format!("`{s}`: unknown unit `{c}`; use d, h, m or s")),
        };
        let n: i64 = num.parse().map_err(|_| format!("`{s}` is not a duration; write e.g. -24h, 1h30m, 2d"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        num.clear();
    }
    if !num.is_empty() {
        return Err(format!("`{s}`: a number without a unit; write e.g. {num}m or {num}h"));
    }
    Ok(sign * total)
}

impl RuleSpec {
    /// The message request this rule makes (its template, stream, category
    /// and tags) for the given sender, recipients and data.
    fn request(
        &self,
        from: String,
        recipients: Vec<Value>,
        reply_to: Option<String>,
        metadata: serde_json::Map<String, Value>,
        data: serde_json::Map<String, Value>,
        send_at: Option<i64>,
    ) -> SendRequest {
        SendRequest {
            from,
            to: Some(Value::Array(recipients)),
            reply_to,
            tags: self.tags.clone(),
            metadata: Some(metadata),
            send_at: send_at.map(timefmt::rfc3339),
            stream: self.stream.clone(),
            template: Some(self.template.clone()),
            data: Some(data),
            category: self.category.clone(),
            ..Default::default()
        }
    }

    /// Checks everything that can be checked before an event comes.
    pub fn check(&self, x: &Expressions) -> Result<(), ApiError> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err(ApiError::invalid("name", "give the rule a `name` (at most 200 characters)"));
        }
        check_event_type("on", &self.on)?;
        for (i, t) in self.cancelled_by.iter().enumerate() {
            check_event_type(&format!("cancelled_by[{i}]"), t)?;
        }
        for (i, t) in self.rescheduled_by.iter().enumerate() {
            check_event_type(&format!("rescheduled_by[{i}]"), t)?;
        }
        if let Some(w) = &self.when {
            x.check_condition(w)
                .map_err(|e| ApiError::invalid("when", format!("`when` is not a valid expression: {e}")))?;
        }
        for (field, text) in [
            ("to", Some(&self.to)),
            ("from", Some(&self.from)),
            ("at", self.at.as_ref()),
            ("reply_to", self.reply_to.as_ref()),
        ] {
            if let Some(t) = text {
                if t.trim().is_empty() {
                    return Err(ApiError::invalid(field, format!("`{field}` is empty")));
                }
                x.check_text(t)
                    .map_err(|e| ApiError::invalid(field, format!("`{field}` is not a valid template line: {e}")))?;
            }
        }
        if self.template.trim().is_empty() {
            return Err(ApiError::invalid("template", "name the `template` to send"));
        }
        if let Some(o) = &self.offset {
            parse_offset(o).map_err(|e| ApiError::invalid("offset", e))?;
        }
        if let Some(b) = &self.batch {
            let ms = parse_offset(b).map_err(|e| ApiError::invalid("batch", e))?;
            if ms <= 0 {
                return Err(ApiError::invalid("batch", "`batch` is a window such as `15m`"));
            }
            if self.at.is_some() || self.offset.is_some() {
                return Err(ApiError::invalid(
                    "batch",
                    "a batching rule sends when its window closes: drop `at` and `offset`",
                ));
            }
        }
        if let Some(s) = &self.stream
            && s != "transactional"
            && s != "broadcast"
        {
            return Err(ApiError::invalid("stream", "`stream` is `transactional` or `broadcast`"));
        }
        Ok(())
    }
}

/// An API error as a run's reason: `field: message`.
fn reason(err: ApiError) -> String {
    match &err.field {
        Some(f) if !f.is_empty() => format!("{f}: {}", err.message),
        _ => err.message,
    }
}

/// What expressions see: `data` (the event's data), `event` (its type,
/// key, entity, id, occurred_at).
pub fn context(e: &BusinessEvent) -> Value {
    json!({
        "data": e.data,
        "event": {"id": e.id, "type": e.event_type, "key": e.key, "entity": e.entity,
                  "occurred_at": timefmt::rfc3339(e.occurred_at)},
    })
}

/// What a rule does with an event.
enum Applied {
    Message(Box<epistle_store::NewMessage>, Option<i64>),
    Batch { recipient: String, window_ms: i64 },
    Skipped(String),
    Failed(String),
}

/// Turns stored events into mail.
pub struct RuleEngine {
    st: AppState,
    node: String,
    wake: Arc<Notify>,
    x: Expressions,
}

impl RuleEngine {
    pub fn new(st: AppState, node: String, wake: Arc<Notify>) -> Self {
        Self { st, node, wake, x: Expressions::new() }
    }

    /// Works until `shutdown`; wakes on `wake` (an event was stored) or
    /// every second (events stored by other nodes, expired claims).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.step().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "rules engine: cannot read or commit; trying again"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Processes what is waiting now; how many events.
    pub async fn step(&self) -> Result<usize, StoreError> {
        let now = self.st.clock.now_ms();
        let events = self.st.store.claim_business_events(&self.node, now, 60_000, 50).await?;
        let n = events.len();
        let mut rules: std::collections::HashMap<String, Vec<(RuleRecord, RuleSpec)>> = Default::default();
        for e in events {
            if !rules.contains_key(&e.tenant_id) {
                let list = self.st.store.rules(&e.tenant_id).await?;
                let parsed = list
                    .into_iter()
                    .filter(|r| r.enabled)
                    .filter_map(|r| serde_json::from_value::<RuleSpec>(r.spec.clone()).ok().map(|s| (r, s)))
                    .collect();
                rules.insert(e.tenant_id.clone(), parsed);
            }
            self.process(&e, &rules[&e.tenant_id]).await?;
        }
        let flushed = self.flush_batches(now).await?;
        if n + flushed > 0 {
            self.st.wake.notify_one();
        }
        Ok(n + flushed)
    }

    /// Sends the batches whose window has closed: one mail each.
    async fn flush_batches(&self, now: i64) -> Result<usize, StoreError> {
        let due = self.st.store.due_batches(now, 50).await?;
        let n = due.len();
        for b in due {
            let built = match self.st.store.rule(&b.tenant_id, &b.rule_id).await? {
                None => Err(("the rule was deleted before its batch was sent".to_string(), None)),
                Some(rule) => match serde_json::from_value::<RuleSpec>(rule.spec.clone()) {
                    Ok(spec) => self.batch_message(&spec, &b, now).await.map_err(|why| (why, Some(rule.name.clone()))),
                    Err(err) => Err((format!("the rule cannot be read: {err}"), Some(rule.name.clone()))),
                },
            };
            let (message, dead) = match built {
                Ok(m) => (Some(m), None),
                Err((why, name)) => {
                    tracing::warn!(rule = %b.rule_id, batch = %b.id, reason = %why, "batch not sent");
                    let d = DeadLetter {
                        id: epistle_core::ids::new_id("dlq"),
                        tenant_id: b.tenant_id.clone(),
                        source: "rule".into(),
                        reason: format!(
                            "rule `{}`: batch for {}: {why}",
                            name.unwrap_or_else(|| b.rule_id.clone()),
                            b.recipient
                        ),
                        payload: Value::Array(b.items.clone()).to_string(),
                        event_id: None,
                        rule_id: Some(b.rule_id.clone()),
                        created_at: now,
                    };
                    (None, Some(d))
                }
            };
            let sent = message.is_some();
            if self.st.store.finish_batch(&b.id, message, dead, now).await? && sent {
                self.st.metrics.rule_messages.inc();
            }
        }
        Ok(n)
    }

    async fn batch_message(
        &self,
        spec: &RuleSpec,
        b: &RuleBatch,
        now: i64,
    ) -> Result<epistle_store::NewMessage, String> {
        let first = b.items.first().cloned().unwrap_or(Value::Null);
        let ctx = json!({"data": first, "events": b.items, "count": b.items.len()});
        let from = self.x.text(&spec.from, &ctx).map_err(|e| format!("`from`: {e}"))?;
        if from.is_empty() {
            return Err(format!("`from` ({}) gave no sender", spec.from));
        }
        let reply_to = match &spec.reply_to {
            Some(r) => Some(self.x.text(r, &ctx).map_err(|e| format!("`reply_to`: {e}"))?).filter(|r| !r.is_empty()),
            None => None,
        };
        let recipients: Vec<Value> =
            b.recipient.split([',', ';']).map(str::trim).filter(|s| !s.is_empty()).map(|s| json!(s)).collect();
        let mut data = serde_json::Map::new();
        data.insert("events".into(), Value::Array(b.items.clone()));
        data.insert("count".into(), json!(b.items.len()));
        data.insert("first".into(), first);
        data.insert("recipient".into(), json!(b.recipient));
        let mut metadata = serde_json::Map::new();
        metadata.insert("rule".into(), json!(b.rule_id));
        metadata.insert("batch".into(), json!(b.id));
        metadata.insert("events".into(), json!(b.items.len()));
        let req = spec.request(from, recipients, reply_to, metadata, data, None);
        crate::routes::messages::prepare_message(&self.st, &b.tenant_id, req, None, now)
            .await
            .map(|p| p.message)
            .map_err(reason)
    }

    fn when_to_send(&self, spec: &RuleSpec, ctx: &Value, now: i64) -> Result<Option<i64>, String> {
        let base = match &spec.at {
            Some(at) => {
                let text = self.x.text(at, ctx).map_err(|e| format!("`at`: {e}"))?;
                if text.is_empty() {
                    return Err(format!("`at` ({at}) gave nothing for this event"));
                }
                Some(timefmt::parse_rfc3339(&text).map_err(|e| format!("`at` gave `{text}`: {e}"))?)
            }
            None => None,
        };
        let offset = match &spec.offset {
            Some(o) => parse_offset(o)?,
            None => 0,
        };
        Ok(match (base, offset) {
            (None, 0) => None,
            (None, o) => Some(now + o),
            (Some(t), o) => Some(t + o),
        })
    }

    async fn apply(&self, rule: &RuleRecord, spec: &RuleSpec, e: &BusinessEvent, ctx: &Value, now: i64) -> Applied {
        if let Some(w) = &spec.when {
            match self.x.condition(w, ctx) {
                Ok(true) => {}
                Ok(false) => return Applied::Skipped(format!("`when` ({w}) is false for this event")),
                Err(err) => return Applied::Failed(format!("`when` ({w}): {err}")),
            }
        }
        if !spec.cancelled_by.is_empty() {
            match self.st.store.entity_event(&e.tenant_id, &e.entity, &spec.cancelled_by).await {
                Ok(Some(c)) => {
                    return Applied::Skipped(format!("already cancelled by {} `{}`", c.event_type, c.key));
                }
                Ok(None) => {}
                Err(err) => return Applied::Failed(format!("cannot look for cancelling events: {err}")),
            }
        }
        let send_at = match self.when_to_send(spec, ctx, now) {
            Ok(t) => t,
            Err(err) => return Applied::Failed(err),
        };
        let send_at = match send_at {
            Some(t) if t <= now && !spec.send_late => {
                return Applied::Skipped(format!("its time, {}, had passed when the event came", timefmt::rfc3339(t)));
            }
            Some(t) if t <= now => None,
            other => other,
        };
        let to = match self.x.text(&spec.to, ctx) {
            Ok(t) if t.is_empty() => {
                return Applied::Failed(format!("`to` ({}) gave no recipient for this event", spec.to));
            }
            Ok(t) => t,
            Err(err) => return Applied::Failed(format!("`to`: {err}")),
        };
        let from = match self.x.text(&spec.from, ctx) {
            Ok(f) if !f.is_empty() => f,
            Ok(_) => return Applied::Failed(format!("`from` ({}) gave no sender for this event", spec.from)),
            Err(err) => return Applied::Failed(format!("`from`: {err}")),
        };
        let reply_to = match spec.reply_to.as_ref().map(|r| self.x.text(r, ctx)).transpose() {
            Ok(r) => r.filter(|r| !r.is_empty()),
            Err(err) => return Applied::Failed(format!("`reply_to`: {err}")),
        };
        if let Some(b) = &spec.batch {
            return match parse_offset(b) {
                Ok(window_ms) => Applied::Batch { recipient: to, window_ms },
                Err(err) => Applied::Failed(format!("`batch`: {err}")),
            };
        }
        let recipients: Vec<Value> =
            to.split([',', ';']).map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.into())).collect();
        let mut data = match &e.data {
            Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        data.entry("event").or_insert_with(|| ctx["event"].clone());
        let mut metadata = serde_json::Map::new();
        metadata.insert("rule".into(), json!(rule.id));
        metadata.insert("event".into(), json!(e.id));
        metadata.insert("event_type".into(), json!(e.event_type));
        metadata.insert("event_key".into(), json!(e.key));
        let req = spec.request(from, recipients, reply_to, metadata, data, send_at);
        match crate::routes::messages::prepare_message(&self.st, &e.tenant_id, req, None, now).await {
            Ok(p) => Applied::Message(Box::new(p.message), send_at),
            Err(err) => Applied::Failed(reason(err)),
        }
    }

    async fn process(&self, e: &BusinessEvent, rules: &[(RuleRecord, RuleSpec)]) -> Result<(), StoreError> {
        let now = self.st.clock.now_ms();
        let ctx = context(e);
        let store = &self.st.store;
        let mut outcome = EventOutcome::default();
        let dead = |rule: &RuleRecord, reason: String| DeadLetter {
            id: epistle_core::ids::new_id("dlq"),
            tenant_id: e.tenant_id.clone(),
            source: "rule".into(),
            reason: format!("rule `{}`: {reason}", rule.name),
            payload: json!({"type": e.event_type, "key": e.key, "entity": e.entity, "data": e.data}).to_string(),
            event_id: Some(e.id.clone()),
            rule_id: Some(rule.id.clone()),
            created_at: now,
        };

        // What this event cancels or moves: idempotent, so done before the
        // event is marked processed (a crash in between repeats them).
        for (rule, spec) in rules {
            let cancels = spec.cancelled_by.contains(&e.event_type);
            let moves = spec.rescheduled_by.contains(&e.event_type);
            if !cancels && !moves {
                continue;
            }
            for run in store.scheduled_runs(&e.tenant_id, &e.entity, &rule.id).await? {
                let Some(message) = &run.message_id else { continue };
                if cancels {
                    let why = format!("cancelled by {} `{}`", e.event_type, e.key);
                    store.cancel_message_because(&e.tenant_id, message, now, &why).await?;
                    store.update_run(&run.rule_id, &run.event_id, "cancelled", &why, now).await?;
                    continue;
                }
                match self.when_to_send(spec, &ctx, now) {
                    Ok(Some(t)) if t > now || spec.send_late => {
                        store.reschedule_message(&e.tenant_id, message, t.max(now), now).await?;
                        let why = format!("moved to {} by {} `{}`", timefmt::rfc3339(t), e.event_type, e.key);
                        store.update_run(&run.rule_id, &run.event_id, "scheduled", &why, now).await?;
                    }
                    Ok(Some(t)) => {
                        let why = format!(
                            "{} `{}` moved it to {}, which had passed",
                            e.event_type,
                            e.key,
                            timefmt::rfc3339(t)
                        );
                        store.cancel_message_because(&e.tenant_id, message, now, &why).await?;
                        store.update_run(&run.rule_id, &run.event_id, "skipped", &why, now).await?;
                    }
                    Ok(None) => {}
                    Err(err) => outcome.dead_letters.push(dead(rule, format!("cannot reschedule: {err}"))),
                }
            }
        }

        for (rule, spec) in rules.iter().filter(|(_, s)| s.on == e.event_type) {
            let mut run = RuleRun {
                rule_id: rule.id.clone(),
                event_id: e.id.clone(),
                tenant_id: e.tenant_id.clone(),
                entity: e.entity.clone(),
                status: String::new(),
                message_id: None,
                detail: None,
                created_at: now,
                updated_at: now,
            };
            let message = match self.apply(rule, spec, e, &ctx, now).await {
                Applied::Message(m, at) => {
                    run.status = if at.is_some() { "scheduled" } else { "queued" }.into();
                    run.message_id = Some(m.id.clone());
                    run.detail = at.map(|t| format!("to be sent at {}", timefmt::rfc3339(t)));
                    RunOutput::Message(m)
                }
                Applied::Batch { recipient, window_ms } => {
                    run.status = "batched".into();
                    run.detail = Some(format!("collected for {recipient}"));
                    let mut item = e.data.clone();
                    if let Value::Object(m) = &mut item {
                        m.entry("event").or_insert_with(|| ctx["event"].clone());
                    }
                    // The window runs from when the event arrived, however
                    // late it is processed.
                    RunOutput::Batch { recipient, item, opened_at: e.received_at, due_at: e.received_at + window_ms }
                }
                Applied::Skipped(why) => {
                    run.status = "skipped".into();
                    run.detail = Some(why);
                    RunOutput::Nothing
                }
                Applied::Failed(why) => {
                    tracing::warn!(rule = %rule.name, event = %e.id, reason = %why, "rule failed");
                    outcome.dead_letters.push(dead(rule, why.clone()));
                    run.status = "failed".into();
                    run.detail = Some(why);
                    RunOutput::Nothing
                }
            };
            outcome.runs.push((run, message));
        }
        let queued = outcome.runs.iter().filter(|(_, m)| matches!(m, RunOutput::Message(_))).count();
        store.finish_business_event(&e.id, outcome, now).await?;
        let latency = (self.st.clock.now_ms() - e.received_at).max(0) as f64 / 1000.0;
        self.st.metrics.event_to_queue_seconds.observe(latency);
        self.st.metrics.events_processed.inc();
        if queued > 0 {
            self.st.metrics.rule_messages.inc_by(queued as u64);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("-24h"), Ok(-86_400_000));
        assert_eq!(parse_offset("1h30m"), Ok(5_400_000));
        assert_eq!(parse_offset("+2d"), Ok(172_800_000));
        assert_eq!(parse_offset("90s"), Ok(90_000));
        assert!(parse_offset("").is_err());
        assert!(parse_offset("-").is_err());
        assert!(parse_offset("24").unwrap_err().contains("without a unit"));
        assert!(parse_offset("3w").unwrap_err().contains("unknown unit"));
        assert!(parse_offset("h").is_err());
    }

    #[test]
    fn event_types() {
        assert!(check_event_type("on", "order.placed").is_ok());
        assert!(check_event_type("on", "appointment_booked-v2").is_ok());
        assert!(check_event_type("on", "").is_err());
        assert!(check_event_type("on", "order placed").is_err());
        assert!(check_event_type("on", &"x".repeat(101)).is_err());
    }
}
