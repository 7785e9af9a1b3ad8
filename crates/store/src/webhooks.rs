//! Outgoing webhooks: endpoints, and one delivery row per (endpoint, event)
//! that a sender claims under a lease, like recipients.

use epistle_core::new_id;
use sqlx::Row;

use crate::sql::{Val, bind_all, multi_insert};
use crate::{Dialect, Durability, Result, Store};

#[derive(Debug, Clone)]
pub struct WebhookRecord {
    pub id: String,
    pub tenant_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    /// Sealed with the master key (label: the webhook id).
    pub secret: Vec<u8>,
    pub created_at: i64,
    pub failing_since: Option<i64>,
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
    /// The last event of the log when the endpoint was made: it gets the
    /// events after it. Set by [`Store::create_webhook`].
    pub after_event: i64,
}

/// A delivery to make, as handed to the sender.
#[derive(Debug, Clone)]
pub struct WebhookJob {
    pub id: String,
    pub webhook_id: String,
    pub url: String,
    pub secret: Vec<u8>,
    pub payload: String,
    pub attempts: i64,
    pub created_at: i64,
    pub failing_since: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct WebhookDeliveryRecord {
    pub id: String,
    pub event_id: i64,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// `(at, HTTP code, error, duration ms)`, oldest first.
    pub tries: Vec<(i64, Option<i64>, Option<String>, i64)>,
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub enum WebhookResult {
    Delivered {
        code: i64,
    },
    /// Try again at `retry_at`.
    Retry {
        code: Option<i64>,
        error: String,
        retry_at: i64,
    },
    /// Give up on this delivery (and, when `disable` says why, on the
    /// endpoint).
    GiveUp {
        code: Option<i64>,
        error: String,
        disable: Option<String>,
    },
}

const HOOK_COLS: &str = "id, tenant_id, url, events_json, description, secret, created_at, failing_since, \
                         disabled_at, disabled_reason, after_event";

fn hook(r: &sqlx::any::AnyRow) -> WebhookRecord {
    WebhookRecord {
        id: r.get(0),
        tenant_id: r.get(1),
        url: r.get(2),
        events: serde_json::from_str(&r.get::<String, _>(3)).unwrap_or_default(),
        description: r.get(4),
        secret: r.get(5),
        created_at: r.get(6),
        failing_since: r.get(7),
        disabled_at: r.get(8),
        disabled_reason: r.get(9),
        after_event: r.get(10),
    }
}

impl Store {
    /// Stores a new endpoint. It gets the events written after this (its
    /// `after_event` is the end of the log now, whatever `w` says).
    pub async fn create_webhook(&self, w: &WebhookRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO webhooks (id, tenant_id, url, events_json, description, secret, created_at, after_event) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, (SELECT COALESCE(MAX(id), 0) FROM events))",
        )
        .bind(&w.id)
        .bind(&w.tenant_id)
        .bind(&w.url)
        .bind(serde_json::to_string(&w.events).unwrap_or_default())
        .bind(&w.description)
        .bind(&w.secret)
        .bind(w.created_at)
        .execute(&mut *self.writer(Durability::Durable).await?)
        .await?;
        Ok(())
    }

    pub async fn list_webhooks(&self, tenant_id: &str) -> Result<Vec<WebhookRecord>> {
        let rows =
            sqlx::query(&format!("SELECT {HOOK_COLS} FROM webhooks WHERE tenant_id = $1 ORDER BY created_at, id"))
                .bind(tenant_id)
                .fetch_all(&self.read)
                .await?;
        Ok(rows.iter().map(hook).collect())
    }

