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
    /// Collect until a schedule fires in the recipient's time zone (the
    /// daily digest); nothing collected, nothing sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestSpec>,
    /// Tell someone else when the mail was not acted on in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate: Option<EscalateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_opens: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_clicks: Option<bool>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSpec {
    /// Cron syntax: `0 8 * * *` is every day at 08:00.
    pub schedule: String,
    /// The recipient's time zone (a template line giving an IANA name);
    /// absent is UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalateSpec {
    /// How long after the mail is sent (`30m`).
    pub after: String,
    /// `clicked` (default) or `opened`: what counts as acted on.
    #[serde(default = "clicked")]
    pub unless: String,
    /// Who is told (a template line over the same data as the rule).
    pub to: String,
    /// Another template for the escalation; absent is the rule's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

fn clicked() -> String {
    "clicked".into()
}

/// The mail a rule, an escalation or a workflow step sends: every field
/// but the template is a template line over the event.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSpec {
    pub template: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_opens: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_clicks: Option<bool>,
}

impl MailSpec {
    /// Checks the template lines and the stream; `field` prefixes errors.
    pub fn check(&self, x: &Expressions, field: &str) -> Result<(), ApiError> {
        if self.template.trim().is_empty() {
            return Err(ApiError::invalid(format!("{field}template"), "name the `template` to send"));
        }
        for (name, text) in [("to", Some(&self.to)), ("from", self.from.as_ref()), ("reply_to", self.reply_to.as_ref())]
        {
            if let Some(t) = text {
                let f = format!("{field}{name}");
                if t.trim().is_empty() {
                    return Err(ApiError::invalid(&f, format!("`{f}` is empty")));
                }
                x.check_text(t)
                    .map_err(|e| ApiError::invalid(&f, format!("`{f}` is not a valid template line: {e}")))?;
            }
        }
        if let Some(s) = &self.stream
            && s != "transactional"
            && s != "broadcast"
        {
            return Err(ApiError::invalid(format!("{field}stream"), "`stream` is `transactional` or `broadcast`"));
        }
        Ok(())
    }
}

/// Why a mail could not be built.
#[derive(Debug)]
pub(crate) enum MailError {
    /// The event, rule or template is wrong: retrying gives the same; the
    /// reason goes to the dead letters.
    Refused(String),
    /// The store could not answer (a database outage): try again later,
    /// nothing is given up.
    Transient(String),
}

impl From<String> for MailError {
    fn from(s: String) -> Self {
        MailError::Refused(s)
    }
}

/// How long a node holds the events and workflow runs it claimed. Work done
/// twice after a lease runs out is harmless (runs are keyed, commits
/// guarded); a short lease makes a crashed node's claims free again soon.
const CLAIM_LEASE_MS: i64 = 10_000;

/// Renders the mail of `spec` over `ctx` and prepares it (template,
/// suppressions, validation) like `POST /v1/messages` would; `to` may be
/// given already rendered. The error says why, for the dead letters.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn build_mail(
    st: &AppState,
    x: &Expressions,
    tenant_id: &str,
    spec: &MailSpec,
    ctx: &Value,
    to: Option<&str>,
    data: serde_json::Map<String, Value>,
    metadata: serde_json::Map<String, Value>,
    send_at: Option<i64>,
    now: i64,
) -> Result<epistle_store::NewMessage, MailError> {
    let line = |field: &str, text: &str| -> Result<String, String> {
        let v = x.text(text, ctx).map_err(|e| format!("`{field}`: {e}"))?;
        Ok(v)
    };
    let to = match to {
        Some(t) => t.to_string(),
        None => line("to", &spec.to)?,
    };
    if to.is_empty() {
        return Err(format!("`to` ({}) gave no recipient", spec.to).into());
    }
    let Some(from_line) = &spec.from else { return Err(MailError::Refused("no `from`: give the sender".into())) };
    let from = line("from", from_line)?;
    if from.is_empty() {
        return Err(format!("`from` ({from_line}) gave no sender").into());
    }
    let reply_to = match &spec.reply_to {
        Some(r) => Some(line("reply_to", r)?).filter(|r| !r.is_empty()),
        None => None,
    };
    let recipients: Vec<Value> =
        to.split([',', ';']).map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.into())).collect();
    let req = SendRequest {
        from,
        to: Some(Value::Array(recipients)),
        reply_to,
        tags: spec.tags.clone(),
        metadata: Some(metadata),
        send_at: send_at.map(timefmt::rfc3339),
        stream: spec.stream.clone(),
        template: Some(spec.template.clone()),
        data: Some(data),
        category: spec.category.clone(),
        track_opens: spec.track_opens,
        track_clicks: spec.track_clicks,
        ..Default::default()
    };
    match crate::routes::messages::prepare_message(st, tenant_id, req, None, now).await {
        Ok(p) => Ok(p.message),
        Err(e) if e.status.is_server_error() => Err(MailError::Transient(e.message)),
        Err(e) => Err(MailError::Refused(reason(e))),
    }
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

