//! What happens to mail after it left: engagement (opens, clicks),
//! feedback from receivers and providers (delivered, bounced, complained),
//! suppressions, tenant settings, and reading the event log in order.

use epistle_core::RecipientStatus;
use sqlx::Row;

use crate::sql::{Val, bind_all, placeholders};
use crate::{Dialect, Durability, Result, Store, Suppression};

/// An open or a click, to be recorded against the recipient row it names.
#[derive(Debug, Clone)]
pub struct Engagement {
    pub recipient_id: String,
    /// `opened` or `clicked`.
    pub kind: &'static str,
    pub detail: Option<String>,
    /// JSON object with what is known (URL, user agent, IP, machine flag).
    pub data: Option<String>,
    pub at: i64,
}

/// Which recipient a piece of feedback is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientRef {
    /// The row id (from a VERP address or a token).
    Id(String),
    /// A message and one of its addresses (from a provider's report).
    Address { message_id: String, email: String },
}

/// Whom an unsubscribe names: a recipient of a message, and what the
/// message was.
#[derive(Debug, Clone)]
pub struct UnsubscribeSubject {
    pub tenant: String,
    pub email: String,
    pub message_id: String,
    pub recipient_id: String,
    pub stream: String,
    pub category: Option<String>,
}

impl UnsubscribeSubject {
    /// The scope a one-click (or mailed) unsubscribe takes the person out
    /// of: the message's category when it has one, else its stream.
    pub fn default_scope(&self) -> String {
        match &self.category {
            Some(c) => format!("category:{c}"),
            None => format!("stream:{}", self.stream),
        }
    }
}

/// A receiver's or provider's word on a recipient.
#[derive(Debug, Clone)]
pub struct FeedbackUpdate {
    pub recipient: RecipientRef,
    /// The status to move to, when the report changes it (`delivered`,
    /// `deferred`, `bounced`, `complained`); `None` records the event only.
    pub status: Option<RecipientStatus>,
    /// The event type (`delivered`, `bounced`, `complained`, `opened`, …).
    pub event: String,
    pub detail: Option<String>,
    pub data: Option<String>,
    /// Put the address on the suppression list for this reason
    /// (`hard_bounce`, `complaint`, `unsubscribe`).
    pub suppress: Option<String>,
    /// Where the news came from (`dsn`, `arf`, `ses`, `mailgun`, …).
    pub source: String,
    pub at: i64,
}

/// A row of the event log.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: i64,
    pub tenant_id: String,
    pub message_id: String,
    pub recipient: Option<String>,
    pub kind: String,
    pub detail: Option<String>,
    pub data: Option<String>,
    pub at: i64,
}

/// A page of the suppression list.
#[derive(Debug, Clone, Default)]
pub struct SuppressionFilter {
    pub email: Option<String>,
    pub reason: Option<String>,
    pub scope: Option<String>,
    /// Keyset cursor: strictly older than `(created_at, email, scope)`.
    pub before: Option<(i64, String, String)>,
    pub limit: i64,
}

/// May a recipient in `from` move to `to` on a report that came later?
/// Reports arrive out of order (a delivery notice after a complaint); a
/// worse verdict wins and a final one is not undone.
fn may_move(from: RecipientStatus, to: RecipientStatus) -> bool {
    use RecipientStatus::*;
    match to {
        Delivered => matches!(from, Sent | Deferred | Sending),
        Deferred => matches!(from, Sent | Sending),
        Bounced => matches!(from, Sent | Delivered | Deferred | Sending),
        Complained => !matches!(from, Complained),
        _ => false,
    }
}

const EVENT_ROW_COLS: &str = "id, tenant_id, message_id, recipient, type, detail, data, at";

fn event_row(r: &sqlx::any::AnyRow) -> EventRow {
    EventRow {
        id: r.get(0),
        tenant_id: r.get(1),
        message_id: r.get(2),
        recipient: r.get(3),
        kind: r.get(4),
        detail: r.get(5),
        data: r.get(6),
        at: r.get(7),
    }
}

