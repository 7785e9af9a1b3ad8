//! Business events (`order.placed`, `appointment.booked`, …), the rules
//! that turn them into mail, what each rule did with each event, and the
//! dead letters of what could not be used.
//!
//! Exactly once: an event is stored once per `(tenant, type, key)`; a rule
//! acts on an event once, because its run `(rule, event)` is a primary key
//! inserted in the same transaction as the mail it queues.

use serde_json::Value;
use sqlx::Row;

use crate::definitions::RULES;
use crate::sql::{Val, bind_all, multi_insert};
use crate::{Dialect, Durability, NewMessage, Result, Store, StoreError};

/// An event as it arrives, before it is stored.
#[derive(Debug, Clone)]
pub struct NewBusinessEvent {
    pub tenant_id: String,
    pub event_type: String,
    pub key: String,
    /// What the event is about (an appointment, an order): events of
    /// cancelling and rescheduling types find earlier ones by it.
    pub entity: String,
    pub data: Value,
    pub occurred_at: i64,
    /// `http`, `nats:<stream>`, `amqp:<queue>`.
    pub source: String,
}

#[derive(Debug, Clone)]
pub struct BusinessEvent {
    pub id: String,
    pub tenant_id: String,
    pub event_type: String,
    pub key: String,
    pub entity: String,
    pub data: Value,
    pub occurred_at: i64,
    pub received_at: i64,
    pub source: String,
    /// `pending` until the rules have acted on it, then `processed`.
    pub status: String,
    pub processed_at: Option<i64>,
}

/// What storing an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventAccepted {
    New(String),
    /// The same `(type, key)` was stored before, under this id.
    Duplicate(String),
}

/// A stored rule (its `spec` is what the API took).
pub type RuleRecord = crate::Definition;

/// What one rule did with one event.
#[derive(Debug, Clone)]
pub struct RuleRun {
    pub rule_id: String,
    pub event_id: String,
    pub tenant_id: String,
    pub entity: String,
    /// `queued`, `scheduled`, `skipped`, `failed`, `cancelled`, `rescheduled`.
    pub status: String,
    pub message_id: Option<String>,
    pub detail: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: String,
    pub tenant_id: String,
    /// Where it came from: `nats:<stream>`, `amqp:<queue>`, `rule`.
    pub source: String,
    pub reason: String,
    pub payload: String,
    pub event_id: Option<String>,
    pub rule_id: Option<String>,
    pub created_at: i64,
}

/// What a run produces.
#[derive(Debug)]
pub enum RunOutput {
    Nothing,
    /// Mail to queue.
    Message(Box<NewMessage>),
    /// An item for the rule's open batch to this recipient; when there is
    /// none, a batch is opened at `opened_at`, due at `due_at`.
    Batch {
        recipient: String,
        item: Value,
        opened_at: i64,
        due_at: i64,
    },
}

/// Everything the rules did with one event, committed at once.
#[derive(Debug, Default)]
pub struct EventOutcome {
    /// New runs, with what each produces. A run already there (another
    /// node got to it first) is left alone, and its output dropped.
    pub runs: Vec<(RuleRun, RunOutput)>,
    /// Escalations of the mail of these runs; each is stored only with
    /// its run (`rule_id` names it).
    pub escalations: Vec<NewEscalation>,
    /// Workflow runs this event starts (once per workflow and event).
    pub workflow_runs: Vec<crate::NewWorkflowRun>,
    pub dead_letters: Vec<DeadLetter>,
    /// Earlier runs whose waiting mail a run of this event replaces (a
    /// reminder rendered again for a rescheduled appointment): cancelled in
    /// the same transaction that stores the new run of the same rule, and
    /// only if it is stored, so a crash or a race leaves either the old mail
    /// or the new one, never neither.
    pub replaced: Vec<ReplacedRun>,
}

/// A run whose mail is cancelled because a new run replaces it.
#[derive(Debug, Clone)]
pub struct ReplacedRun {
    pub tenant_id: String,
    pub rule_id: String,
    pub event_id: String,
    pub message_id: String,
    /// Why, for the run's detail and the message's events.
    pub why: String,
    /// The old run's status afterwards (`cancelled`, `skipped`).
    pub status: String,
}