    /// Every enabled webhook of every tenant.
    pub async fn active_webhooks(&self) -> Result<Vec<WebhookRecord>> {
        let rows = sqlx::query(&format!("SELECT {HOOK_COLS} FROM webhooks WHERE disabled_at IS NULL"))
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(hook).collect())
    }

    pub async fn get_webhook(&self, tenant_id: &str, id: &str) -> Result<Option<WebhookRecord>> {
        let row = sqlx::query(&format!("SELECT {HOOK_COLS} FROM webhooks WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(hook))
    }

    /// Deletes a webhook and its pending deliveries. False if it was not there.
    pub async fn delete_webhook(&self, tenant_id: &str, id: &str) -> Result<bool> {
        let mut conn = self.writer(Durability::Durable).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let done = sqlx::query("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE webhook_deliveries SET status = 'cancelled', due_at = NULL WHERE webhook_id = $1 AND due_at IS NOT NULL")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Turns a disabled webhook back on.
    pub async fn enable_webhook(&self, tenant_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhooks SET disabled_at = NULL, disabled_reason = NULL, failing_since = NULL \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(id)
        .execute(&mut *self.writer(Durability::Durable).await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Where the webhook fan-out stopped (an event id), shared by all nodes.
    pub async fn webhook_cursor(&self) -> Result<Option<i64>> {
        Ok(self.setting("webhooks.cursor").await?.and_then(|v| v.parse().ok()))
    }

    /// Queues deliveries (one per webhook and event; repeats are ignored)
    /// and moves the fan-out cursor to `cursor`, in one transaction.
    /// `rows`: `(webhook id, tenant, event id, payload)`.
    pub async fn enqueue_webhook_deliveries(
        &self,
        rows: Vec<(String, String, i64, String)>,
        cursor: i64,
        now: i64,
    ) -> Result<()> {
        let mut conn = self.writer(Durability::Durable).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let vals: Vec<Vec<Val>> = rows
            .into_iter()
            .map(|(hook, tenant, event, payload)| {
                vec![
                    Val::S(new_id("whd")),
                    Val::S(hook),
                    Val::S(tenant),
                    Val::I(event),
                    Val::S(payload),
                    "pending".into(),
                    Val::I(now),
                    Val::I(now),
                    Val::I(now),
                ]
            })
            .collect();
        for (sql, v) in multi_insert(
            self.dialect,
            "webhook_deliveries",
            &["id", "webhook_id", "tenant_id", "event_id", "payload", "status", "due_at", "created_at", "updated_at"],
            vals,
            " ON CONFLICT (webhook_id, event_id) DO NOTHING",
        ) {
            bind_all(sqlx::query(&sql), v).execute(&mut *tx).await?;
        }
        let c = cursor.to_string();
        sqlx::query("INSERT INTO settings (name, value) VALUES ('webhooks.cursor', $1) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
            .bind(&c)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Claims due deliveries of enabled webhooks until `now + lease_ms`.
    pub async fn claim_webhook_jobs(&self, node: &str, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<WebhookJob>> {
        let lock = match self.dialect {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let mut conn = self.writer(Durability::Relaxed).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        self.relax(&mut tx).await?;
        let ids: Vec<String> = sqlx::query(&format!(
            "UPDATE webhook_deliveries SET claimed_by = $1, due_at = $2, status = 'sending', updated_at = $3 WHERE id IN \
             (SELECT id FROM webhook_deliveries WHERE due_at <= $3 ORDER BY due_at LIMIT $4{lock}) RETURNING id"
        ))
        .bind(node)
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            let r = sqlx::query(
                "SELECT d.id, d.webhook_id, w.url, w.secret, d.payload, d.attempts, d.created_at, w.failing_since, \
                 w.disabled_at FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id WHERE d.id = $1",
            )
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?;
            match r {
                Some(r) if r.get::<Option<i64>, _>(8).is_none() => jobs.push(WebhookJob {
                    id: r.get(0),
                    webhook_id: r.get(1),
                    url: r.get(2),
                    secret: r.get(3),
                    payload: r.get(4),
                    attempts: r.get(5),
                    created_at: r.get(6),
                    failing_since: r.get(7),
                }),
                // The endpoint is gone or disabled: nothing to send.
                _ => {
                    sqlx::query("UPDATE webhook_deliveries SET status = 'cancelled', due_at = NULL, claimed_by = NULL WHERE id = $1")
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(jobs)
    }

    /// Records an attempt and what follows from it.
    pub async fn record_webhook_attempt(
        &self,
        job: &WebhookJob,
        result: &WebhookResult,
        at: i64,
        duration_ms: i64,
    ) -> Result<()> {
        let mut conn = self.writer(Durability::Relaxed).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        self.relax(&mut tx).await?;
        let (status, due, code, error) = match result {
            WebhookResult::Delivered { code } => ("delivered", None, Some(*code), None),
            WebhookResult::Retry { code, error, retry_at } => ("pending", Some(*retry_at), *code, Some(error.clone())),
            WebhookResult::GiveUp { code, error, .. } => ("failed", None, *code, Some(error.clone())),
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, due_at = $2, claimed_by = NULL, attempts = attempts + 1, \
             last_code = $3, last_error = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(status)
        .bind(due)
        .bind(code)
        .bind(&error)
        .bind(at)
        .bind(&job.id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, at, code, error, duration_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&job.id)
        .bind(at)
        .bind(code)
        .bind(&error)
        .bind(duration_ms)
        .execute(&mut *tx)
        .await?;
        match result {
            WebhookResult::Delivered { .. } => {
                sqlx::query("UPDATE webhooks SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL")
                    .bind(&job.webhook_id)
                    .execute(&mut *tx)
                    .await?;
            }
            WebhookResult::GiveUp { disable: Some(why), .. } => {
                sqlx::query(
                    "UPDATE webhooks SET disabled_at = $1, disabled_reason = $2 WHERE id = $3 AND disabled_at IS NULL",
                )
                .bind(at)
                .bind(why)
                .bind(&job.webhook_id)
                .execute(&mut *tx)
                .await?;
            }
            _ => {
                sqlx::query("UPDATE webhooks SET failing_since = $1 WHERE id = $2 AND failing_since IS NULL")
                    .bind(at)
                    .bind(&job.webhook_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// A webhook's deliveries, newest first, with their attempts.
    pub async fn webhook_deliveries(
        &self,
        webhook_id: &str,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<WebhookDeliveryRecord>> {
        let (before_at, before_id) = before.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(
            "SELECT id, event_id, payload, status, attempts, due_at, last_code, last_error, created_at, updated_at \
             FROM webhook_deliveries WHERE webhook_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3) OR $3 = '') \
             ORDER BY created_at DESC, id DESC LIMIT $4",
        )
        .bind(webhook_id)
        .bind(before_at)
        .bind(&before_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.get(0);
            let status: String = r.get(3);
            let tries = sqlx::query(
                "SELECT at, code, error, duration_ms FROM webhook_attempts WHERE delivery_id = $1 ORDER BY at",
            )
            .bind(&id)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|t| (t.get(0), t.get(1), t.get(2), t.get(3)))
            .collect();
            out.push(WebhookDeliveryRecord {
                next_attempt_at: if status == "pending" { r.get(5) } else { None },
                id,
                event_id: r.get(1),
                payload: r.get(2),
                status,
                attempts: r.get(4),
                last_code: r.get(6),
                last_error: r.get(7),
                created_at: r.get(8),
                updated_at: r.get(9),
                tries,
            });
        }
        Ok(out)
    }
}
