//! The delivery queue: lease-based claims and recording outcomes.
//!
//! A recipient is due when `due_at <= now`. Pending rows (`queued`,
//! `scheduled`, `deferred`) carry the time they are due; a claimed row
//! (`sending`) carries the end of its lease. One partial index on `due_at`
//! therefore finds both new work and work whose node died mid-flight.

use epistle_core::{RecipientStatus, new_id};
use sqlx::Row;

use crate::messages::parse_status;
use crate::sql::{Batch, EVENT_COLS, MAX_PARAMS, Val, bind_all, placeholders};
use crate::{Dialect, Durability, Result, Store};

/// A recipient claimed by a node.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub tenant_id: String,
    pub message_id: String,
    pub email: String,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// What a worker needs of a message to send it.
#[derive(Debug, Clone)]
pub struct DeliveryMessage {
    pub id: String,
    pub tenant_id: String,
    pub envelope_from: String,
    pub stream: String,
    pub raw: Vec<u8>,
    pub created_at: i64,
    pub send_at: Option<i64>,
    /// For route matching.
    pub tags: Vec<String>,
    /// For suppressions by category.
    pub category: Option<String>,
    /// Each recipient has its own body: see [`Store::recipient_bodies`].
    pub personalized: bool,
}

impl DeliveryMessage {
    /// When the message became due: its `send_at`, or when it was accepted.
    /// Retry age counts from here, so scheduled mail gets its full retry
    /// window.
    pub fn due_since(&self) -> i64 {
        self.send_at.map_or(self.created_at, |s| s.max(self.created_at))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// Handed to the next hop.
    Sent,
    /// Try again at `retry_at`.
    Deferred { retry_at: i64 },
    /// Refused for good by the next hop.
    Bounced,
    /// Gave up (too old, or nowhere to send).
    Failed,
    /// Not attempted (shutting down, every transport unavailable): back in
    /// the queue at `retry_at` without counting an attempt.
    Released { retry_at: i64 },
    /// Not sent: the address is on the tenant's suppression list.
    Suppressed,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub recipient_id: String,
    pub tenant_id: String,
    pub message_id: String,
    pub email: String,
    pub kind: OutcomeKind,
    /// The server's reply, or what went wrong.
    pub response: String,
    pub transport: String,
    pub started_at: i64,
    pub duration_ms: i64,
    /// What handing it over cost, in millionths of a US dollar.
    pub cost_micros: i64,
    /// Put the address on the tenant's suppression list for this reason
    /// (`hard_bounce`): the address itself is bad.
    pub suppress: Option<String>,
}

/// An address that is not sent to.
#[derive(Debug, Clone)]
pub struct Suppression {
    pub email: String,
    pub scope: String,
    pub reason: String,
    pub source: String,
    pub detail: Option<String>,
    pub created_at: i64,
}

/// What an outcome does to its recipient: the new status, when it is due
/// again, and whether it counts as an attempt.
fn effect(kind: OutcomeKind) -> (RecipientStatus, Option<i64>, i64) {
    match kind {
        OutcomeKind::Sent => (RecipientStatus::Sent, None, 1),
        OutcomeKind::Deferred { retry_at } => (RecipientStatus::Deferred, Some(retry_at), 1),
        OutcomeKind::Bounced => (RecipientStatus::Bounced, None, 1),
        OutcomeKind::Failed => (RecipientStatus::Failed, None, 1),
        OutcomeKind::Released { retry_at } => (RecipientStatus::Queued, Some(retry_at), 0),
        OutcomeKind::Suppressed => (RecipientStatus::Suppressed, None, 0),
    }
}

/// `outcomes` in the one order every writer of their rows takes them: by
/// recipient id. A recipient has one outcome per claim; should one appear
/// twice, the first counts.
pub(crate) fn in_lock_order(outcomes: &[Outcome]) -> Vec<&Outcome> {
    let mut ordered: Vec<&Outcome> = outcomes.iter().collect();
    ordered.sort_by(|a, b| a.recipient_id.cmp(&b.recipient_id));
    ordered.dedup_by(|b, a| a.recipient_id == b.recipient_id);
    ordered
}

/// The values of one recipient's status change, in the order both updates
/// bind them: id, status, due, attempts to add, response, time, node.
fn status_change(o: &Outcome, node: &str, now: i64) -> [Val; 7] {
    let (status, due, counts) = effect(o.kind);
    [
        Val::S(o.recipient_id.clone()),
        status.as_str().into(),
        Val::OI(due),
        Val::I(counts),
        o.response.as_str().into(),
        Val::I(now),
        node.into(),
    ]
}

/// SQLite's writer: [`Store::record_outcomes_in`] with one prepared update
/// per recipient instead of one joined update per chunk.
pub(crate) fn record_outcomes_direct(
    tx: &rusqlite::Connection,
    node: &str,
    outcomes: &[Outcome],
    now: i64,
    rows: &mut Batch,
) -> rusqlite::Result<()> {
    let ordered = in_lock_order(outcomes);
    let mut changed = std::collections::HashSet::with_capacity(ordered.len());
    let mut update = tx.prepare_cached(
        "UPDATE recipients SET status = ?2, due_at = ?3, claimed_by = NULL, attempts = attempts + ?4, \
         last_response = ?5, updated_at = ?6 WHERE id = ?1 AND claimed_by = ?7 AND status = 'sending'",
    )?;
    for o in &ordered {
        if update.execute(rusqlite::params_from_iter(status_change(o, node, now).iter()))? == 1 {
            changed.insert(o.recipient_id.clone());
        }
    }
    drop(update);
    outcome_rows(ordered, &changed, node, now, rows);
    Ok(())
}

/// The rows that follow the status changes of `ordered` (those in
/// `changed` were applied): an attempt per attempt made, an event and a
/// suppression where the change was applied.
fn outcome_rows(
    ordered: Vec<&Outcome>,
    changed: &std::collections::HashSet<String>,
    node: &str,
    now: i64,
    rows: &mut Batch,
) {
    let mut attempts = Vec::with_capacity(ordered.len());
    let mut events = Vec::with_capacity(ordered.len());
    let mut suppressions = Vec::new();
    for o in ordered {
        let (status, _, counts) = effect(o.kind);
        let applied = changed.contains(&o.recipient_id);
        if counts == 1 {
            attempts.push(vec![
                Val::S(new_id("att")),
                o.tenant_id.as_str().into(),
                o.message_id.as_str().into(),
                o.recipient_id.as_str().into(),
                o.transport.as_str().into(),
                node.into(),
                status.as_str().into(),
                o.response.as_str().into(),
                Val::I(o.started_at),
                Val::I(o.duration_ms),
                Val::I(o.cost_micros),
            ]);
        }
        if let Some(reason) = &o.suppress
            && applied
        {
            suppressions.push(vec![
                o.tenant_id.as_str().into(),
                o.email.to_ascii_lowercase().into(),
                "".into(),
                reason.as_str().into(),
                "delivery".into(),
                Val::OS(Some(o.response.clone())),
                Val::I(now),
            ]);
        }
        let counted = counts == 1 || o.kind == OutcomeKind::Suppressed;
        if counted && applied {
            events.push(vec![
                o.tenant_id.as_str().into(),
                o.message_id.as_str().into(),
                o.email.as_str().into(),
                status.as_str().into(),
                Val::OS(Some(o.response.clone())),
                Val::I(now),
            ]);
        }
    }
    rows.insert(
        "attempts",
        &[
            "id",
            "tenant_id",
            "message_id",
            "recipient_id",
            "transport",
            "node",
            "outcome",
            "response",
            "started_at",
            "duration_ms",
            "cost_micros",
        ],
        attempts,
        "",
    );
    rows.insert("events", EVENT_COLS, events, "");
    rows.insert(
        "suppressions",
        &["tenant_id", "email", "scope", "reason", "source", "detail", "created_at"],
        suppressions,
        " ON CONFLICT DO NOTHING",
    );
}

/// The addresses of (tenant, address) pairs as suppressions are stored: lower case, once each.
pub(crate) fn suppression_keys(pairs: &[(String, String)]) -> Vec<String> {
    let mut emails: Vec<String> = pairs.iter().map(|(_, e)| e.to_ascii_lowercase()).collect();
    emails.sort();
    emails.dedup();
    emails
}

/// Whether a suppression of `email` in `tenant` is about one of `pairs` (addresses compared
/// without case).
pub(crate) fn among(pairs: &[(String, String)], tenant: &str, email: &str) -> bool {
    pairs.iter().any(|(pt, pe)| pt == tenant && pe.eq_ignore_ascii_case(email))
}

/// The lease renewal on SQLite: served by the partial index
/// `recipients_sending` (migration 14), not a scan of every recipient.
const RENEW_SQLITE: &str = "UPDATE recipients SET due_at = $1 WHERE claimed_by = $2 AND status = 'sending'";

impl Store {
    /// Claims up to `limit` due recipients for `node`, leasing them until
    /// `now + lease_ms`. Safe to call from many nodes at once.
    pub async fn claim_due(&self, node: &str, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<Claimed>> {
        let lock = match self.dialect {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let sql = format!(
            "UPDATE recipients SET status = 'sending', claimed_by = $1, due_at = $2, updated_at = $3 \
             WHERE id IN (SELECT id FROM recipients WHERE due_at <= $3 ORDER BY due_at LIMIT $4{lock}) \
             RETURNING id, tenant_id, message_id, email, attempts"
        );
        let rows = {
            let mut conn = self.writer(Durability::Relaxed).await?;
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            self.relax(&mut tx).await?;
            let rows =
                sqlx::query(&sql).bind(node).bind(now + lease_ms).bind(now).bind(limit).fetch_all(&mut *tx).await?;
            tx.commit().await?;
            rows
        };
        Ok(rows
            .iter()
            .map(|r| Claimed {
                id: r.get(0),
                tenant_id: r.get(1),
                message_id: r.get(2),
                email: r.get(3),
                attempts: r.get(4),
            })
            .collect())
    }

    /// Extends the leases of everything `node` holds to `now + lease_ms`, so
    /// a live node never loses work that waits long for a slow relay. Only
    /// a dead node's leases run out. Returns how many were renewed.
    pub async fn renew_leases(&self, node: &str, now: i64, lease_ms: i64) -> Result<u64> {
        // Rows locked by this node's own outcome commit are about to be
        // final; skipping them (PostgreSQL) avoids a lock-order deadlock.
        let sql = match self.dialect {
            Dialect::Postgres => {
                "UPDATE recipients SET due_at = $1 WHERE id IN (SELECT id FROM recipients \
                 WHERE claimed_by = $2 AND status = 'sending' FOR UPDATE SKIP LOCKED)"
            }
            Dialect::Sqlite => RENEW_SQLITE,
        };
        let mut conn = self.writer(Durability::Relaxed).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        self.relax(&mut tx).await?;
        let done = sqlx::query(sql).bind(now + lease_ms).bind(node).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Loads the messages of claimed recipients.
    pub async fn load_for_delivery(&self, message_ids: &[String]) -> Result<Vec<DeliveryMessage>> {
        let mut out = Vec::with_capacity(message_ids.len());
        for chunk in message_ids.chunks(500) {
            let sql = format!(
                "SELECT id, tenant_id, envelope_from, stream, raw, created_at, send_at, tags_json, category, personalized \
                 FROM messages WHERE id IN ({})",
                placeholders(self.dialect, 1, chunk.len())
            );
            let vals = chunk.iter().map(|s| Val::S(s.clone())).collect();
            let rows = bind_all(sqlx::query(&sql), vals).fetch_all(&self.read).await?;
            out.extend(rows.iter().map(|r| DeliveryMessage {
                id: r.get(0),
                tenant_id: r.get(1),
                envelope_from: r.get(2),
                stream: r.get(3),
                raw: r.get(4),
                created_at: r.get(5),
                send_at: r.get(6),
                tags: serde_json::from_str(&r.get::<String, _>(7)).unwrap_or_default(),
                category: r.get(8),
                personalized: r.get::<i64, _>(9) != 0,
            }));
        }
        Ok(out)
    }

    /// Records outcomes in one transaction: the recipient's new status, an
    /// attempt row (unless released) and an event. A recipient whose lease
    /// was taken over by another node is left to that node.
    ///
    /// The status changes go in one `UPDATE … FROM (VALUES …)` per chunk of
    /// outcomes rather than one statement each: on SQLite every statement
    /// is a round trip to the connection's thread, made while holding the
    /// only writer that accepts are waiting for.
    pub async fn record_outcomes(&self, node: &str, outcomes: &[Outcome], now: i64) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut conn = self.writer(Durability::Relaxed).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        self.relax(&mut tx).await?;
        let mut rows = Batch::new(self.dialect);
        self.record_outcomes_in(&mut tx, node, outcomes, now, &mut rows).await?;
        rows.run(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Store::record_outcomes`] inside a caller's transaction: the
    /// recipients are updated at once, the rows that follow (attempts,
    /// events, suppressions) are added to `rows` for the caller to run.
    pub(crate) async fn record_outcomes_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        node: &str,
        outcomes: &[Outcome],
        now: i64,
        rows: &mut Batch,
    ) -> Result<()> {
        let ordered = in_lock_order(outcomes);
        let mut changed: std::collections::HashSet<String> = std::collections::HashSet::with_capacity(ordered.len());
        const PER_ROW: usize = 7;
        for chunk in ordered.chunks(MAX_PARAMS / PER_ROW) {
            if self.dialect == Dialect::Postgres {
                // Take the row locks in id order before the joined update,
                // whose join order is the planner's.
                let sql = format!(
                    "SELECT id FROM recipients WHERE id IN ({}) ORDER BY id FOR UPDATE",
                    placeholders(self.dialect, 1, chunk.len())
                );
                let ids = chunk.iter().map(|o| Val::S(o.recipient_id.clone())).collect();
                bind_all(sqlx::query(&sql), ids).execute(&mut *tx).await?;
            }
            let mut sql = String::from(
                "UPDATE recipients SET status = v.column2, due_at = v.column3, claimed_by = NULL, \
                 attempts = recipients.attempts + v.column4, last_response = v.column5, updated_at = v.column6 \
                 FROM (VALUES ",
            );
            let mut vals = Vec::with_capacity(chunk.len() * PER_ROW);
            for (i, o) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                sql.push_str(&placeholders(self.dialect, i * PER_ROW + 1, PER_ROW));
                sql.push(')');
                vals.extend(status_change(o, node, now));
            }
            sql.push_str(
                ") AS v WHERE recipients.id = v.column1 AND recipients.claimed_by = v.column7 \
                 AND recipients.status = 'sending' RETURNING recipients.id",
            );
            let rows = bind_all(sqlx::query(&sql), vals).fetch_all(&mut *tx).await?;
            changed.extend(rows.iter().map(|r| r.get::<String, _>(0)));
        }
        outcome_rows(ordered, &changed, node, now, rows);
        Ok(())
    }

    /// Which of these (tenant, address) pairs are suppressed, as (tenant,
    /// address, scope); addresses are compared without case.
    pub async fn suppressed_among(&self, pairs: &[(String, String)]) -> Result<Vec<(String, String, String)>> {
        let mut out = Vec::new();
        for chunk in suppression_keys(pairs).chunks(500) {
            let sql = format!(
                "SELECT tenant_id, email, scope FROM suppressions WHERE email IN ({})",
                placeholders(self.dialect, 1, chunk.len())
            );
            let vals = chunk.iter().map(|s| Val::S(s.clone())).collect();
            for r in bind_all(sqlx::query(&sql), vals).fetch_all(&self.read).await? {
                let (t, e, s): (String, String, String) = (r.get(0), r.get(1), r.get(2));
                if among(pairs, &t, &e) {
                    out.push((t, e, s));
                }
            }
        }
        Ok(out)
    }

    /// Counts of pending recipients by status (for `/metrics`).
    pub async fn queue_depth(&self) -> Result<Vec<(RecipientStatus, i64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) FROM recipients WHERE due_at IS NOT NULL GROUP BY status")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| Ok((parse_status(&r.get::<String, _>(0))?, r.get::<i64, _>(1)))).collect()
    }

    /// The earliest time anything is due, if anything is pending.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        let row =
            sqlx::query("SELECT MIN(due_at) FROM recipients WHERE due_at IS NOT NULL").fetch_one(&self.read).await?;
        Ok(row.get::<Option<i64>, _>(0))
    }
}

/// Spending over a period, in millionths of a US dollar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CostStats {
    pub total: i64,
    pub by_transport: Vec<(String, i64)>,
    /// (days since the Unix epoch, UTC; amount)
    pub by_day: Vec<(i64, i64)>,
}

impl Store {
    /// What a tenant's mail cost between `since` and `until` (ms, `until`
    /// excluded), from the attempts that handed mail to a priced transport.
    pub async fn cost_stats(&self, tenant_id: &str, since: i64, until: i64) -> Result<CostStats> {
        let by_transport = sqlx::query(
            "SELECT transport, CAST(SUM(cost_micros) AS BIGINT) FROM attempts \
             WHERE tenant_id = $1 AND started_at >= $2 AND started_at < $3 AND cost_micros > 0 \
             GROUP BY transport ORDER BY transport",
        )
        .bind(tenant_id)
        .bind(since)
        .bind(until)
        .fetch_all(&self.read)
        .await?;
        let by_day = sqlx::query(
            "SELECT started_at / 86400000, CAST(SUM(cost_micros) AS BIGINT) FROM attempts \
             WHERE tenant_id = $1 AND started_at >= $2 AND started_at < $3 AND cost_micros > 0 \
             GROUP BY started_at / 86400000 ORDER BY 1",
        )
        .bind(tenant_id)
        .bind(since)
        .bind(until)
        .fetch_all(&self.read)
        .await?;
        let by_transport: Vec<(String, i64)> = by_transport.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(CostStats {
            total: by_transport.iter().map(|(_, c)| c).sum(),
            by_transport,
            by_day: by_day.iter().map(|r| (r.get(0), r.get(1))).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The renewal runs every third of the lease and holds SQLite's one
    /// writer while it does: it must find a node's recipients in flight
    /// through the index of rows in flight, whatever the table's size.
    #[tokio::test]
    async fn lease_renewal_reads_only_recipients_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let store = Store::connect(&crate::StoreOptions::new(format!("sqlite://{}", path.display()))).await.unwrap();
        store.migrate().await.unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {RENEW_SQLITE}"))
            .unwrap()
            .query_map(rusqlite::params![1, "node"], |r| r.get::<_, String>(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert!(plan.iter().any(|p| p.contains("USING INDEX recipients_sending")), "{plan:?}");
        assert!(!plan.iter().any(|p| p.starts_with("SCAN recipients")), "{plan:?}");
    }
}