/// A timer on a rule's mail: when it fires and the mail was not acted on,
/// someone else is told.
#[derive(Debug, Clone)]
pub struct NewEscalation {
    pub id: String,
    pub tenant_id: String,
    pub rule_id: String,
    /// The mail that should have been acted on.
    pub message_id: String,
    /// What the escalation mail is rendered from (the rule's context).
    pub context: Value,
    pub due_at: i64,
}

#[derive(Debug, Clone)]
pub struct Escalation {
    pub id: String,
    pub tenant_id: String,
    pub rule_id: String,
    pub message_id: String,
    pub context: Value,
    /// Set while it waits; cleared when it has fired.
    pub due_at: Option<i64>,
    /// `waiting`, `sent` (someone else was told), `not_needed`, `failed`.
    pub status: String,
    pub detail: Option<String>,
    pub escalation_message_id: Option<String>,
}

/// What the recipients of one message did with it (machine opens and
/// clicks, such as Apple's privacy proxy or link scanners, do not count).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageEngagement {
    pub opened: bool,
    pub clicked: bool,
    /// Recipients still waiting for their time (`scheduled`), and when
    /// the first of them is due.
    pub scheduled_until: Option<i64>,
    /// Every recipient was cancelled.
    pub cancelled: bool,
    pub recipients: usize,
}

/// Events a batching rule collected for one recipient.
#[derive(Debug, Clone)]
pub struct RuleBatch {
    pub id: String,
    pub tenant_id: String,
    pub rule_id: String,
    pub recipient: String,
    pub items: Vec<Value>,
    pub opened_at: i64,
    pub due_at: Option<i64>,
    pub message_id: Option<String>,
}

const EVENT_COLS: &str =
    "id, tenant_id, type, event_key, entity, data_json, occurred_at, received_at, source, status, processed_at";

fn event_row(r: &sqlx::any::AnyRow) -> Result<BusinessEvent> {
    Ok(BusinessEvent {
        id: r.get(0),
        tenant_id: r.get(1),
        event_type: r.get(2),
        key: r.get(3),
        entity: r.get(4),
        data: serde_json::from_str(&r.get::<String, _>(5)).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        occurred_at: r.get(6),
        received_at: r.get(7),
        source: r.get(8),
        status: r.get(9),
        processed_at: r.get(10),
    })
}

const RUN_COLS: &str = "rule_id, event_id, tenant_id, entity, status, message_id, detail, created_at, updated_at";

fn run_row(r: &sqlx::any::AnyRow) -> RuleRun {
    RuleRun {
        rule_id: r.get(0),
        event_id: r.get(1),
        tenant_id: r.get(2),
        entity: r.get(3),
        status: r.get(4),
        message_id: r.get(5),
        detail: r.get(6),
        created_at: r.get(7),
        updated_at: r.get(8),
    }
}

const DEAD_COLS: &str = "id, tenant_id, source, reason, payload, event_id, rule_id, created_at";

fn dead_row(r: &sqlx::any::AnyRow) -> DeadLetter {
    DeadLetter {
        id: r.get(0),
        tenant_id: r.get(1),
        source: r.get(2),
        reason: r.get(3),
        payload: r.get(4),
        event_id: r.get(5),
        rule_id: r.get(6),
        created_at: r.get(7),
    }
}

fn dead_vals(d: &DeadLetter) -> Vec<Val> {
    vec![
        Val::S(d.id.clone()),
        Val::S(d.tenant_id.clone()),
        Val::S(d.source.clone()),
        Val::S(d.reason.clone()),
        Val::S(d.payload.clone()),
        Val::OS(d.event_id.clone()),
        Val::OS(d.rule_id.clone()),
        Val::I(d.created_at),
    ]
}

fn escalation_row(r: &sqlx::any::AnyRow) -> Result<Escalation> {
    Ok(Escalation {
        id: r.get(0),
        tenant_id: r.get(1),
        rule_id: r.get(2),
        message_id: r.get(3),
        context: serde_json::from_str(&r.get::<String, _>(4)).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        due_at: r.get(5),
        status: r.get(6),
        detail: r.get(7),
        escalation_message_id: r.get(8),
    })
}