impl Store {
    /// Records opens and clicks in one statement per 500; rows whose
    /// recipient does not exist (a message deleted since) are dropped.
    /// Returns how many were recorded.
    pub async fn insert_engagement(&self, items: &[Engagement]) -> Result<u64> {
        if items.is_empty() {
            return Ok(0);
        }
        let mut conn = self.writer(Durability::Relaxed).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        self.relax(&mut tx).await?;
        let mut n = 0;
        for chunk in items.chunks(500) {
            let mut sql = String::from(
                "INSERT INTO events (tenant_id, message_id, recipient, type, detail, at, data) \
                 SELECT r.tenant_id, r.message_id, r.email, v.column2, v.column3, v.column4, v.column5 FROM (VALUES ",
            );
            let mut vals = Vec::with_capacity(chunk.len() * 5);
            for (i, e) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                sql.push_str(&placeholders(self.dialect, i * 5 + 1, 5));
                sql.push(')');
                vals.extend([
                    Val::S(e.recipient_id.clone()),
                    Val::S(e.kind.into()),
                    Val::OS(e.detail.clone()),
                    Val::I(e.at),
                    Val::OS(e.data.clone()),
                ]);
            }
            sql.push_str(") AS v JOIN recipients r ON r.id = v.column1");
            n += bind_all(sqlx::query(&sql), vals).execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Applies feedback: moves recipients (where the move is allowed),
    /// writes an event for each report that names a known recipient, and
    /// suppresses addresses. Returns how many reports matched a recipient.
    pub async fn apply_feedback(&self, updates: &[FeedbackUpdate], now: i64) -> Result<u64> {
        let mut conn = self.writer(Durability::Durable).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let mut matched = 0;
        for u in updates {
            let row = match &u.recipient {
                RecipientRef::Id(id) => {
                    sqlx::query("SELECT id, tenant_id, message_id, email, status FROM recipients WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?
                }
                RecipientRef::Address { message_id, email } => {
                    sqlx::query(
                        "SELECT id, tenant_id, message_id, email, status FROM recipients \
                         WHERE message_id = $1 AND LOWER(email) = $2",
                    )
                    .bind(message_id)
                    .bind(email.to_ascii_lowercase())
                    .fetch_optional(&mut *tx)
                    .await?
                }
            };
            let Some(row) = row else { continue };
            matched += 1;
            let (rid, tenant, message, email, status): (String, String, String, String, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            let current = crate::messages::parse_status(&status)?;
            if let Some(to) = u.status
                && may_move(current, to)
            {
                sqlx::query(
                    "UPDATE recipients SET status = $1, due_at = NULL, claimed_by = NULL, last_response = $2, \
                     updated_at = $3 WHERE id = $4",
                )
                .bind(to.as_str())
                .bind(u.detail.as_deref().unwrap_or(""))
                .bind(now)
                .bind(&rid)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO events (tenant_id, message_id, recipient, type, detail, at, data) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&tenant)
            .bind(&message)
            .bind(&email)
            .bind(&u.event)
            .bind(&u.detail)
            .bind(u.at)
            .bind(&u.data)
            .execute(&mut *tx)
            .await?;
            if let Some(reason) = &u.suppress {
                sqlx::query(
                    "INSERT INTO suppressions (tenant_id, email, scope, reason, source, detail, created_at) \
                     VALUES ($1, $2, '', $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                )
                .bind(&tenant)
                .bind(email.to_ascii_lowercase())
                .bind(reason)
                .bind(&u.source)
                .bind(&u.detail)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(matched)
    }

    /// A tenant's settings object (`{}` when never set).
    pub async fn tenant_settings(&self, tenant_id: &str) -> Result<serde_json::Value> {
        let row = sqlx::query("SELECT settings_json FROM tenant_settings WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(&self.read)
            .await?;
        Ok(match row {
            Some(r) => serde_json::from_str(&r.get::<String, _>(0))
                .map_err(|e| crate::StoreError::Corrupt(format!("tenant settings: {e}")))?,
            None => serde_json::json!({}),
        })
    }

    pub async fn put_tenant_settings(&self, tenant_id: &str, settings: &serde_json::Value, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO tenant_settings (tenant_id, settings_json, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET settings_json = excluded.settings_json, updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(settings.to_string())
        .bind(now)
        .execute(&mut *self.writer(Durability::Durable).await?)
        .await?;
        Ok(())
    }

    /// The suppressions of these addresses (lower-cased) for a tenant, as
    /// `(email, scope)`.
    pub async fn suppressions_of(&self, tenant_id: &str, emails: &[String]) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for chunk in emails.chunks(500) {
            let sql = format!(
                "SELECT email, scope FROM suppressions WHERE tenant_id = $1 AND email IN ({})",
                placeholders(Dialect::Postgres, 2, chunk.len())
            );
            let mut vals = vec![Val::S(tenant_id.into())];
            vals.extend(chunk.iter().map(|e| Val::S(e.to_ascii_lowercase())));
            for r in bind_all(sqlx::query(&sql), vals).fetch_all(&self.read).await? {
                out.push((r.get(0), r.get(1)));
            }
        }
        Ok(out)
    }

    /// Adds (or replaces) a suppression.
    pub async fn put_suppression(&self, tenant_id: &str, s: &Suppression) -> Result<()> {
        sqlx::query(
            "INSERT INTO suppressions (tenant_id, email, scope, reason, source, detail, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, email, scope) DO UPDATE SET \
             reason = excluded.reason, source = excluded.source, detail = excluded.detail, created_at = excluded.created_at",
        )
        .bind(tenant_id)
        .bind(s.email.to_ascii_lowercase())
        .bind(&s.scope)
        .bind(&s.reason)
        .bind(&s.source)
        .bind(&s.detail)
        .bind(s.created_at)
        .execute(&mut *self.writer(Durability::Durable).await?)
        .await?;
        Ok(())
    }

    /// Removes an address's suppressions (of one scope, or all). Returns
    /// how many.
    pub async fn delete_suppression(&self, tenant_id: &str, email: &str, scope: Option<&str>) -> Result<u64> {
        let mut conn = self.writer(Durability::Durable).await?;
        let done = match scope {
            Some(s) => {
                sqlx::query("DELETE FROM suppressions WHERE tenant_id = $1 AND email = $2 AND scope = $3")
                    .bind(tenant_id)
                    .bind(email.to_ascii_lowercase())
                    .bind(s)
                    .execute(&mut *conn)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM suppressions WHERE tenant_id = $1 AND email = $2")
                    .bind(tenant_id)
                    .bind(email.to_ascii_lowercase())
                    .execute(&mut *conn)
                    .await?
            }
        };
        Ok(done.rows_affected())
    }

    /// A page of the suppression list, newest first.
    pub async fn suppression_page(&self, tenant_id: &str, f: &SuppressionFilter) -> Result<Vec<Suppression>> {
        let mut sql = String::from(
            "SELECT email, scope, reason, source, detail, created_at FROM suppressions WHERE tenant_id = $1",
        );
        let mut vals: Vec<Val> = vec![tenant_id.into()];
        let param = |vals: &mut Vec<Val>, v: Val| {
            vals.push(v);
            format!("${}", vals.len())
        };
        if let Some(e) = &f.email {
            let p = param(&mut vals, Val::S(e.to_ascii_lowercase()));
            sql.push_str(&format!(" AND email = {p}"));
        }
        if let Some(r) = &f.reason {
            let p = param(&mut vals, Val::S(r.clone()));
            sql.push_str(&format!(" AND reason = {p}"));
        }
        if let Some(s) = &f.scope {
            let p = param(&mut vals, Val::S(s.clone()));
            sql.push_str(&format!(" AND scope = {p}"));
        }
        if let Some((at, email, scope)) = &f.before {
            let a = param(&mut vals, Val::I(*at));
            let e = param(&mut vals, Val::S(email.clone()));
            let s = param(&mut vals, Val::S(scope.clone()));
            sql.push_str(&format!(
                " AND (created_at < {a} OR (created_at = {a} AND (email > {e} OR (email = {e} AND scope > {s}))))"
            ));
        }
        let p = param(&mut vals, Val::I(f.limit));
        sql.push_str(&format!(" ORDER BY created_at DESC, email, scope LIMIT {p}"));
        let rows = bind_all(sqlx::query(&sql), vals).fetch_all(&self.read).await?;
        Ok(rows
            .iter()
            .map(|r| Suppression {
                email: r.get(0),
                scope: r.get(1),
                reason: r.get(2),
                source: r.get(3),
                detail: r.get(4),
                created_at: r.get(5),
            })
            .collect())
    }

    /// Events of every tenant after `after_id`, in id order.
    pub async fn events_after(&self, after_id: i64, limit: i64) -> Result<Vec<EventRow>> {
        let rows = sqlx::query(&format!("SELECT {EVENT_ROW_COLS} FROM events WHERE id > $1 ORDER BY id LIMIT $2"))
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(event_row).collect())
    }

    /// One tenant's events after `after_id` and up to `up_to`, in id order.
    pub async fn tenant_events_after(
        &self,
        tenant_id: &str,
        after_id: i64,
        up_to: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_ROW_COLS} FROM events WHERE tenant_id = $1 AND id > $2 AND id <= $3 ORDER BY id LIMIT $4"
        ))
        .bind(tenant_id)
        .bind(after_id)
        .bind(up_to)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(event_row).collect())
    }

    /// The newest event id (0 for none).
    pub async fn last_event_id(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM events").fetch_one(&self.read).await?;
        Ok(row.get::<i64, _>(0))
    }

    /// A message's events with their data, in order.
    pub async fn message_event_rows(&self, tenant_id: &str, message_id: &str) -> Result<Vec<EventRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_ROW_COLS} FROM events WHERE tenant_id = $1 AND message_id = $2 ORDER BY id"
        ))
        .bind(tenant_id)
        .bind(message_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(event_row).collect())
    }

    /// Bodies made for one recipient each (personalised mail), by recipient id.
    pub async fn recipient_bodies(&self, ids: &[String]) -> Result<std::collections::HashMap<String, Vec<u8>>> {
        let mut out = std::collections::HashMap::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT recipient_id, raw FROM recipient_bodies WHERE recipient_id IN ({})",
                placeholders(self.dialect, 1, chunk.len())
            );
            let vals = chunk.iter().map(|s| Val::S(s.clone())).collect();
            for r in bind_all(sqlx::query(&sql), vals).fetch_all(&self.read).await? {
                out.insert(r.get::<String, _>(0), r.get::<Vec<u8>, _>(1));
            }
        }
        Ok(out)
    }

    /// The recipient an unsubscribe token or address names, with what the
    /// message was (stream and category).
    pub async fn unsubscribe_subject(&self, recipient_id: &str) -> Result<Option<UnsubscribeSubject>> {
        let row = sqlx::query(
            "SELECT r.tenant_id, r.message_id, r.email, m.stream, m.category FROM recipients r \
             JOIN messages m ON m.id = r.message_id WHERE r.id = $1",
        )
        .bind(recipient_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|r| UnsubscribeSubject {
            tenant: r.get(0),
            message_id: r.get(1),
            email: r.get(2),
            recipient_id: recipient_id.to_string(),
            stream: r.get(3),
            category: r.get(4),
        }))
    }

    /// Unsubscribes a recipient from `scope`: the suppression and the
    /// `unsubscribed` event on the message. `source` says how (`one-click`,
    /// `page`, `mailto`).
    pub async fn unsubscribe(&self, s: &UnsubscribeSubject, scope: &str, source: &str, now: i64) -> Result<()> {
        self.put_suppression(
            &s.tenant,
            &Suppression {
                email: s.email.clone(),
                scope: scope.to_string(),
                reason: "unsubscribe".into(),
                source: source.into(),
                detail: Some(format!("from message {}", s.message_id)),
                created_at: now,
            },
        )
        .await?;
        let shown = epistle_core::suppression::show_scope(scope);
        let update = FeedbackUpdate {
            recipient: RecipientRef::Id(s.recipient_id.clone()),
            status: None,
            event: "unsubscribed".into(),
            detail: Some(format!("scope {shown}")),
            data: Some(serde_json::json!({"scope": shown, "source": source}).to_string()),
            suppress: None,
            source: source.into(),
            at: now,
        };
        self.apply_feedback(&[update], now).await?;
        Ok(())
    }

    /// The tags of these messages.
    pub async fn tags_of(&self, message_ids: &[String]) -> Result<std::collections::HashMap<String, Vec<String>>> {
        let mut out: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
        for chunk in message_ids.chunks(500) {
            let sql = format!(
                "SELECT message_id, tag FROM message_tags WHERE message_id IN ({}) ORDER BY tag",
                placeholders(self.dialect, 1, chunk.len())
            );
            let vals = chunk.iter().map(|s| Val::S(s.clone())).collect();
            for r in bind_all(sqlx::query(&sql), vals).fetch_all(&self.read).await? {
                out.entry(r.get(0)).or_default().push(r.get(1));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::may_move;
    use epistle_core::RecipientStatus::*;

    #[test]
    fn later_reports_do_not_undo_worse_ones() {
        assert!(may_move(Sent, Delivered));
        assert!(may_move(Delivered, Bounced));
        assert!(may_move(Delivered, Complained));
        assert!(!may_move(Bounced, Delivered));
        assert!(!may_move(Complained, Delivered));
        assert!(!may_move(Complained, Complained));
        assert!(!may_move(Queued, Delivered));
        assert!(!may_move(Delivered, Deferred));
    }
}