/// Durations are at most ten years, so times computed with them never
/// overflow.
const MAX_OFFSET_MS: i64 = 3650 * 86_400_000;

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
    if total > MAX_OFFSET_MS {
        return Err(format!("`{s}` is more than ten years; write at most 3650d"));
    }
    Ok(sign * total)
}

impl RuleSpec {
    /// The mail this rule sends (the escalation's, with `escalation`).
    pub fn mail(&self, escalation: bool) -> MailSpec {
        let mut m = MailSpec {
            template: self.template.clone(),
            to: self.to.clone(),
            from: Some(self.from.clone()),
            reply_to: self.reply_to.clone(),
            stream: self.stream.clone(),
            category: self.category.clone(),
            tags: self.tags.clone(),
            track_opens: self.track_opens,
            track_clicks: self.track_clicks,
        };
        match (&self.escalate, escalation) {
            (Some(e), true) => {
                m.to = e.to.clone();
                if let Some(t) = &e.template {
                    m.template = t.clone();
                }
                if let Some(f) = &e.from {
                    m.from = Some(f.clone());
                }
            }
            // Whether the mail is acted on can only be known when it is
            // tracked: an escalation turns on what it watches, unless the
            // rule says otherwise.
            (Some(e), false) if e.unless == "opened" => {
                m.track_opens = m.track_opens.or(Some(true));
            }
            (Some(_), false) => m.track_clicks = m.track_clicks.or(Some(true)),
            (None, _) => {}
        }
        m
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
        if let Some(at) = &self.at {
            x.check_text(at).map_err(|e| ApiError::invalid("at", format!("`at` is not a valid template line: {e}")))?;
        }
        self.mail(false).check(x, "")?;
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
        if let Some(d) = &self.digest {
            crate::cron::Cron::parse(&d.schedule).map_err(|e| ApiError::invalid("digest.schedule", e))?;
            if let Some(tz) = &d.timezone {
                x.check_text(tz).map_err(|e| {
                    ApiError::invalid("digest.timezone", format!("`digest.timezone` is not a valid template line: {e}"))
                })?;
                if !tz.contains("{{") {
                    crate::cron::time_zone(tz).map_err(|e| ApiError::invalid("digest.timezone", e))?;
                }
            }
            if self.batch.is_some() || self.at.is_some() || self.offset.is_some() {
                return Err(ApiError::invalid(
                    "digest",
                    "a digest sends on its schedule: drop `batch`, `at` and `offset`",
                ));
            }
        }
        if let Some(e) = &self.escalate {
            let ms = parse_offset(&e.after).map_err(|err| ApiError::invalid("escalate.after", err))?;
            if ms <= 0 {
                return Err(ApiError::invalid("escalate.after", "`escalate.after` is a delay such as `30m`"));
            }
            if e.unless != "clicked" && e.unless != "opened" {
                return Err(ApiError::invalid("escalate.unless", "`escalate.unless` is `clicked` or `opened`"));
            }
            self.mail(true).check(x, "escalate.")?;
            let (watched, off) = if e.unless == "opened" {
                ("opened", self.track_opens == Some(false))
            } else {
                ("clicked", self.track_clicks == Some(false))
            };
            if off {
                return Err(ApiError::invalid(
                    "escalate.unless",
                    format!("the escalation waits for the mail to be {watched}, but the rule turns that tracking off"),
                ));
            }
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
    Batch {
        recipient: String,
        due_at: i64,
    },
    Skipped(String),
    Failed(String),
    /// The store could not answer: the event is left for a later round.
    Transient(String),
}

/// The rules and workflows of one tenant, read once per round.
#[derive(Default)]
pub(crate) struct TenantPlan {
    rules: Vec<(RuleRecord, RuleSpec)>,
    pub(crate) workflows: Vec<(epistle_store::WorkflowRecord, crate::workflows::WorkflowSpec)>,
}

/// Turns stored events into mail.
pub struct RuleEngine {
    st: AppState,
    node: String,
    wake: Arc<Notify>,
    x: Expressions,
}

fn dead_letter(
    tenant_id: &str,
    reason: String,
    payload: String,
    event_id: Option<String>,
    rule_id: Option<String>,
    now: i64,
) -> DeadLetter {
    DeadLetter {
        id: epistle_core::ids::new_id("dlq"),
        tenant_id: tenant_id.into(),
        source: "rule".into(),
        reason,
        payload,
        event_id,
        rule_id,
        created_at: now,
    }
}

impl RuleEngine {
    pub fn new(st: AppState, node: String, wake: Arc<Notify>) -> Self {
        Self { st, node, wake, x: Expressions::new() }
    }

    /// Works until `shutdown`; wakes on `wake` (an event was stored) or
    /// every second (events stored by other nodes, expired claims, timers).
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

    async fn plan(&self, tenant_id: &str) -> Result<TenantPlan, StoreError> {
        let rules = self
            .st
            .store
            .rules(tenant_id)
            .await?
            .into_iter()
            .filter(|r| r.enabled)
            .filter_map(|r| serde_json::from_value::<RuleSpec>(r.spec.clone()).ok().map(|s| (r, s)))
            .collect();
        let workflows = self
            .st
            .store
            .workflows(tenant_id)
            .await?
            .into_iter()
            .filter_map(|w| serde_json::from_value(w.spec.clone()).ok().map(|s| (w, s)))
            .collect();
        Ok(TenantPlan { rules, workflows })
    }

    /// Processes what is waiting now (events, closed batches and digests,
    /// escalations, workflow steps whose time has come); how many.
    pub async fn step(&self) -> Result<usize, StoreError> {
        let now = self.st.clock.now_ms();
        let events = self.st.store.claim_business_events(&self.node, now, CLAIM_LEASE_MS, 50).await?;
        let n = events.len();
        let mut plans: std::collections::HashMap<String, TenantPlan> = Default::default();
        for e in events {
            if !plans.contains_key(&e.tenant_id) {
                let plan = self.plan(&e.tenant_id).await?;
                plans.insert(e.tenant_id.clone(), plan);
            }
            self.process(&e, &plans[&e.tenant_id]).await?;
        }
        let flushed = self.flush_batches(now).await?;
        let escalated = self.fire_escalations(now).await?;
        let advanced = crate::workflows::advance_due(&self.st, &self.x, now, CLAIM_LEASE_MS).await?;
        let done = n + flushed + escalated + advanced;
        if done > 0 {
            self.st.wake.notify_one();
        }
        Ok(done)
    }

    /// Sends the batches and digests whose time has come: one mail each.
    /// How many were settled.
    async fn flush_batches(&self, now: i64) -> Result<usize, StoreError> {
        let due = self.st.store.due_batches(now, 50).await?;
        let mut n = 0;
        for b in due {
            let built = match self.st.store.rule(&b.tenant_id, &b.rule_id).await? {
                None => Err((MailError::Refused("the rule was deleted before its batch was sent".into()), None)),
                Some(rule) => match serde_json::from_value::<RuleSpec>(rule.spec.clone()) {
                    Ok(spec) => self
                        .batch_message(&spec, &b, now)
                        .await
                        .map(|(m, made)| (m, self.escalation(&spec, &b.tenant_id, &b.rule_id, made)))
                        .map_err(|why| (why, Some(rule.name.clone()))),
                    Err(err) => {
                        Err((MailError::Refused(format!("the rule cannot be read: {err}")), Some(rule.name.clone())))
                    }
                },
            };
            let (message, escalation, dead) = match built {
                Ok((m, esc)) => (Some(m), esc, None),
                Err((MailError::Transient(why), _)) => {
                    tracing::warn!(batch = %b.id, reason = %why, "batch not built now; trying again");
                    continue;
                }
                Err((MailError::Refused(why), name)) => {
                    tracing::warn!(rule = %b.rule_id, batch = %b.id, reason = %why, "batch not sent");
                    let reason = format!(
                        "rule `{}`: batch for {}: {why}",
                        name.unwrap_or_else(|| b.rule_id.clone()),
                        b.recipient
                    );
                    let payload = Value::Array(b.items.clone()).to_string();
                    (None, None, Some(dead_letter(&b.tenant_id, reason, payload, None, Some(b.rule_id.clone()), now)))
                }
            };
            let sent = message.is_some();
            if self.st.store.finish_batch(&b.id, b.items.len(), message, escalation, dead, now).await? {
                n += 1;
                if sent {
                    self.st.metrics.rule_messages.inc();
                }
            }
        }
        Ok(n)
    }

    /// The escalation timer of a rule's mail, when the rule has one.
    fn escalation(
        &self,
        spec: &RuleSpec,
        tenant_id: &str,
        rule_id: &str,
        (message, ctx, sent_at): (String, Value, i64),
    ) -> Option<epistle_store::NewEscalation> {
        let e = spec.escalate.as_ref()?;
        let after = parse_offset(&e.after).ok()?;
        Some(epistle_store::NewEscalation {
            id: epistle_core::ids::new_id("esc"),
            tenant_id: tenant_id.into(),
            rule_id: rule_id.into(),
            message_id: message,
            context: ctx,
            due_at: sent_at + after,
        })
    }

    async fn batch_message(
        &self,
        spec: &RuleSpec,
        b: &RuleBatch,
        now: i64,
    ) -> Result<(epistle_store::NewMessage, (String, Value, i64)), MailError> {
        let first = b.items.first().cloned().unwrap_or(Value::Null);
        let ctx = json!({"data": first, "events": b.items, "count": b.items.len(), "recipient": b.recipient});
        let mut data = serde_json::Map::new();
        data.insert("events".into(), Value::Array(b.items.clone()));
        data.insert("count".into(), json!(b.items.len()));
        data.insert("first".into(), first);
        data.insert("recipient".into(), json!(b.recipient));
        let mut metadata = serde_json::Map::new();
        metadata.insert("rule".into(), json!(b.rule_id));
        metadata.insert("batch".into(), json!(b.id));
        metadata.insert("events".into(), json!(b.items.len()));
        let m = build_mail(
            &self.st,
            &self.x,
            &b.tenant_id,
            &spec.mail(false),
            &ctx,
            Some(&b.recipient),
            data,
            metadata,
            None,
            now,
        )
        .await?;
        let id = m.id.clone();
        Ok((m, (id, ctx, now)))
    }

    /// Escalations whose time has come: the mail was acted on (nothing to
    /// do), was cancelled (nothing either), still waits for its own time
    /// (look again then), or was not acted on (tell someone else).
    async fn fire_escalations(&self, now: i64) -> Result<usize, StoreError> {
        let due = self.st.store.due_escalations(now, 50).await?;
        let mut n = 0;
        for esc in due {
            let Some(due_at) = esc.due_at else { continue };
            let spec = match self.st.store.rule(&esc.tenant_id, &esc.rule_id).await? {
                Some(r) if r.enabled => {
                    serde_json::from_value::<RuleSpec>(r.spec).ok().filter(|s| s.escalate.is_some())
                }
                _ => None,
            };
            let Some(spec) = spec else {
                let why = "the rule was deleted, disabled, or no longer escalates";
                if self.st.store.finish_escalation(&esc.id, due_at, "not_needed", why, None, None, None, now).await? {
                    n += 1;
                }
                continue;
            };
            let Some(e) = spec.escalate.clone() else { continue };
            let seen = self.st.store.message_engagement(&esc.message_id).await?;
            let after = parse_offset(&e.after).unwrap_or(0);
            let acted = if e.unless == "opened" { seen.opened } else { seen.clicked };
            let (status, detail, postpone, message, dead) = if seen.cancelled || seen.recipients == 0 {
                ("not_needed", "the mail was cancelled".to_string(), None, None, None)
            } else if let Some(t) = seen.scheduled_until {
                let again = t.max(now) + after;
                ("waiting", format!("the mail waits until {}", timefmt::rfc3339(t)), Some(again), None, None)
            } else if acted {
                ("not_needed", format!("the mail was {}", e.unless), None, None, None)
            } else {
                let mut ctx = esc.context.clone();
                let info = json!({"message_id": esc.message_id, "after": e.after, "unless": e.unless,
                                  "opened": seen.opened, "clicked": seen.clicked});
                ctx["escalation"] = info.clone();
                let mut data = match &ctx["data"] {
                    Value::Object(m) => m.clone(),
                    _ => serde_json::Map::new(),
                };
                for k in ["events", "count", "recipient"] {
                    if let Some(v) = ctx.get(k) {
                        data.entry(k).or_insert_with(|| v.clone());
                    }
                }
                data.insert("escalation".into(), info);
                let mut metadata = serde_json::Map::new();
                metadata.insert("rule".into(), json!(esc.rule_id));
                metadata.insert("escalation".into(), json!(esc.id));
                metadata.insert("escalates".into(), json!(esc.message_id));
                let built = build_mail(
                    &self.st,
                    &self.x,
                    &esc.tenant_id,
                    &spec.mail(true),
                    &ctx,
                    None,
                    data,
                    metadata,
                    None,
                    now,
                )
                .await;
                match built {
                    Ok(m) => ("sent", format!("not {} within {}", e.unless, e.after), None, Some(m), None),
                    Err(MailError::Transient(why)) => {
                        tracing::warn!(escalation = %esc.id, reason = %why, "escalation not built now; trying again");
                        continue;
                    }
                    Err(MailError::Refused(why)) => {
                        let reason = format!("rule `{}`: escalation of {}: {why}", spec.name, esc.message_id);
                        let d = dead_letter(
                            &esc.tenant_id,
                            reason,
                            esc.context.to_string(),
                            None,
                            Some(esc.rule_id.clone()),
                            now,
                        );
                        ("failed", why, None, None, Some(d))
                    }
                }
            };
            let sent = message.is_some();
            if self.st.store.finish_escalation(&esc.id, due_at, status, &detail, postpone, message, dead, now).await? {
                n += 1;
                if sent {
                    self.st.metrics.rule_messages.inc();
                }
            }
        }
        Ok(n)
    }

    fn when_to_send(&self, spec: &RuleSpec, ctx: &Value, now: i64) -> Result<Option<i64>, String> {
        let base = match &spec.at {
            Some(at) => Some(time_of(&self.x, "at", at, ctx)?),
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
        if spec.batch.is_some() || spec.digest.is_some() {
            let to = match self.x.text(&spec.to, ctx) {
                Ok(t) if t.is_empty() => {
                    return Applied::Failed(format!("`to` ({}) gave no recipient for this event", spec.to));
                }
                Ok(t) => t,
                Err(err) => return Applied::Failed(format!("`to`: {err}")),
            };
            // A window runs from when the event arrived, however late it
            // is processed; a digest goes at its next time after that.
            let due = match (&spec.batch, &spec.digest) {
                (Some(b), _) => parse_offset(b).map(|w| e.received_at + w).map_err(|err| format!("`batch`: {err}")),
                (None, Some(d)) => self.digest_time(d, ctx, e.received_at),
                (None, None) => unreachable!("checked above"),
            };
            return match due {
                Ok(due_at) => Applied::Batch { recipient: to, due_at },
                Err(err) => Applied::Failed(err),
            };
        }
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
        match build_mail(&self.st, &self.x, &e.tenant_id, &spec.mail(false), ctx, None, data, metadata, send_at, now)
            .await
        {
            Ok(m) => Applied::Message(Box::new(m), send_at),
            Err(MailError::Refused(err)) => Applied::Failed(err),
            Err(MailError::Transient(err)) => Applied::Transient(err),
        }
    }

    /// The run a rule's outcome for event `e` is recorded as, with what it
    /// produces; `None` when nothing may be committed now (a transient
    /// failure: the event stays claimed until its lease runs out, then a
    /// round takes it again).
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        rule: &RuleRecord,
        spec: &RuleSpec,
        e: &BusinessEvent,
        ctx: &Value,
        applied: Applied,
        outcome: &mut EventOutcome,
        now: i64,
    ) -> Option<(RuleRun, RunOutput)> {
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
        let output = match applied {
            Applied::Message(m, at) => {
                run.status = if at.is_some() { "scheduled" } else { "queued" }.into();
                run.message_id = Some(m.id.clone());
                run.detail = at.map(|t| format!("to be sent at {}", timefmt::rfc3339(t)));
                let made = (m.id.clone(), ctx.clone(), at.unwrap_or(now));
                if let Some(esc) = self.escalation(spec, &e.tenant_id, &rule.id, made) {
                    outcome.escalations.push(esc);
                }
                RunOutput::Message(m)
            }
            Applied::Batch { recipient, due_at } => {
                run.status = "batched".into();
                run.detail = Some(format!("collected for {recipient} until {}", timefmt::rfc3339(due_at)));
                let mut item = e.data.clone();
                if let Value::Object(m) = &mut item {
                    m.entry("event").or_insert_with(|| ctx["event"].clone());
                }
                RunOutput::Batch { recipient, item, opened_at: e.received_at, due_at }
            }
            Applied::Skipped(why) => {
                run.status = "skipped".into();
                run.detail = Some(why);
                RunOutput::Nothing
            }
            Applied::Transient(why) => {
                tracing::warn!(rule = %rule.name, event = %e.id, reason = %why, "rule not applied now; trying again");
                return None;
            }
            Applied::Failed(why) => {
                tracing::warn!(rule = %rule.name, event = %e.id, reason = %why, "rule failed");
                let payload =
                    json!({"type": e.event_type, "key": e.key, "entity": e.entity, "data": e.data}).to_string();
                outcome.dead_letters.push(dead_letter(
                    &e.tenant_id,
                    format!("rule `{}`: {why}", rule.name),
                    payload,
                    Some(e.id.clone()),
                    Some(rule.id.clone()),
                    now,
                ));
                run.status = "failed".into();
                run.detail = Some(why);
                RunOutput::Nothing
            }
        };
        Some((run, output))
    }

    /// When a digest collecting from `received_at` goes out.
    fn digest_time(&self, d: &DigestSpec, ctx: &Value, received_at: i64) -> Result<i64, String> {
        let cron = crate::cron::Cron::parse(&d.schedule).map_err(|e| format!("`digest.schedule`: {e}"))?;
        let zone = match &d.timezone {
            Some(t) => self.x.text(t, ctx).map_err(|e| format!("`digest.timezone`: {e}"))?,
            None => String::new(),
        };
        let tz = crate::cron::time_zone(if zone.is_empty() { "UTC" } else { &zone })
            .map_err(|e| format!("`digest.timezone`: {e}"))?;
        cron.next_after(received_at, &tz)
    }

    async fn process(&self, e: &BusinessEvent, plan: &TenantPlan) -> Result<(), StoreError> {
        let now = self.st.clock.now_ms();
        let ctx = context(e);
        let store = &self.st.store;
        let mut outcome = EventOutcome::default();

        // What this event cancels: idempotent, so done before the event is
        // marked processed (a crash in between repeats them). What it moves
        // is collected here and rendered again below.
        let mut moved: Vec<(&RuleRecord, &RuleSpec, Vec<RuleRun>)> = Vec::new();
        for (rule, spec) in &plan.rules {
            let cancels = spec.cancelled_by.contains(&e.event_type);
            let moves = spec.rescheduled_by.contains(&e.event_type);
            if !cancels && !moves {
                continue;
            }
            let runs: Vec<RuleRun> = store
                .scheduled_runs(&e.tenant_id, &e.entity, &rule.id)
                .await?
                .into_iter()
                // Not this event's own run: processed again (its claim ran
                // out mid-way), it must not replace what it made.
                .filter(|r| r.message_id.is_some() && r.event_id != e.id)
                .collect();
            if !cancels {
                if !runs.is_empty() {
                    moved.push((rule, spec, runs));
                }
                continue;
            }
            for run in runs {
                let Some(message) = &run.message_id else { continue };
                let why = format!("cancelled by {} `{}`", e.event_type, e.key);
                store.cancel_message_because(&e.tenant_id, message, now, &why).await?;
                store.update_run(&run.rule_id, &run.event_id, "cancelled", &why, now).await?;
            }
        }

        // A moved mail is rendered again, for its new time and with the new
        // event's data laid over the one it was made from: a reminder must
        // show the new time (and carry the new invitation), not only go at
        // it. The new run replaces the waiting mail in one transaction
        // (`EventOutcome::replaced`): a crash leaves the old mail or the new.
        let mut handled = std::collections::HashSet::new();
        for (rule, spec, old_runs) in moved {
            handled.insert(rule.id.clone());
            let earlier = match old_runs.first() {
                Some(r) => store.business_event(&e.tenant_id, &r.event_id).await?.map(|b| b.data),
                None => None,
            };
            let merged = BusinessEvent { data: overlay(earlier, &e.data), ..e.clone() };
            let merged_ctx = context(&merged);
            let applied = self.apply(rule, spec, &merged, &merged_ctx, now).await;
            let by = format!("{} `{}`", e.event_type, e.key);
            let (old_status, why) = match &applied {
                Applied::Message(_, at) => (
                    "cancelled",
                    format!(
                        "replaced by the mail for {by}{}",
                        at.map(|t| format!(", sent at {}", timefmt::rfc3339(t))).unwrap_or_default()
                    ),
                ),
                Applied::Skipped(why) => ("skipped", format!("{by} moved it and it was not sent again: {why}")),
                // A mail that cannot be made again stays as it was; the
                // failure goes to the dead letters.
                _ => ("", String::new()),
            };
            let Some(output) = self.record(rule, spec, &merged, &merged_ctx, applied, &mut outcome, now) else {
                return Ok(());
            };
            if !old_status.is_empty() {
                for old in &old_runs {
                    outcome.replaced.push(epistle_store::ReplacedRun {
                        tenant_id: e.tenant_id.clone(),
                        rule_id: old.rule_id.clone(),
                        event_id: old.event_id.clone(),
                        message_id: old.message_id.clone().unwrap_or_default(),
                        why: why.clone(),
                        status: old_status.into(),
                    });
                }
            }
            outcome.runs.push(output);
        }

        // Workflow runs this event stops (`exit_on`) or starts.
        crate::workflows::on_event(&self.st, &self.x, e, &ctx, plan, &mut outcome, now).await?;

        for (rule, spec) in plan.rules.iter().filter(|(r, s)| s.on == e.event_type && !handled.contains(&r.id)) {
            let applied = self.apply(rule, spec, e, &ctx, now).await;
            let Some(output) = self.record(rule, spec, e, &ctx, applied, &mut outcome, now) else {
                return Ok(());
            };
            outcome.runs.push(output);
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

/// `newer` laid over `earlier`: objects merge key by key (recursively),
/// anything else in `newer` wins. A rescheduling event may carry only what
/// changed.
fn overlay(earlier: Option<Value>, newer: &Value) -> Value {
    match (earlier, newer) {
        (Some(Value::Object(mut base)), Value::Object(top)) => {
            for (k, v) in top {
                let merged = overlay(base.remove(k), v);
                base.insert(k.clone(), merged);
            }
            Value::Object(base)
        }
        _ => newer.clone(),
    }
}

/// A template line giving a time (RFC 3339), as Unix milliseconds.
pub(crate) fn time_of(x: &Expressions, field: &str, line: &str, ctx: &Value) -> Result<i64, String> {
    let text = x.text(line, ctx).map_err(|e| format!("`{field}`: {e}"))?;
    if text.is_empty() {
        return Err(format!("`{field}` ({line}) gave nothing for this event"));
    }
    timefmt::parse_rfc3339(&text).map_err(|e| format!("`{field}` gave `{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rescheduling_event_overlays_what_it_carries() {
        let booked =
            json!({"customer": {"email": "a@x.example", "name": "Ana"}, "appointment": {"start": "T1", "room": "3"}});
        let moved = json!({"appointment": {"start": "T2"}, "note": "moved"});
        assert_eq!(
            overlay(Some(booked), &moved),
            json!({"customer": {"email": "a@x.example", "name": "Ana"}, "appointment": {"start": "T2", "room": "3"}, "note": "moved"})
        );
        assert_eq!(overlay(None, &moved), moved);
        assert_eq!(overlay(Some(json!([1])), &json!({"a": 1})), json!({"a": 1}));
        assert_eq!(overlay(Some(json!({"a": {"b": 1}})), &json!({"a": null})), json!({"a": null}));
    }

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
        assert!(parse_offset("3651d").unwrap_err().contains("ten years"));
        assert!(parse_offset("99999999999999999999d").is_err());
        assert_eq!(parse_offset("-3650d"), Ok(-3650 * 86_400_000));
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