async fn insert_escalation(conn: &mut sqlx::AnyConnection, e: &NewEscalation, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO escalations (id, tenant_id, rule_id, message_id, context_json, due_at, status, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'waiting', $7, $7)",
    )
    .bind(&e.id)
    .bind(&e.tenant_id)
    .bind(&e.rule_id)
    .bind(&e.message_id)
    .bind(e.context.to_string())
    .bind(e.due_at)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// Stores an event once per `(tenant, type, key)`. When this returns,
    /// a new event is durable (it may be acknowledged to its sender).
    pub async fn accept_event(&self, e: &NewBusinessEvent, now: i64) -> Result<EventAccepted> {
        let id = epistle_core::ids::new_id("evt");
        let done = sqlx::query(
            "INSERT INTO business_events (id, tenant_id, type, event_key, entity, data_json, occurred_at, received_at, \
             source, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending') \
             ON CONFLICT (tenant_id, type, event_key) DO NOTHING",
        )
        .bind(&id)
        .bind(&e.tenant_id)
        .bind(&e.event_type)
        .bind(&e.key)
        .bind(&e.entity)
        .bind(e.data.to_string())
        .bind(e.occurred_at)
        .bind(now)
        .bind(&e.source)
        .execute(&mut *self.writer(Durability::Durable).await?)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(EventAccepted::New(id));
        }
        let row = sqlx::query("SELECT id FROM business_events WHERE tenant_id = $1 AND type = $2 AND event_key = $3")
            .bind(&e.tenant_id)
            .bind(&e.event_type)
            .bind(&e.key)
            .fetch_one(&self.read)
            .await?;
        Ok(EventAccepted::Duplicate(row.get(0)))
    }

    pub async fn business_event(&self, tenant_id: &str, id: &str) -> Result<Option<BusinessEvent>> {
        let row = sqlx::query(&format!("SELECT {EVENT_COLS} FROM business_events WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(event_row).transpose()
    }

    /// Takes up to `limit` events waiting for the rules, oldest first, for
    /// `lease_ms` (another node takes them again if this one dies).
    pub async fn claim_business_events(
        &self,
        node: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<BusinessEvent>> {
        let lock = match self.dialect {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let rows = sqlx::query(&format!(
            "UPDATE business_events SET claimed_by = $1, claimed_until = $2 WHERE id IN \
             (SELECT id FROM business_events WHERE status = 'pending' AND (claimed_until IS NULL OR claimed_until < $3) \
             ORDER BY received_at, id LIMIT $4{lock}) RETURNING {EVENT_COLS}"
        ))
        .bind(node)
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *self.writer(Durability::Relaxed).await?)
        .await?;
        let mut out = rows.iter().map(event_row).collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
        Ok(out)
    }

    /// Events waiting for the rules (the intake's lag).
    pub async fn pending_business_events(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM business_events WHERE status = 'pending'")
            .fetch_one(&self.read)
            .await?
            .get(0))
    }

    /// The first stored event about `entity` of one of these types.
    pub async fn entity_event(&self, tenant_id: &str, entity: &str, types: &[String]) -> Result<Option<BusinessEvent>> {
        self.entity_event_since(tenant_id, entity, types, i64::MIN, "").await
    }

    /// The first stored event about `entity` of one of these types that
    /// happened at or after `since` (milliseconds), other than `except`.
    pub async fn entity_event_since(
        &self,
        tenant_id: &str,
        entity: &str,
        types: &[String],
        since: i64,
        except: &str,
    ) -> Result<Option<BusinessEvent>> {
        for t in types {
            let row = sqlx::query(&format!(
                "SELECT {EVENT_COLS} FROM business_events WHERE tenant_id = $1 AND entity = $2 AND type = $3 \
                 AND occurred_at >= $4 AND id <> $5 ORDER BY received_at LIMIT 1"
            ))
            .bind(tenant_id)
            .bind(entity)
            .bind(t)
            .bind(since)
            .bind(except)
            .fetch_optional(&self.read)
            .await?;
            if let Some(r) = row {
                return Ok(Some(event_row(&r)?));
            }
        }
        Ok(None)
    }

    /// Commits what the rules did with an event and marks it processed, in
    /// one transaction.
    pub async fn finish_business_event(&self, event_id: &str, outcome: EventOutcome, now: i64) -> Result<()> {
        let mut conn = self.writer(Durability::Durable).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let mut messages = vec![];
        let lock = match self.dialect {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        };
        let mut inserted_rules = std::collections::HashSet::new();
        for (run, output) in outcome.runs {
            let done = sqlx::query(
                "INSERT INTO rule_runs (rule_id, event_id, tenant_id, entity, status, message_id, detail, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (rule_id, event_id) DO NOTHING",
            )
            .bind(&run.rule_id)
            .bind(&run.event_id)
            .bind(&run.tenant_id)
            .bind(&run.entity)
            .bind(&run.status)
            .bind(&run.message_id)
            .bind(&run.detail)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                continue;
            }
            inserted_rules.insert(run.rule_id.clone());
            match output {
                RunOutput::Nothing => {}
                RunOutput::Message(m) => messages.push(*m),
                RunOutput::Batch { recipient, item, opened_at, due_at } => {
                    let open = sqlx::query(&format!(
                        "SELECT id, items_json FROM rule_batches WHERE rule_id = $1 AND recipient = $2 \
                         AND due_at IS NOT NULL{lock}"
                    ))
                    .bind(&run.rule_id)
                    .bind(&recipient)
                    .fetch_optional(&mut *tx)
                    .await?;
                    match open {
                        Some(r) => {
                            let id: String = r.get(0);
                            let mut items: Vec<Value> = serde_json::from_str(&r.get::<String, _>(1))
                                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                            items.push(item);
                            sqlx::query("UPDATE rule_batches SET items_json = $2, item_count = $3 WHERE id = $1")
                                .bind(&id)
                                .bind(Value::Array(items.clone()).to_string())
                                .bind(items.len() as i64)
                                .execute(&mut *tx)
                                .await?;
                        }
                        None => {
                            sqlx::query(
                                "INSERT INTO rule_batches (id, tenant_id, rule_id, recipient, items_json, item_count, \
                                 opened_at, due_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $7)",
                            )
                            .bind(epistle_core::ids::new_id("bat"))
                            .bind(&run.tenant_id)
                            .bind(&run.rule_id)
                            .bind(&recipient)
                            .bind(Value::Array(vec![item]).to_string())
                            .bind(opened_at)
                            .bind(due_at)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                }
            }
        }
        if !messages.is_empty() {
            self.insert_messages_in(&mut tx, messages, now).await?;
        }
        // Like escalations, a replacement goes with its new run: if another
        // node stored that run first, it replaced the mail then.
        for r in outcome.replaced.iter().filter(|r| inserted_rules.contains(&r.rule_id)) {
            crate::messages::cancel_in(&mut tx, self.dialect, &r.tenant_id, &r.message_id, now, &r.why).await?;
            sqlx::query(
                "UPDATE rule_runs SET status = $3, detail = $4, updated_at = $5 WHERE rule_id = $1 AND event_id = $2 \
                 AND status = 'scheduled'",
            )
            .bind(&r.rule_id)
            .bind(&r.event_id)
            .bind(&r.status)
            .bind(&r.why)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        for esc in outcome.escalations.iter().filter(|e| inserted_rules.contains(&e.rule_id)) {
            insert_escalation(&mut tx, esc, now).await?;
        }
        for run in &outcome.workflow_runs {
            crate::workflows::insert_run(&mut tx, run, now).await?;
        }
        self.insert_dead_letters(&mut tx, &outcome.dead_letters).await?;
        sqlx::query(
            "UPDATE business_events SET status = 'processed', processed_at = $2, claimed_by = NULL, \
             claimed_until = NULL WHERE id = $1",
        )
        .bind(event_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Batches whose window has closed, oldest first.
    pub async fn due_batches(&self, now: i64, limit: i64) -> Result<Vec<RuleBatch>> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, rule_id, recipient, items_json, opened_at, due_at, message_id FROM rule_batches \
             WHERE due_at IS NOT NULL AND due_at <= $1 ORDER BY due_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RuleBatch {
                    id: r.get(0),
                    tenant_id: r.get(1),
                    rule_id: r.get(2),
                    recipient: r.get(3),
                    items: serde_json::from_str(&r.get::<String, _>(4))
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    opened_at: r.get(5),
                    due_at: r.get(6),
                    message_id: r.get(7),
                })
            })
            .collect()
    }

    /// Closes a batch with its mail (or a dead letter saying why there is
    /// none), in one transaction, if it still has the `items` the mail was
    /// built from. False when another node closed it first, or an event
    /// joined it meanwhile; then nothing is queued (and the next round
    /// builds the mail again, with every item).
    pub async fn finish_batch(
        &self,
        batch_id: &str,
        items: usize,
        message: Option<NewMessage>,
        escalation: Option<NewEscalation>,
        dead: Option<DeadLetter>,
        now: i64,
    ) -> Result<bool> {
        let mut conn = self.writer(Durability::Durable).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let done = sqlx::query(
            "UPDATE rule_batches SET due_at = NULL, message_id = $2, sent_at = $3 WHERE id = $1 AND due_at IS NOT NULL \
             AND item_count = $4",
        )
        .bind(batch_id)
        .bind(message.as_ref().map(|m| m.id.clone()))
        .bind(now)
        .bind(items as i64)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(m) = message {
            self.insert_messages_in(&mut tx, vec![m], now).await?;
            if let Some(e) = &escalation {
                insert_escalation(&mut tx, e, now).await?;
            }
        }
        if let Some(d) = dead {
            self.insert_dead_letters(&mut tx, &[d]).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Escalations whose time has come, oldest first.
    pub async fn due_escalations(&self, now: i64, limit: i64) -> Result<Vec<Escalation>> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, rule_id, message_id, context_json, due_at, status, detail, escalation_message_id \
             FROM escalations WHERE due_at IS NOT NULL AND due_at <= $1 ORDER BY due_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(escalation_row).collect()
    }

    /// The escalations of a message (normally one).
    pub async fn escalations_of(&self, message_id: &str) -> Result<Vec<Escalation>> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, rule_id, message_id, context_json, due_at, status, detail, escalation_message_id \
             FROM escalations WHERE message_id = $1 ORDER BY created_at, id",
        )
        .bind(message_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(escalation_row).collect()
    }

    /// Settles a due escalation: `sent` with the mail to someone else,
    /// `not_needed`, or `failed` with a dead letter; or, with `postpone`,
    /// waits again until then. One transaction, if it is still due at
    /// `due_at` as read; false (and nothing queued) when another node
    /// settled or postponed it first.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_escalation(
        &self,
        id: &str,
        due_at: i64,
        status: &str,
        detail: &str,
        postpone: Option<i64>,
        message: Option<NewMessage>,
        dead: Option<DeadLetter>,
        now: i64,
    ) -> Result<bool> {
        let mut conn = self.writer(Durability::Durable).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let done = sqlx::query(
            "UPDATE escalations SET due_at = $2, status = $3, detail = $4, escalation_message_id = $5, updated_at = $6 \
             WHERE id = $1 AND due_at = $7",
        )
        .bind(id)
        .bind(postpone)
        .bind(status)
        .bind(detail)
        .bind(message.as_ref().map(|m| m.id.clone()))
        .bind(now)
        .bind(due_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(m) = message {
            self.insert_messages_in(&mut tx, vec![m], now).await?;
        }
        if let Some(d) = dead {
            self.insert_dead_letters(&mut tx, &[d]).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Whether a message's recipients opened or clicked it (people, not
    /// machines), and whether it was sent at all.
    pub async fn message_engagement(&self, message_id: &str) -> Result<MessageEngagement> {
        let mut out = MessageEngagement::default();
        let rows = sqlx::query("SELECT status, due_at FROM recipients WHERE message_id = $1")
            .bind(message_id)
            .fetch_all(&self.read)
            .await?;
        out.recipients = rows.len();
        let mut cancelled = 0;
        for r in &rows {
            match r.get::<String, _>(0).as_str() {
                "cancelled" => cancelled += 1,
                "scheduled" => {
                    let due: Option<i64> = r.get(1);
                    out.scheduled_until = match (out.scheduled_until, due) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                _ => {}
            }
        }
        out.cancelled = !rows.is_empty() && cancelled == rows.len();
        let rows = sqlx::query("SELECT type, data FROM events WHERE message_id = $1 AND type IN ('opened', 'clicked')")
            .bind(message_id)
            .fetch_all(&self.read)
            .await?;
        for r in rows {
            let data: Option<String> = r.get(1);
            let machine = data
                .and_then(|d| serde_json::from_str::<Value>(&d).ok())
                .is_some_and(|d| d["machine"] == Value::Bool(true));
            if machine {
                continue;
            }
            match r.get::<String, _>(0).as_str() {
                "opened" => out.opened = true,
                // A click means it was read, whether or not the pixel loaded.
                _ => {
                    out.clicked = true;
                    out.opened = true;
                }
            }
        }
        Ok(out)
    }

    /// What the rules did with an event.
    pub async fn runs_of_event(&self, event_id: &str) -> Result<Vec<RuleRun>> {
        let rows =
            sqlx::query(&format!("SELECT {RUN_COLS} FROM rule_runs WHERE event_id = $1 ORDER BY created_at, rule_id"))
                .bind(event_id)
                .fetch_all(&self.read)
                .await?;
        Ok(rows.iter().map(run_row).collect())
    }

    /// A rule's runs about `entity` that still wait for their time.
    pub async fn scheduled_runs(&self, tenant_id: &str, entity: &str, rule_id: &str) -> Result<Vec<RuleRun>> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLS} FROM rule_runs WHERE tenant_id = $1 AND entity = $2 AND rule_id = $3 AND status = 'scheduled'"
        ))
        .bind(tenant_id)
        .bind(entity)
        .bind(rule_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(run_row).collect())
    }

    /// Records that a run changed (cancelled, rescheduled).
    pub async fn update_run(&self, rule_id: &str, event_id: &str, status: &str, detail: &str, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE rule_runs SET status = $3, detail = $4, updated_at = $5 WHERE rule_id = $1 AND event_id = $2",
        )
        .bind(rule_id)
        .bind(event_id)
        .bind(status)
        .bind(detail)
        .bind(now)
        .execute(&mut *self.writer(Durability::Durable).await?)
        .await?;
        Ok(())
    }

    pub async fn put_dead_letter(&self, d: &DeadLetter) -> Result<()> {
        let mut conn = self.writer(Durability::Durable).await?;
        self.insert_dead_letters(&mut conn, std::slice::from_ref(d)).await
    }

    pub(crate) async fn insert_dead_letters(&self, conn: &mut sqlx::AnyConnection, list: &[DeadLetter]) -> Result<()> {
        let rows: Vec<Vec<Val>> = list.iter().map(dead_vals).collect();
        for (sql, vals) in multi_insert(
            self.dialect,
            "dead_letters",
            &["id", "tenant_id", "source", "reason", "payload", "event_id", "rule_id", "created_at"],
            rows,
            "",
        ) {
            bind_all(sqlx::query(&sql), vals).execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// A tenant's dead letters, newest first, before the `(created_at, id)`
    /// cursor.
    pub async fn dead_letters(
        &self,
        tenant_id: &str,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<DeadLetter>> {
        let (at, id) = before.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {DEAD_COLS} FROM dead_letters WHERE tenant_id = $1 \
             AND (created_at < $2 OR (created_at = $2 AND id < $3) OR $3 = '') \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(tenant_id)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(dead_row).collect())
    }

    pub async fn create_rule(&self, r: &RuleRecord) -> Result<()> {
        self.create_definition(RULES, r).await
    }

    /// Replaces a rule's definition; false when there is no such rule.
    pub async fn update_rule(&self, r: &RuleRecord) -> Result<bool> {
        self.update_definition(RULES, r).await
    }

    pub async fn delete_rule(&self, tenant_id: &str, id: &str) -> Result<bool> {
        self.delete_definition(RULES, tenant_id, id).await
    }

    pub async fn rule(&self, tenant_id: &str, id: &str) -> Result<Option<RuleRecord>> {
        self.definition(RULES, tenant_id, id).await
    }

    pub async fn rules(&self, tenant_id: &str) -> Result<Vec<RuleRecord>> {
        self.definitions(RULES, tenant_id).await
    }
}
